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
from typing import Any

from .._keras import require_keras_model
from ..errors import UnsupportedError, UsageError
from ..layers import spec_for
from ..numformat import Float
from ..quantizers import describe, entry_for, is_quantizer
from ..tensor import ActivationRecord, Extraction, LayerRecord
from .nested import Placed, flatten_feeding, placed_layers, select
from .quantization import quantize_tensor

__all__ = ["extract", "extract_layer", "quantize_tensor"]


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
    if engine == "numpy" or weights is not None:
        raise UsageError(
            "engine='numpy' and weights=... are for a model file; an in-memory model is extracted with its own "
            "layers. Fix: pass the file's path, or leave them out",
            arguments=("engine", "weights"),
        )
    require_keras_model(model)
    placed = placed_layers(model)
    records, read = [], set()
    for p in select(placed, layers, model.name):
        record, ids = _extract_placed(p)
        records.append(record)
        read |= ids
    if layers is None:  # variables held by no leaf (a subclassed model's own add_weight)
        _refuse_unread(
            f"model '{model.name}'", model.weights, read, "belong to no layer qextract reads (a model's own weights)"
        )
    names = [r.name for r in records]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UnsupportedError(
            f"model '{model.name}': layer key(s) {', '.join(map(repr, repeated))} name more than one layer "
            "(a layer name containing '/' equals a nested path). Fix: rename the layer."
        )
    return Extraction(tuple(records), model_name=model.name)


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
        config=_geometry(placed),
        state=tuple(v.name for v in state),
    )
    return record, read


def _refuse_unread(
    where: str, variables: list[Any], read: set[int], why: str = "are not read by qextract's rule for this layer"
) -> None:
    """Stop, naming them, if any of ``variables`` was neither read into a tensor nor declared state."""
    missed = [v.name for v in variables if id(v) not in read]
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


_GEOMETRY = (
    "strides",
    "padding",
    "dilation_rate",
    "kernel_size",
    "depth_multiplier",
    "data_format",
    "pool_size",
    "units",
    "filters",
    "epsilon",
    "axis",
    "use_bias",
    "reset_after",
    "output_padding",
)


def _geometry(placed: Placed) -> dict[str, Any]:
    """The layer settings a hardware flow needs beside the weights, plus shapes.

    Settings a wrapper does not have itself are read from what it wraps (a
    Bidirectional's forward layer, an RNN's cell). Shapes come from the
    layer's graph node, else from its place (per time step inside a
    TimeDistributed), else from the shape it was built with.
    """
    layer = placed.layer
    owners = [o for o in (layer, getattr(layer, "forward_layer", None), getattr(layer, "cell", None)) if o is not None]
    config: dict[str, Any] = {}
    for key in _GEOMETRY:
        value = next((v for o in owners if (v := getattr(o, key, None)) is not None), None)
        if value is not None:
            config[key] = list(value) if isinstance(value, tuple) else value
    flatten = flatten_feeding(placed)
    if flatten is not None:
        config["flatten_input_shape"] = list(flatten)
    shapes = {"input_shape": placed.input_shape, "output_shape": placed.output_shape}
    for key in ("input_shape", "output_shape"):
        shape = shapes[key] or _shape(layer, key)
        if isinstance(shape, tuple):
            config[key] = list(shape)
    return config


def _shape(layer: Any, key: str) -> Any:
    """The layer's input or output shape from its graph node; without any node, from the shape it was built with."""
    try:
        return getattr(layer, key)
    except (AttributeError, RuntimeError):
        if getattr(layer, "_inbound_nodes", None):  # several nodes of different shapes: no one shape
            return None
    built = getattr(layer, "_build_input_shape", None)
    if built is None:  # never built with a shape
        return None
    try:
        shape = tuple(built.as_list() if hasattr(built, "as_list") else built)
        if key == "output_shape":
            out = layer.compute_output_shape(shape)
            shape = tuple(out.as_list() if hasattr(out, "as_list") else out)
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return None
    return shape if all(d is None or isinstance(d, int) for d in shape) else None
