"""The NumPy engine: a stored model extracted without TensorFlow, tensor by tensor as QKeras would compute it.

Each layer is read through the layer registry (:mod:`.view`), each quantizer
built from its stored configuration and computed by its registry entry's NumPy
form, and every tensor goes through the same proof as the Keras path
(:func:`qextract.reading.quantization.quantize_tensor`). A layer the NumPy forms
cannot prove (:class:`~qextract.errors.NeedsQKeras`) is handed to ``ask``, which
asks QKeras for it; without ``ask`` (QKeras not installed) extraction stops with
an :class:`~qextract.errors.UnsupportedError` naming the layer, the tensor and why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

from ..errors import NeedsQKeras, UnsupportedError
from ..generation import LEGACY, Generation
from ..kinds import Kind
from ..layers import KERAS_LAYERS, LAYERS, LayerSpec
from ..layers.readers import average_multiplier, plain
from ..numformat import Float
from ..quantizers import describe, entry_for
from ..quantizers.emulation import numpy_apply
from ..quantizers.parse import ActivationFunction
from ..quantizers.standin import StoredQuantizer
from ..reading.nested import select
from ..reading.quantization import quantize_tensor
from ..reading.stored import StoredLayer
from ..tensor import ActivationRecord, Extraction, LayerRecord
from .placement import StoredPlace, geometry
from .shapes import placeable
from .view import StoredLayerView

__all__ = ["Ask", "numpy_extraction", "stored_spec"]

Ask = Callable[[StoredPlace, NeedsQKeras], LayerRecord]
"""Asks QKeras for one layer's record, given why the NumPy engine could not compute it."""


def stored_spec(layer: StoredLayer) -> LayerSpec:
    """The registry entry of a stored layer's class; :class:`NeedsQKeras` for a class the NumPy engine cannot read.

    A registered QKeras class, a plain Keras class with an entry of its own, or
    another plain Keras class whose shape the engine knows (:mod:`.shapes`; each of
    those derives from no registered class but ``Layer``, so its entry is the
    generic one, floats as they are: a stored class name alone says nothing about
    the bases of a class the engine does not know).
    """
    name = layer.class_name
    if name in LAYERS:
        return LAYERS[name]
    if name in KERAS_LAYERS and name not in ("Layer", "Bidirectional", "RNN"):
        return KERAS_LAYERS[name]
    plain_keras = not name.startswith("Q") and not (layer.module or "").startswith("qkeras")
    if name == "InputLayer" or (placeable(name) and plain_keras):
        return KERAS_LAYERS["Layer"]
    raise NeedsQKeras(f"layer class {name}, which the NumPy engine does not read")


def numpy_extraction(
    model_name: str,
    places: list[StoredPlace],
    layers: list[str] | None,
    ask: Ask | None,
    generation: Generation = LEGACY,
    refusal: str | None = None,
) -> Extraction:
    """The extraction of the placed layers (``layers`` selects keys, as :func:`qextract.extract` does).

    Each layer is computed with the semantics of ``generation``, the generation that wrote the
    file. ``ask`` (QKeras of that same generation) is asked for a layer the NumPy forms cannot
    prove; without it the layer is refused, naming it, the tensor and ``refusal`` (the fix: where
    the file's layer can be computed).
    """
    records = []
    for p in cast(list[StoredPlace], select(cast(Any, places), layers, model_name)):  # select reads key, aliases
        why: NeedsQKeras | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                record = numpy_record(p, generation)
            except NeedsQKeras as e:
                why = e
        if why is None:
            for w in caught:  # the NumPy attempt's warnings count only where its record is kept
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif ask is None:
            fix = refusal or (
                "QKeras, which could, is not installed. Fix: install qextract with TensorFlow and QKeras "
                "(pip install qextract)"
            )
            raise UnsupportedError(
                f"layer '{p.key}' ({p.layer.class_name}): the NumPy engine cannot compute it bit for bit "
                f"({why}), and {fix}, or leave the layer out with layers=[...].",
                arguments=("layers",),
            )
        else:
            record = ask(p, why)
        records.append(record)
    return Extraction(tuple(records), model_name=model_name)


