"""Walk a model and extract every tensor exactly as its layer computes with it.

For each weight the layer's own quantizer is run (on a copy, so the model is
untouched), its registry entry turns its output into integer codes and a scale, and
the result is checked before it is returned: the codes lie in their format's
range and ``codes x scale`` reproduces the quantizer's output in float32.

The walk goes into nested models and wrappers (:mod:`qextract.reading.nested`), and
accounts for every weight variable: each one is read into exactly one layer's
tensors or declared state, or extraction stops naming it. Nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .._keras import generation, require_keras_model
from ..errors import UnsupportedError, UsageError
from ..layers import spec_for
from ..numformat import Float
from ..quantizers import describe, entry_for, is_quantizer
from ..tensor import ActivationRecord, Extraction, LayerRecord
from .geometry import geometry
from .nested import Placed, placed_layers, select
from .quantization import quantize_tensor

__all__ = ["check_in_memory", "extract", "extract_layer", "extract_records", "quantize_tensor"]


def extract(
    model: Any,
    *,
    layers: list[str] | None = None,
    engine: str = "auto",
    weights: str | os.PathLike[str] | None = None,
    trusted: bool = False,
) -> Extraction:
    """Extract every layer of ``model`` (a tf-keras / QKeras model, or a model file), in model order.

    Layers inside nested models and TimeDistributed wrappers are records of
    their own, keyed by their path (``encoder/conv1``). ``layers`` restricts
    the walk to the named layers: a key, or a nested model's or wrapper's name
    for everything inside it (unknown names are an error). The model is never
    modified.

    A path (``.h5``, an architecture ``.json`` with ``weights``, ``.keras``, a
    SavedModel folder) is extracted by ``engine`` (:mod:`qextract.engines`):
    ``"numpy"`` reads the file with h5py and computes every quantizer in NumPy,
    without TensorFlow; ``"qkeras"`` loads the model with Keras (``trusted`` as
    for :func:`qextract.load_model`); ``"auto"`` takes ``numpy`` for the files it
    can read. Both give the same extraction. An in-memory model is always
    extracted with its own layers.

    >>> ex = qextract.extract(model)                     # doctest: +SKIP
    >>> ex = qextract.extract("model.h5", engine="numpy")  # doctest: +SKIP
    >>> ex["conv1"]["kernel"].codes.dtype, ex["conv1"]["kernel"].scale
    """
    if isinstance(model, (str, os.PathLike)):
        from ..engines import extract_file

        return extract_file(model, weights=weights, layers=layers, engine=engine, trusted=trusted)
    check_in_memory(engine, weights)
    return Extraction(tuple(extract_records(model, layers=layers)), model_name=model.name)


def check_in_memory(engine: str, weights: Any) -> None:
    """Refuse the arguments that only a model file takes, for an in-memory model (extracted with its own layers)."""
    if engine == "numpy" or weights is not None:
        raise UsageError(
            "engine='numpy' and weights=... are for a model file; an in-memory model is extracted with its own "
            "layers. Fix: pass the file's path, or leave them out",
            arguments=("engine", "weights"),
        )


def extract_records(model: Any, *, layers: list[str] | None = None) -> Iterator[LayerRecord]:
    """:func:`extract`'s records one layer at a time, so that a caller can drop each before the next exists.

    The checks over the whole model (variables no layer reads, keys naming
    two layers) run after the last record, before the generator ends: a
    caller must consume it to the end to know the extraction is complete.
    """
    require_keras_model(model)
    placed = placed_layers(model)
    read: set[int] = set()
    names: list[str] = []
    for p in select(placed, layers, model.name):
        record, ids = _extract_placed(p)
        read |= ids
        names.append(record.name)
        yield record
        del record  # not held while the next layer is extracted
    if layers is None:  # variables held by no leaf (a subclassed model's own add_weight)
        _refuse_unread(
            f"model '{model.name}'", model.weights, read, "belong to no layer qextract reads (a model's own weights)"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UnsupportedError(
            f"model '{model.name}': layer key(s) {', '.join(map(repr, repeated))} name more than one layer "
            "(a layer name containing '/' equals a nested path). Fix: rename the layer."
        )


def extract_layer(layer: Any, key: str | None = None) -> LayerRecord:
    """One leaf layer's tensors and activation formats (for a nested model use :func:`extract`)."""
    return _extract_placed(Placed(key or layer.name, layer))[0]


def _extract_placed(placed: Placed) -> tuple[LayerRecord, set[int]]:
    """The layer's record, and the ids of the variables it read (checked to be all of the layer's)."""
    layer, key = placed.layer, placed.key
    spec = spec_for(layer)
    cls = type(layer).__name__
    sources = spec.sources(layer)
    state = spec.state_variables(layer)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UnsupportedError(
            f"layer '{key}' ({cls}): tensor names repeat ({', '.join(names)}); qextract cannot tell them apart"
        )
    read = {id(v) for s in sources for v in s.variables} | {id(v) for v in state}
    _refuse_unread(f"layer '{key}' ({cls})", layer.weights, read)
    record = LayerRecord(
        name=key,
        class_name=cls,
        kind=spec.kind,
        tensors={s.name: quantize_tensor(s, key, cls) for s in sources},
        activations=tuple(a for name, obj in spec.activation_objects(layer) if (a := _activation(key, name, obj))),
        config=geometry(placed),
        state=tuple(generation().variable_path(v) for v in state),
    )
    return record, read


def _refuse_unread(
    where: str, variables: list[Any], read: set[int], why: str = "are not read by qextract's rule for this layer"
) -> None:
    """Stop, naming them, if any of ``variables`` was neither read into a tensor nor declared state."""
    missed = [generation().variable_path(v) for v in variables if id(v) not in read]
    if missed:
        raise UnsupportedError(
            f"{where}: weight variable(s) {', '.join(missed)} {why}, so they would be missing from the export. "
            "Fix: extend qextract.layers to read them, or leave the layer out with layers=[...].",
            arguments=("layers",),
        )


def _activation(layer: str, name: str, obj: Any) -> ActivationRecord | None:
    """A quantizer applied to data, or a named float activation; None for 'linear'."""
    where = f"layer '{layer}', {name}"
    if isinstance(obj, str):
        return None if obj == "linear" else ActivationRecord(layer, name, obj, Float(), notes=("float",))
    if is_quantizer(obj):
        entry = entry_for(obj, where)
        notes: tuple[str, ...] = (entry.stochastic_note,) if entry.stochastic_note else ()
        if isinstance(getattr(obj, "alpha", None), str):
            notes += ("scale computed from the data on every call",)
        return ActivationRecord(layer, name, describe(obj), entry.number_format(obj), obj, notes)
    fname = getattr(obj, "__name__", type(obj).__name__)
    if fname == "linear":
        return None
    return ActivationRecord(layer, name, fname, Float(), notes=("float",))
