"""Walk a model and extract every tensor exactly as its layer computes with it.

For each weight the layer's own quantizer is run (on a copy, so the model is
untouched), the codec turns its output into integer codes and a scale, and
the result is checked before it is returned: the codes lie in their format's
range and ``codes x scale`` reproduces the quantizer's output in float32.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._keras import require_keras_model
from .errors import ExactnessError, QExtractError, QExtractWarning, UsageError
from .layers import TensorSource, spec_for
from .numformat import Float
from .quantizers import apply, codec_for, describe, is_quantizer, ste_explains
from .tensor import ActivationRecord, Extraction, LayerRecord, QuantizedTensor, along, decode

__all__ = ["extract", "quantize_tensor"]


def extract(model: Any, *, layers: list[str] | None = None) -> Extraction:
    """Extract every layer of ``model`` (a tf-keras / QKeras model), in model order.

    ``layers`` restricts the walk to the named layers (unknown names are an
    error). The model is never modified.

    >>> ex = qextract.extract(model)                     # doctest: +SKIP
    >>> ex["conv1"]["kernel"].codes.dtype, ex["conv1"]["kernel"].scale
    """
    require_keras_model(model)
    wanted = _check_names(model, layers)
    records = []
    for layer in model.layers:
        if wanted is None or layer.name in wanted:
            records.append(extract_layer(layer))
    return Extraction(tuple(records), model_name=model.name)


def _check_names(model: Any, layers: list[str] | None) -> set[str] | None:
    if layers is None:
        return None
    known = {layer.name for layer in model.layers}
    missing = [n for n in layers if n not in known]
    if missing:
        raise UsageError(
            f"model '{model.name}' has no layer named {', '.join(repr(n) for n in missing)}; "
            f"its layers are: {', '.join(sorted(known))}"
        )
    return set(layers)


def extract_layer(layer: Any) -> LayerRecord:
    """One layer's tensors and activation formats."""
    spec = spec_for(layer)
    cls = type(layer).__name__
    tensors = {}
    for source in spec.sources(layer):
        tensors[source.name] = quantize_tensor(source, layer.name, cls)
    activations = tuple(_activation(layer.name, name, obj) for name, obj in spec.activation_objects(layer))
    return LayerRecord(
        name=layer.name,
        class_name=cls,
        kind=spec.kind,
        tensors=tensors,
        activations=tuple(a for a in activations if a is not None),
        config=_geometry(layer),
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
        return QuantizedTensor(layer, layer_class, source.name, raw, raw, notes=("unquantized",))
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
    )


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


def _geometry(layer: Any) -> dict[str, Any]:
    """The layer settings a hardware flow needs beside the weights, plus shapes."""
    config: dict[str, Any] = {}
    for key in _GEOMETRY:
        value = getattr(layer, key, None)
        if value is not None:
            config[key] = list(value) if isinstance(value, tuple) else value
    flatten = _flatten_source(layer)
    if flatten is not None:
        config["flatten_input_shape"] = flatten
    for key in ("input_shape", "output_shape"):
        try:
            shape = getattr(layer, key)
        except (AttributeError, RuntimeError):
            continue
        if isinstance(shape, tuple):
            config[key] = list(shape)
    return config


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