def numpy_record(p: StoredPlace, generation: Generation = LEGACY) -> LayerRecord:
    """One layer's record from the NumPy forms (``generation``'s semantics: the file's); :class:`NeedsQKeras`
    naming the tensor where they cannot be sure."""
    layer, key, cls = p.layer, p.key, p.layer.class_name
    spec = stored_spec(layer)
    folded = spec.twin is not None and spec.twin.folded_batchnorm  # computed by .folding, as the generation folds
    if spec.no_numpy_form and not folded:
        raise NeedsQKeras(spec.no_numpy_form)
    if spec.owner or (not folded and (spec.state or spec.custom not in (None, plain, average_multiplier))):
        raise NeedsQKeras(f"{cls} layers, whose tensors the NumPy engine does not compute")
    for refusal in spec.refused:  # a layer attribute Keras builds from the configuration key of the same name
        if layer.config.get(refusal.attribute.lstrip("_")) is not None:
            raise UnsupportedError(f"layer '{key}' ({cls}) {refusal.why}", arguments=("layers",))
    view = StoredLayerView(layer, spec, p.input_shape, generation)
    if folded and not view.batchnorm.center:
        spec.sources(view)  # the registry's own refusal, by name
    _holds_what_it_needs(layer, spec, view)
    try:
        sources = spec.sources(view)
    except NeedsQKeras as e:
        raise NeedsQKeras(f"tensors {_computed(layer)}: {e}") from None
    names = [s.name for s in sources]
    state = tuple(full for full, short in zip(layer.full_names, layer.weights) if short in _state(spec))
    read = {v.name for s in sources for v in s.variables} | set(state)
    if len(set(names)) != len(names) or set(layer.full_names) - read:
        raise NeedsQKeras(f"{cls} layer weights the registry does not read one to one")
    tensors = {}
    for s in sources:
        try:
            tensors[s.name] = quantize_tensor(s, key, cls, numpy_apply)
        except NeedsQKeras as e:
            raise NeedsQKeras(f"tensor '{s.name}': {e}") from None
    activations = tuple(a for name, obj in spec.activation_objects(view) if (a := _activation(key, name, obj)))
    without = _FOLDED_BATCHNORM_SETTINGS if folded else ()
    return LayerRecord(key, cls, spec.kind, tensors, activations, geometry(p, without), state)


_FOLDED_BATCHNORM_SETTINGS = ("epsilon", "axis")
"""Settings a folded layer's configuration hands to its batch-norm sub-layer (the layer itself has none)."""


def _state(spec: LayerSpec) -> set[str]:
    """The stored names of the state a layer declares (``_iteration`` is saved as ``iteration``)."""
    return {s.lstrip("_") for s in spec.state}


def _computed(layer: StoredLayer) -> str:
    """The tensors a layer computes rather than holds (a folded layer's kernel and bias), for messages."""
    kernel = "depthwise_kernel" if "depthwise_kernel" in layer.weights else "kernel"
    return f"'{kernel}' and 'bias' (folded)"


def _holds_what_it_needs(layer: StoredLayer, spec: LayerSpec, view: Any) -> None:
    """Every weight the layer computes with is in the file (Keras would refuse the file otherwise, not skip it)."""
    needed = [b.weight or b.name for b in spec.bindings if b.present is None or getattr(view, b.present, False)]
    missing = [w for w in needed if w not in layer.weights]
    if spec.custom is plain and spec.kind is not Kind.OTHER and not layer.weights:
        missing = ["its weights"]
    if missing:
        raise NeedsQKeras(f"the file holds no {', '.join(missing)} for it")


def _activation(layer: str, name: str, obj: Any) -> ActivationRecord | None:
    """As the Keras path's: a quantizer applied to data, or a named float activation; None for 'linear'."""
    if isinstance(obj, ActivationFunction):
        return None if obj.name == "linear" else ActivationRecord(layer, name, obj.name, Float(), notes=("float",))
    if not isinstance(obj, StoredQuantizer):
        raise NeedsQKeras(f"activation {name} of type {type(obj).__name__}")
    entry = entry_for(obj, f"layer '{layer}', {name}")
    notes: tuple[str, ...] = (entry.stochastic_note,) if entry.stochastic_note else ()
    if isinstance(getattr(obj, "alpha", None), str):
        notes += ("scale computed from the data on every call",)
    return ActivationRecord(layer, name, describe(obj), entry.number_format(obj), obj, notes)
