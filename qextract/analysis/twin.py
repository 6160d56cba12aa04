"""The float twin: the float counterpart of a QKeras model.

:func:`float_model` rebuilds a QKeras model with plain Keras layers, the same
*raw* weights and no quantizers, so that the quantized model can be compared
with what it approximates (see :mod:`qextract.analysis.report`). Two registries drive it:

``LayerSpec.twin`` of each layer entry (:func:`qextract.layers.registry.twin_for`: the QKeras
classes of ``LAYERS``, the Keras wrappers of ``KERAS_LAYERS`` and ``KERAS_WRAPPERS``) - layer class ->
Keras layer(s):

==========================  ==================================================
QKeras layer                float twin
==========================  ==================================================
QDense                      Dense
QConv1D                     Conv1D
QConv2D                     Conv2D
QConv2DTranspose            Conv2DTranspose
QSeparableConv1D            SeparableConv1D
QSeparableConv2D            SeparableConv2D
QDepthwiseConv2D            DepthwiseConv2D
QConv2DBatchnorm            Conv2D ``<n>_conv`` -> BatchNormalization
QDepthwiseConv2DBatchnorm   DepthwiseConv2D ``<n>_conv`` -> BatchNormalization
QBatchNormalization         BatchNormalization (QKeras ignores its activation)
QActivation                 the float activation as a layer (see below)
QAdaptiveActivation         idem, from its quantized_relu / quantized_bits
QAveragePooling2D           AveragePooling2D (exact 1/area, no average quantizer)
QGlobalAveragePooling2D     GlobalAveragePooling2D (idem)
QSimpleRNN / QLSTM / QGRU   SimpleRNN / LSTM / GRU, float (recurrent) activations
QBidirectional              Bidirectional of the inner layers' twins
Bidirectional               idem (a Keras wrapper around QKeras layers)
TimeDistributed             TimeDistributed of the inner layer's twin
any other Keras layer       itself, same config and weights
==========================  ==================================================

The quantizer registry gives each quantized activation its float activation
(:mod:`qextract.analysis.float_activations`). A user's own float model is
checked by :mod:`qextract.analysis.twin_check`.

Naming rule: the float layer that carries a quantized layer's name computes
that layer's output, activation included. Where a QKeras layer becomes several
Keras layers, the extra ones get suffixes (``<n>_conv``, ``<n>_bn``,
``<n>_pool``). A float model supplied by the user must follow the same rule;
:func:`check_float_model` names every layer that does not.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _keras
from .._keras import custom_objects, quiet_config
from ..errors import UnsupportedError
from ..layers import LAYERS, LayerTwin, applied_quantizer
from ..layers.registry import twin_for
from ..quantizers import is_quantizer
from ..quantizers.activations import ActivationSpec
from ..quantizers.activations import float_layer as _float_layer
from .float_activations import (
    ACTIVATION_LAYERS,
    activation_label,
    activation_layer_entry,
    float_activation,
    float_activation_class,
)
from .twin_check import check_float_model

__all__ = [
    "ACTIVATION_LAYERS",
    "activation_label",
    "check_float_model",
    "float_activation",
    "float_activation_class",
    "float_model",
]

# Keys of the folded layers' configs that belong to their batch norm, not the conv.
_FOLDING_KEYS = ("ema_freeze_delay", "folding_mode")


# --------------------------------------------------------------------------- layer configs


def _clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop the QKeras-only keys; QKeras Clip constraints and QInitializers go too."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith("_quantizer") or key.endswith("_range"):
            continue
        if key == "mask" and value is None:  # qkeras-v3's QConv2D kernel mask, unset (a set one is refused)
            continue
        if isinstance(value, Mapping):
            cls = value.get("class_name")
            if key.endswith("_constraint") and cls == "Clip":
                value = None
            elif key.endswith("_initializer") and cls == "QInitializer":
                continue  # wraps an unserializable object; the weights are copied anyway
        out[key] = value
    return out


def _twin_entries(layer: Any, twin: LayerTwin, taken: set[str]) -> list[tuple[dict[str, Any], str]]:
    """Float layer entries for one QKeras layer, first to last.

    Each entry is ``(layer_entry, weight_source)``: where its weights come
    from - ``"layer"`` (matched by name), ``"batchnorm"`` (the folded layer's
    batch norm), ``"copy"`` (all, by position) or ``""`` (it has none).
    """
    name = layer.name
    where = f"layer '{name}' ({type(layer).__name__}): "
    if type(layer).__name__ in LAYERS:
        LAYERS[type(layer).__name__].check(layer)
    if twin.activation == "layer":
        return [(activation_layer_entry(float_activation(applied_quantizer(layer), where), name), "")]
    if twin.activation == "wrapper":
        return [(_wrapper_entry(layer, name, twin.keras_class), "copy")]

    config = _clean_config(copy.deepcopy(quiet_config(layer)))
    entries: list[tuple[dict[str, Any], str]] = []
    act_spec: ActivationSpec = "linear"
    if twin.activation in ("fused", "separate", "ignored"):
        act_spec = float_activation(getattr(layer, "activation", None), where)
    if twin.activation == "fused":
        config["activation"] = act_spec
    elif twin.activation == "recurrent":
        config["activation"] = float_activation(layer.cell.activation, where)
        if hasattr(layer.cell, "recurrent_activation"):
            config["recurrent_activation"] = float_activation(layer.cell.recurrent_activation, where)
    else:
        config.pop("activation", None)

    needs_activation = twin.activation == "separate" and act_spec != "linear"
    several = twin.folded_batchnorm or needs_activation
    base_name = _unique(name + twin.suffix, taken) if several else name

    if twin.folded_batchnorm:
        bn_config = _clean_config(copy.deepcopy(quiet_config(layer.batchnorm)))
        for key in list(bn_config) + list(_FOLDING_KEYS):
            if key not in ("name", "trainable", "dtype"):
                config.pop(key, None)
        entries.append((_float_layer(twin.keras_class, **{**config, "name": base_name}), "layer"))
        bn_name = _unique(name + "_bn", taken) if needs_activation else name
        bn_config.update(name=bn_name, trainable=config.get("trainable", True))
        entries.append((_float_layer("BatchNormalization", **bn_config), "batchnorm"))
    else:
        entries.append((_float_layer(twin.keras_class, **{**config, "name": base_name}), "layer"))
    if needs_activation:
        entries.append((activation_layer_entry(act_spec, name), ""))
    return entries


def _wrapper_entry(layer: Any, name: str, keras_class: str = "Bidirectional") -> dict[str, Any]:
    """A wrapper's twin (Bidirectional, TimeDistributed): the same wrapper around the inner layers' twins."""
    original = quiet_config(layer)
    config = {k: v for k, v in original.items() if k not in ("layer", "backward_layer")}
    inner_layer = _keras.generation().attribute(layer, "layer")
    for key, inner in (("layer", inner_layer), ("backward_layer", getattr(layer, "backward_layer", None))):
        if inner is None or key not in original:
            continue
        rule = twin_for(type(inner).__name__)
        if rule is None:
            _refuse_quantized_inside(inner, name)
            config[key] = _keras.keras().layers.serialize(inner)
            continue
        (entry, _), *rest = _twin_entries(inner, rule, set())
        if rest:
            raise UnsupportedError(f"layer '{name}': wrapped {type(inner).__name__} has no single-layer twin")
        config[key] = _keras.generation().nested_entry(entry)
    return _float_layer(keras_class, **{**config, "name": name})


def _refuse_quantized_inside(layer: Any, name: str) -> None:
    """A layer the twin would copy as it is must hold no QKeras layer: its copy would compute quantized
    values, and the report would compare them with themselves (error 0) without a word."""
    keras = _keras.keras()
    inside = [
        m
        for m in layer._flatten_layers(include_self=True)  # every layer inside, at any depth (both Kerases)
        if isinstance(m, keras.layers.Layer) and type(m).__module__.startswith("qkeras")
    ]
    if inside:
        held = ", ".join(f"'{m.name}' ({type(m).__name__})" for m in inside[:5])
        raise UnsupportedError(
            f"layer '{name}' ({type(layer).__name__}) holds QKeras layer(s) {held} that the float twin cannot "
            "replace inside it; copied as they are, they would be compared with themselves. Fix: pass your own "
            "float model (float_model=...), or build the model without that wrapper.",
            arguments=("float_model",),
        )


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate


# --------------------------------------------------------------------------- models


def _model_kind(model: Any) -> str:
    keras = _keras.keras()
    if not isinstance(model, keras.Model):
        raise UnsupportedError(f"expected a Keras Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        return "sequential"
    if _keras.generation().is_functional(model):
        return "functional"
    raise UnsupportedError(
        f"model '{model.name}' is a subclassed Keras model: it has no layer graph to rebuild; "
        "rebuild it as a Sequential or functional model"
    )


def _check_no_nested(model: Any) -> None:
    keras = _keras.keras()
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise UnsupportedError(
            f"model '{model.name}' contains nested models ({', '.join(nested)}); flatten them into one model"
        )


def float_model(model: Any) -> Any:
    """Build the float twin of a QKeras ``model``: same raw weights, no quantizers.

    Each QKeras layer becomes its Keras layer (its entry's ``twin``), each quantized
    activation its float activation (its quantizer's registry entry); other layers are
    copied. The result is a new, independent model named ``<name>_float``; the
    quantized model is not changed.

    >>> fm = float_model(qmodel)                     # doctest: +SKIP
    >>> fm.get_layer("dense").activation.__name__    # doctest: +SKIP
    'relu'

    Raises :class:`UnsupportedError` for subclassed or nested models, shared
    layers whose twin is several layers, and QKeras layers or quantizers
    without a float twin.
    """
    keras = _keras.keras()
    kind = _model_kind(model)
    _check_no_nested(model)
    float_activation_class()  # register before any config refers to it
    config = copy.deepcopy(_keras.model_config(model))
    taken = {layer.name for layer in model.layers}
    plan: dict[str, list[tuple[str, str]]] = {}  # q layer -> [(float layer, weight source)]

    new_layers: list[dict[str, Any]] = []
    for entry in config["layers"]:
        lname = entry.get("name") or entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            new_layers.append(entry)
            continue
        layer = model.get_layer(lname)
        cls = type(layer).__name__
        twin = twin_for(cls)
        if twin is None:
            if cls.startswith("Q") and type(layer).__module__.startswith("qkeras"):
                supported = ", ".join(n for n, spec in LAYERS.items() if spec.twin)
                raise UnsupportedError(
                    f"layer '{lname}' ({cls}) has no float twin (supported: {supported}); "
                    "pass your own float model instead"
                )
            _refuse_quantized_inside(layer, lname)
            new_layers.append(_plain_entry(entry, layer))
            if layer.weights:
                plan[lname] = [(lname, "copy")]
            continue
        produced = _twin_entries(layer, twin, taken)
        plan[lname] = [(e["config"]["name"], src) for e, src in produced if src]
        if kind == "functional":
            inbound = entry.get("inbound_nodes", [])
            if len(inbound) > 1 and len(produced) > 1:
                raise UnsupportedError(
                    f"layer '{lname}' ({cls}) is shared ({len(inbound)} calls) and its twin is several layers; "
                    "shared folded layers are not supported"
                )
            previous = None
            for i, (e, _) in enumerate(produced):
                e["name"] = e["config"]["name"]
                e["inbound_nodes"] = inbound if i == 0 else [[[previous, 0, 0, {}]]]
                previous = e["name"]
        if "build_config" in entry:
            produced[0][0]["build_config"] = entry["build_config"]
        new_layers.extend(e for e, _ in produced)
    config["layers"] = new_layers
    config["name"] = f"{model.name}_float"

    objects = {**custom_objects(), "FloatActivation": float_activation_class()}
    with keras.utils.custom_object_scope(objects):
        if kind == "sequential":
            twin_model = keras.Sequential.from_config(config)
        else:
            twin_model = keras.Model.from_config(config)
    _copy_weights(model, twin_model, plan)
    return twin_model


def _plain_entry(entry: dict[str, Any], layer: Any) -> dict[str, Any]:
    """A plain Keras layer's entry, with a QKeras quantizer or function as its
    activation (``Activation(quantized_relu(4))``) replaced by the float one."""
    act = getattr(type(layer), "activation", None)
    if isinstance(act, property):  # recurrent layers: the cell's, not the output's
        return entry
    act = getattr(layer, "activation", None)
    if act is None or not (is_quantizer(act) or (getattr(act, "__module__", "") or "").startswith("qkeras")):
        return entry
    entry = copy.deepcopy(entry)
    entry["config"]["activation"] = float_activation(act, f"layer '{layer.name}' ({type(layer).__name__}): ")
    return entry


def _short(layer: Any, weight: Any) -> str:
    return _keras.generation().weight_name(layer, weight)


def _copy_weights(model: Any, twin_model: Any, plan: Mapping[str, list[tuple[str, str]]]) -> None:
    for qname, targets in plan.items():
        qlayer = model.get_layer(qname)
        for fname, source in targets:
            flayer = twin_model.get_layer(fname)
            if source == "copy":
                flayer.set_weights(qlayer.get_weights())
                continue
            if source == "batchnorm":
                owner, pool = qlayer.batchnorm, qlayer.batchnorm.weights
            else:
                bn = getattr(qlayer, "batchnorm", None)
                skip = {id(w) for w in bn.weights} if bn is not None else set()
                owner = qlayer
                pool = [w for w in qlayer.weights if id(w) not in skip and _short(qlayer, w) != "iteration"]
            by_name = {_short(owner, w): w for w in pool}
            values = []
            for w in flayer.weights:
                if _short(flayer, w) not in by_name:
                    raise UnsupportedError(
                        f"layer '{qname}' ({type(qlayer).__name__}): no raw weight for the float twin's "
                        f"'{_short(flayer, w)}'; it has: {', '.join(by_name)}"
                    )
                values.append(np.asarray(by_name[_short(flayer, w)]))
            flayer.set_weights(values)
