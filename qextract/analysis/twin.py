"""The float twin: the float counterpart of a QKeras model.

:func:`float_model` rebuilds a QKeras model with plain Keras layers, the same
*raw* weights and no quantizers, so that the quantized model can be compared
with what it approximates (see :mod:`qextract.analysis.report`). Two registries drive it:

``LayerSpec.twin`` of each :data:`qextract.layers.LAYERS` entry - QKeras layer class -> Keras layer(s):

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
any other Keras layer       itself, same config and weights
==========================  ==================================================

The quantizer registry: a quantized activation becomes the float activation
its quantizer's entry names (:func:`qextract.quantizers.float_twin`): what the quantizer
approximates, i.e. the float value QKeras's own straight-through estimator
passes on (``quantized_relu`` -> relu, ``quantized_tanh`` -> hard tanh, ...).
QKeras functions (hard_sigmoid / smooth_sigmoid / hard_tanh / smooth_tanh /
binary_sigmoid / binary_tanh) become their float forms; Keras activations stay.

Activations without a Keras built-in become a :class:`FloatActivation` layer
registered as ``qextract>FloatActivation``, so the twin saves and loads like any
Keras model once :mod:`qextract.analysis.twin` has built one twin (or called
:func:`float_activation_class`).

Naming rule: the float layer that carries a quantized layer's name computes
that layer's output, activation included. Where a QKeras layer becomes several
Keras layers, the extra ones get suffixes (``<n>_conv``, ``<n>_bn``,
``<n>_pool``). A float model supplied by the user must follow the same rule;
:func:`check_float_model` names every layer that does not.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any

from .._keras import custom_objects, quiet_config, tf
from ..errors import TwinMismatchError, UnsupportedError
from ..layers import LAYERS, LayerTwin
from ..quantizers import float_twin, is_quantizer
from ..quantizers.activations import ActivationSpec
from ..quantizers.activations import float_function as _float_fn
from ..quantizers.activations import float_layer as _float_layer

# Plain Keras wrappers whose wrapped QKeras layer gets its float twin inside the same wrapper.
_WRAPPER_TWINS: dict[str, LayerTwin] = {
    "TimeDistributed": LayerTwin("TimeDistributed", "wrapper"),
    "Bidirectional": LayerTwin("Bidirectional", "wrapper"),
}

# Keys of the folded layers' configs that belong to their batch norm, not the conv.
_FOLDING_KEYS = ("ema_freeze_delay", "folding_mode")

# Keras layers that are nothing but an activation: their input is the pre-activation.
ACTIVATION_LAYERS = frozenset(
    {"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Softmax", "FloatActivation"}
)

# --------------------------------------------------------------------------- float activations


_FLOAT_FUNCTIONS = ("hard_sigmoid", "smooth_sigmoid", "hard_tanh", "smooth_tanh", "half_tanh", "hard_swish")


@cache
def float_activation_class() -> type:
    """The ``FloatActivation`` Keras layer, created and registered on first use.

    It computes the float functions QKeras quantizes that Keras lacks:
    ``hard_sigmoid`` ``clip(x/2 + 1/2, 0, 1)``, ``smooth_sigmoid``
    ``clip(0.1875x + 1/2, 0, 1)``, ``hard_tanh`` / ``smooth_tanh``
    ``2*sigmoid - 1`` of those, ``half_tanh`` ``2*sigmoid(x) - 1``, and
    ``hard_swish`` ``x * min(relu(x + shift), upper) / upper``.
    """
    keras = tf().keras

    @keras.utils.register_keras_serializable(package="qextract")
    class FloatActivation(keras.layers.Layer):
        """A float activation QKeras approximates and Keras has no built-in for."""

        def __init__(self, function: str, relu_shift: float = 3.0, relu_upper_bound: float = 6.0, **kwargs: Any):
            super().__init__(**kwargs)
            if function not in _FLOAT_FUNCTIONS:
                raise ValueError(f"unknown float activation '{function}'; known: {', '.join(_FLOAT_FUNCTIONS)}")
            self.function = function
            self.relu_shift = float(relu_shift)
            self.relu_upper_bound = float(relu_upper_bound)

        def call(self, inputs: Any) -> Any:
            t = tf()
            x = t.convert_to_tensor(inputs)
            if self.function == "hard_sigmoid":
                return t.clip_by_value(0.5 * x + 0.5, 0.0, 1.0)
            if self.function == "smooth_sigmoid":
                return t.clip_by_value(0.1875 * x + 0.5, 0.0, 1.0)
            if self.function == "hard_tanh":
                return 2.0 * t.clip_by_value(0.5 * x + 0.5, 0.0, 1.0) - 1.0
            if self.function == "smooth_tanh":
                return 2.0 * t.clip_by_value(0.1875 * x + 0.5, 0.0, 1.0) - 1.0
            if self.function == "half_tanh":
                return 2.0 * t.sigmoid(x) - 1.0
            relu = t.clip_by_value(x + self.relu_shift, 0.0, self.relu_upper_bound)
            return x * relu / self.relu_upper_bound

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "function": self.function,
                "relu_shift": self.relu_shift,
                "relu_upper_bound": self.relu_upper_bound,
            }

    return FloatActivation


_QKERAS_FUNCTIONS: dict[str, ActivationSpec] = {
    "hard_sigmoid": _float_fn("hard_sigmoid"),
    "binary_sigmoid": _float_fn("hard_sigmoid"),
    "smooth_sigmoid": _float_fn("smooth_sigmoid"),
    "hard_tanh": _float_fn("hard_tanh"),
    "binary_tanh": _float_fn("hard_tanh"),
    "smooth_tanh": _float_fn("smooth_tanh"),
}


def float_activation(activation: Any, where: str = "") -> ActivationSpec:
    """The float activation standing in for ``activation`` (a quantizer, function or None).

    >>> float_activation(quantized_relu(4, 0))        # doctest: +SKIP
    'relu'
    """
    if activation is None:
        return "linear"
    keras = tf().keras
    if is_quantizer(activation):
        return float_twin(activation, where)
    if isinstance(activation, keras.layers.Layer):
        return keras.layers.serialize(activation)
    module = getattr(activation, "__module__", "") or ""
    fn_name = getattr(activation, "__name__", "")
    if module.startswith("qkeras"):
        if fn_name in _QKERAS_FUNCTIONS:
            return copy.deepcopy(_QKERAS_FUNCTIONS[fn_name])
        raise UnsupportedError(f"{where}QKeras function '{fn_name}' has no float twin; pass your own float model")
    try:
        spec = keras.activations.serialize(activation)
    except Exception as exc:  # Keras raises ValueError or TypeError here
        raise UnsupportedError(f"{where}activation {activation!r} cannot be serialized: {exc}") from None
    return spec


def activation_label(spec: ActivationSpec) -> str:
    """A short readable name for an activation spec, e.g. ``relu`` or ``ReLU(max_value=6.0)``."""
    if isinstance(spec, str):
        return spec
    cfg = spec.get("config", {})
    if spec.get("class_name") == "qextract>FloatActivation":
        return cfg["function"]
    shown = {k: v for k, v in cfg.items() if k in ("max_value", "negative_slope") and v not in (None, 0.0)}
    return f"{spec.get('class_name')}({', '.join(f'{k}={v}' for k, v in shown.items())})"


def _activation_layer_entry(spec: ActivationSpec, name: str) -> dict[str, Any]:
    if isinstance(spec, str):
        return _float_layer("Activation", name=name, activation=spec)
    return _float_layer(spec["class_name"], **{**spec["config"], "name": name})


# --------------------------------------------------------------------------- layer configs


def _clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop the QKeras-only keys; QKeras Clip constraints and QInitializers go too."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith("_quantizer") or key.endswith("_range"):
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
    if twin.activation == "layer":
        return [(_activation_layer_entry(float_activation(layer.quantizer, where), name), "")]
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
        entries.append((_activation_layer_entry(act_spec, name), ""))
    return entries


def _wrapper_entry(layer: Any, name: str, keras_class: str = "Bidirectional") -> dict[str, Any]:
    """A wrapper's twin (Bidirectional, TimeDistributed): the same wrapper around the inner layers' twins."""
    original = quiet_config(layer)
    config = {k: v for k, v in original.items() if k not in ("layer", "backward_layer")}
    for key, inner in (("layer", layer.layer), ("backward_layer", getattr(layer, "backward_layer", None))):
        if inner is None or key not in original:
            continue
        rule = _twin_of(type(inner).__name__)
        if rule is None:
            _refuse_quantized_inside(inner, name)
            config[key] = tf().keras.layers.serialize(inner)
            continue
        (entry, _), *rest = _twin_entries(inner, rule, set())
        if rest:
            raise UnsupportedError(f"layer '{name}': wrapped {type(inner).__name__} has no single-layer twin")
        config[key] = entry
    return _float_layer(keras_class, **{**config, "name": name})


def _refuse_quantized_inside(layer: Any, name: str) -> None:
    """A layer the twin would copy as it is must hold no QKeras layer: its copy would compute quantized
    values, and the report would compare them with themselves (error 0) without a word."""
    keras = tf().keras
    inside = [
        m
        for m in [layer, *layer.submodules]
        if isinstance(m, keras.layers.Layer) and type(m).__module__.startswith("qkeras")
    ]
    if inside:
        held = ", ".join(f"'{m.name}' ({type(m).__name__})" for m in inside[:5])
        raise UnsupportedError(
            f"layer '{name}' ({type(layer).__name__}) holds QKeras layer(s) {held} that the float twin cannot "
            "replace inside it; copied as they are, they would be compared with themselves. Fix: pass your own "
            "float model (float_model=..., --float-model), or build the model without that wrapper."
        )


def _twin_of(class_name: str) -> LayerTwin | None:
    """The float twin of a registered QKeras layer class (None: not registered, or without one)."""
    spec = LAYERS.get(class_name)
    return None if spec is None else spec.twin


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate


# --------------------------------------------------------------------------- models


def _model_kind(model: Any) -> str:
    keras = tf().keras
    if not isinstance(model, keras.Model):
        raise UnsupportedError(f"expected a tf.keras Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        return "sequential"
    if getattr(model, "_is_graph_network", False):
        return "functional"
    raise UnsupportedError(
        f"model '{model.name}' is a subclassed Keras model: it has no layer graph to rebuild; "
        "rebuild it as a Sequential or functional model"
    )


def _check_no_nested(model: Any) -> None:
    keras = tf().keras
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
    keras = tf().keras
    kind = _model_kind(model)
    _check_no_nested(model)
    float_activation_class()  # register before any config refers to it
    config = copy.deepcopy(quiet_config(model))
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
        twin = _twin_of(cls) or _WRAPPER_TWINS.get(cls)
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


def _short(weight: Any) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def _copy_weights(model: Any, twin_model: Any, plan: Mapping[str, list[tuple[str, str]]]) -> None:
    for qname, targets in plan.items():
        qlayer = model.get_layer(qname)
        for fname, source in targets:
            flayer = twin_model.get_layer(fname)
            if source == "copy":
                flayer.set_weights(qlayer.get_weights())
                continue
            if source == "batchnorm":
                pool = qlayer.batchnorm.weights
            else:
                bn = getattr(qlayer, "batchnorm", None)
                skip = {id(w) for w in bn.weights} if bn is not None else set()
                pool = [w for w in qlayer.weights if id(w) not in skip and _short(w) != "iteration"]
            by_name = {_short(w): w for w in pool}
            values = []
            for w in flayer.weights:
                if _short(w) not in by_name:
                    raise UnsupportedError(
                        f"layer '{qname}' ({type(qlayer).__name__}): no raw weight for the float twin's "
                        f"'{_short(w)}'; it has: {', '.join(by_name)}"
                    )
                values.append(by_name[_short(w)].numpy())
            flayer.set_weights(values)


def check_float_model(model: Any, float_model: Any) -> None:
    """Check that ``float_model`` has, for every layer of ``model``, a layer of
    the same name with the same output shape, and the same input shape.

    Raises :class:`TwinMismatchError` naming every layer that does not match.
    """
    problems: list[str] = []
    q_in = [tuple(t.shape) for t in model.inputs]
    f_in = [tuple(t.shape) for t in float_model.inputs]
    if q_in != f_in:
        problems.append(f"inputs: quantized model takes {_shapes(q_in)}, float model {_shapes(f_in)}")
    missing = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            flayer = float_model.get_layer(layer.name)
        except ValueError:
            missing.append(f"'{layer.name}' ({type(layer).__name__})")
            continue
        qs, fs = _output_shape(layer), _output_shape(flayer)
        if qs != fs:
            problems.append(
                f"layer '{layer.name}': quantized {type(layer).__name__} outputs {qs}, "
                f"float {type(flayer).__name__} outputs {fs}"
            )
    if missing:
        problems.insert(0, f"no float layer named {', '.join(missing)}")
    if problems:
        raise TwinMismatchError(
            f"float model '{float_model.name}' does not match quantized model '{model.name}': "
            + "; ".join(problems)
            + ". The float layer carrying a quantized layer's name must compute that layer's output."
        )


def _output_shape(layer: Any) -> Any:
    out = layer.output
    if isinstance(out, (list, tuple)):
        return [tuple(t.shape) for t in out]
    return tuple(out.shape)


def _shapes(shapes: list[tuple[Any, ...]]) -> str:
    return ", ".join(str(s) for s in shapes) or "nothing"
