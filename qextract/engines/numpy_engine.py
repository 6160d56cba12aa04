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
    model_name: str, places: list[StoredPlace], layers: list[str] | None, ask: Ask | None
) -> Extraction:
    """The extraction of the placed layers (``layers`` selects keys, as :func:`qextract.extract` does)."""
    records = []
    for p in cast(list[StoredPlace], select(cast(Any, places), layers, model_name)):  # select reads key, aliases
        why: NeedsQKeras | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                record = numpy_record(p)
            except NeedsQKeras as e:
                why = e
        if why is None:
            for w in caught:  # the NumPy attempt's warnings count only where its record is kept
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif ask is None:
            raise UnsupportedError(
                f"layer '{p.key}' ({p.layer.class_name}): the NumPy engine cannot compute it bit for bit "
                f"({why}), and QKeras, which could, is not installed. Fix: install qextract with "
                "TensorFlow and QKeras (pip install qextract), or leave the layer out with layers=[...].",
                arguments=("layers",),
            )
        else:
            record = ask(p, why)
        records.append(record)
    return Extraction(tuple(records), model_name=model_name)


def numpy_record(p: StoredPlace) -> LayerRecord:
    """One layer's record from the NumPy forms; :class:`NeedsQKeras` naming the tensor where they cannot be sure."""
    layer, key, cls = p.layer, p.key, p.layer.class_name
    spec = stored_spec(layer)
    if spec.no_numpy_form:
        raise NeedsQKeras(spec.no_numpy_form)
    if spec.owner or spec.state or spec.custom not in (None, plain, average_multiplier):
        raise NeedsQKeras(f"{cls} layers, whose tensors the NumPy engine does not compute")
    view = StoredLayerView(layer, spec, p.input_shape)
    _holds_what_it_needs(layer, spec, view)
    sources = spec.sources(view)
    names = [s.name for s in sources]
    read = {v.name for s in sources for v in s.variables}
    if len(set(names)) != len(names) or set(layer.full_names) - read:
        raise NeedsQKeras(f"{cls} layer weights the registry does not read one to one")
    tensors = {}
    for s in sources:
        try:
            tensors[s.name] = quantize_tensor(s, key, cls, numpy_apply)
        except NeedsQKeras as e:
            raise NeedsQKeras(f"tensor '{s.name}': {e}") from None
    activations = tuple(a for name, obj in spec.activation_objects(view) if (a := _activation(key, name, obj)))
    return LayerRecord(key, cls, spec.kind, tensors, activations, geometry(p), ())


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
