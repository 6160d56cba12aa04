"""Walk a model and extract every tensor exactly as its layer computes with it.

For each weight the layer's own quantizer is run (on a copy, so the model is
untouched), the codec turns its output into integer codes and a scale, and
the result is checked before it is returned: the codes lie in their format's
range and ``codes x scale`` reproduces the quantizer's output in float32.

The walk goes into nested models and wrappers (:mod:`qextract.nested`), and
accounts for every weight variable: each one is read into exactly one layer's
tensors or declared state, or extraction stops naming it. Nothing is skipped.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._keras import require_keras_model
from .errors import ExactnessError, QExtractError, QExtractWarning, UnsupportedError
from .layers import TensorSource, spec_for
from .nested import Placed, placed_layers, select
from .numformat import Float
from .quantizers import apply, codec_for, describe, is_quantizer, ste_explains
from .tensor import ActivationRecord, Extraction, LayerRecord, QuantizedTensor, along, decode

__all__ = ["extract", "extract_layer", "quantize_tensor"]


def extract(model: Any, *, layers: list[str] | None = None) -> Extraction:
    """Extract every layer of ``model`` (a tf-keras / QKeras model), in model order.

    Layers inside nested models and TimeDistributed wrappers are records of
    their own, keyed by their path (``encoder/conv1``). ``layers`` restricts
    the walk to the named layers: a key, or a nested model's or wrapper's name
    for everything inside it (unknown names are an error). The model is never
    modified.

    >>> ex = qextract.extract(model)                     # doctest: +SKIP
    >>> ex["conv1"]["kernel"].codes.dtype, ex["conv1"]["kernel"].scale
    """
    require_keras_model(model)
    placed = placed_layers(model)
    records, read = [], set()
    for p in select(placed, layers, model.name):
        record, ids = _extract_placed(p)
        records.append(record)
        read |= ids
    if layers is None:  # variables held by no leaf (a subclassed model's own add_weight)
        _refuse_unread(f"model '{model.name}'", model.weights, read, "belong to no layer qextract reads (a model's own weights)")
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
        raise UnsupportedError(f"layer '{key}' ({cls}): tensor names repeat ({', '.join(names)}); qextract cannot tell them apart")
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


def _refuse_unread(where: str, variables: list[Any], read: set[int], why: str = "are not read by qextract's rule for this layer") -> None:
    """Stop, naming them, if any of ``variables`` was neither read into a tensor nor declared state."""
    missed = [v.name for v in variables if id(v) not in read]
    if missed:
        raise UnsupportedError(
            f"{where}: weight variable(s) {', '.join(missed)} {why}, so they would be missing from the export. "
            "Fix: extend qextract.layers to read them, or leave the layer out with --layers."
        )


def quantize_tensor(source: TensorSource, layer: str, layer_class: str) -> QuantizedTensor:
    """Apply ``source.quantizer`` to ``source.raw`` and derive exact codes and scale."""
    where = f"layer '{layer}' ({layer_class}), tensor '{source.name}' {tuple(source.raw.shape)}"
    raw = source.raw
    if not np.all(np.isfinite(raw)):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        raise ExactnessError(
            f"{where}: {bad} raw weight(s) are NaN or Inf. Fix: retrain or repair the weights; "
            "nothing meaningful can be exported from them."
        )
    if source.quantizer is None:
        return QuantizedTensor(layer, layer_class, source.name, raw, raw, notes=("unquantized",), variables=_names(source))
    q = source.quantizer
    codec = codec_for(q, where)
    try:
        out, used = apply(q, raw, where)
        enc = codec.encode(used, out)
    except QExtractError as e:
        raise type(e)(f"{where}: {e}") from None
    notes = (codec.stochastic_note,) if codec.stochastic_note else ()
    return _checked(where, source, layer, layer_class, q, out, enc, notes)


def _checked(
    where: str, source: TensorSource, layer: str, layer_class: str, q: Any, out: np.ndarray, enc: Any, notes: tuple[str, ...]
) -> QuantizedTensor:
    fmt, codes = enc.format, enc.codes
    if not np.all(np.isfinite(out)):
        raise ExactnessError(f"{where}: quantizer {describe(q)} produced NaN or Inf from finite weights")
    outside = ~((codes >= fmt.code_min) & (codes <= fmt.code_max))  # NaN codes count as outside
    if outside.any():
        i = np.unravel_index(int(np.argmax(outside)), codes.shape)
        raise ExactnessError(
            f"{where}: {int(outside.sum())} value(s) of {describe(q)} are not on its {fmt} grid "
            f"(first at {tuple(int(k) for k in i)}: value {out[i]!r}); codes must lie in "
            f"[{fmt.code_min}, {fmt.code_max}]"
        )
    signs = enc.signs
    grid = decode(fmt, codes, along(enc.scale, enc.scale_axis, out.ndim), signs)
    codes = codes.astype(fmt.code_dtype)
    differs = grid != out
    ste_rounded = 0
    if differs.any():
        explained = ste_explains(source.raw, grid, out)
        unexplained = differs & ~explained
        if unexplained.any():
            i = np.unravel_index(int(np.argmax(unexplained)), out.shape)
            raise ExactnessError(
                f"{where}: codes x scale does not reproduce {describe(q)} at {int(unexplained.sum())} element(s) "
                f"(first at {tuple(int(k) for k in i)}: layer value {out[i]!r}, codes x scale {grid[i]!r})"
            )
        ste_rounded = int(differs.sum())
        warnings.warn(
            f"{where}: at {ste_rounded} clipped element(s) QKeras's straight-through form x + (q - x) "
            "rounds the quantized value in float32; qextract keeps the exact grid value codes x scale "
            "(the layer's float value differs by that rounding only).",
            QExtractWarning,
            stacklevel=4,
        )
    return QuantizedTensor(
        layer=layer,
        layer_class=layer_class,
        name=source.name,
        raw=source.raw,
        values=grid,
        format=fmt,
        codes=codes,
        scale=enc.scale.astype(np.float32),
        scale_axis=enc.scale_axis,
        signs=signs,
        quantizer=q,
        quantizer_str=describe(q),
        ste_rounded=ste_rounded,
        notes=notes,
        variables=_names(source),
    )


def _names(source: TensorSource) -> tuple[str, ...]:
    return tuple(v.name for v in source.variables)


def _activation(layer: str, name: str, obj: Any) -> ActivationRecord | None:
    """A quantizer applied to data, or a named float activation; None for 'linear'."""
    where = f"layer '{layer}', {name}"
    if isinstance(obj, str):
        return None if obj == "linear" else ActivationRecord(layer, name, obj, Float(), notes=("float",))
    if is_quantizer(obj):
        codec = codec_for(obj, where)
        notes = (codec.stochastic_note,) if codec.stochastic_note else ()
        if isinstance(getattr(obj, "alpha", None), str):
            notes += ("scale computed from the data on every call",)
        return ActivationRecord(layer, name, describe(obj), codec.number_format(obj), obj, notes)
    fname = getattr(obj, "__name__", type(obj).__name__)
    if fname == "linear":
        return None
    return ActivationRecord(layer, name, fname, Float(), notes=("float",))


_GEOMETRY = (
    "strides", "padding", "dilation_rate", "kernel_size", "depth_multiplier", "data_format", "pool_size",
    "units", "filters", "epsilon", "axis", "use_bias", "reset_after", "output_padding",
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
    flatten = _flatten_source(layer)
    if flatten is not None:
        config["flatten_input_shape"] = flatten
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
    try:
        shape = tuple(built.as_list() if hasattr(built, "as_list") else built)  # type: ignore[union-attr]
        if key == "output_shape":
            out = layer.compute_output_shape(shape)
            shape = tuple(out.as_list() if hasattr(out, "as_list") else out)
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return None
    return shape if all(d is None or isinstance(d, int) for d in shape) else None


def _flatten_source(layer: Any) -> list[int] | None:
    """For a layer fed directly by Flatten: the (H, W, C) shape that was flattened."""
    try:
        inbound = layer.inbound_nodes[0].inbound_layers
    except (AttributeError, IndexError):
        return None
    if isinstance(inbound, list):
        if len(inbound) != 1:
            return None
        inbound = inbound[0]
    if type(inbound).__name__ != "Flatten" or getattr(inbound, "data_format", "channels_last") != "channels_last":
        return None
    shape = inbound.input_shape
    return list(shape[1:]) if isinstance(shape, tuple) and None not in shape[1:] else None
