"""``manifest.json``: what every exported file holds, and its JSON Schema.

The manifest is built from the extraction and the laid-out tensors only;
:mod:`qextract.verify` reads it back (with the files) and nothing else.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .layouts import AXIS_MEANINGS, ExportedTensor
from .padding import conv_pads, transpose_crop
from .tensor import ActivationRecord, LayerRecord

SCHEMA_VERSION = 1
SCHEMA_FILE = "manifest.schema.json"


@lru_cache(maxsize=None)
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (shipped with the package)."""
    return json.loads(resources.files("qextract").joinpath(SCHEMA_FILE).read_text())


def validate(manifest: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``manifest`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(manifest, schema())


def _floats(a: np.ndarray) -> list[float] | float:
    """Float32 values as JSON numbers; repr of a float32 widened to float64 round-trips exactly."""
    a = np.asarray(a, np.float32)
    return float(a) if a.ndim == 0 else [float(v) for v in a.reshape(-1)]


def tensor_entry(t: ExportedTensor, files: list[dict[str, str]], ste_rounded: int, notes: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": t.name,
        "key": t.key,
        "layout": str(t.layout),
        "axes": t.axes,
        "axis_meaning": {c: AXIS_MEANINGS[c] for c in dict.fromkeys(t.axes)},
        "shape": list(t.shape),
        "native_shape": list(t.native_shape),
        "dtype": "float32",
        "quantized": t.quantized,
        "quantizer": t.quantizer_str,
        "format": _tensor_format(t),
        "files": files,
        "notes": list(notes),
    }
    if t.quantized:
        entry["code_dtype"] = str(t.codes.dtype)  # type: ignore[union-attr]
        entry["c_type"] = t.format.c_type
        entry["scale"] = {
            "values": _floats(t.scale),
            "axis": t.scale_axis,
            "per_channel": t.per_channel,
            "power_of_two": bool(np.all(np.frexp(np.asarray(t.scale, np.float32))[0] == 0.5)),
        }
        entry["ap_type"] = t.ap_type
        entry["decode"] = _decode_rule(t)
        entry["ste_rounded"] = ste_rounded
    return entry


def _tensor_format(t: ExportedTensor) -> dict[str, Any]:
    """The format's description, without its unit-scale ``ap_type``: the tensor's own ``ap_type``
    (which accounts for its scale, e.g. a per-channel auto_po2 one) is recorded beside it."""
    described = t.format.describe()
    described.pop("ap_type", None)
    return described


def _decode_rule(t: ExportedTensor) -> str:
    if t.format.kind == "po2":
        return "value = sign * 2**code * scale (signs stored beside the codes)"
    if t.format.kind == "lut":
        return "value = format.table[code] * scale"
    return "value = code * scale (scale broadcast along scale.axis)"


def activation_entry(a: ActivationRecord) -> dict[str, Any]:
    return {"name": a.name, "quantizer": a.quantizer_str, "format": a.format.describe(), "notes": list(a.notes)}


def geometry(record: LayerRecord) -> dict[str, Any]:
    """Strides, dilation and the explicit padding a hardware flow needs, from TF's rules."""
    c = record.config
    out: dict[str, Any] = {k: c[k] for k in ("input_shape", "output_shape") if k in c}
    for key in ("strides", "dilation_rate", "kernel_size", "depth_multiplier", "padding", "epsilon", "reset_after", "pool_size"):
        if key in c:
            out[key] = c[key]
    if "padding" in c and "kernel_size" in c and "input_shape" in c:
        sizes = tuple(c["input_shape"][1:-1])
        kernel, strides = tuple(c["kernel_size"]), tuple(c["strides"])
        dilation = tuple(c.get("dilation_rate", [1] * len(kernel)))
        if None not in sizes and len(sizes) == len(kernel):
            if record.kind == "conv2d_transpose":
                crops = [transpose_crop(n, k, s, c["padding"]) for n, k, s in zip(sizes, kernel, strides)]
                out["transpose_crop"] = [{"full": f, "before": b, "size": n} for f, b, n in crops]
            else:
                pads = conv_pads(c["padding"], sizes, kernel, strides, dilation)
                names = (("top", "bottom"), ("left", "right")) if len(pads) == 2 else (("left", "right"),)
                out["explicit_padding"] = {n: p for pair, pad in zip(names, pads) for n, p in zip(pair, pad)}
    return out


def layer_entry(
    record: LayerRecord, tensors: list[dict[str, Any]], flatten_shape: list[int] | None, flatten_order: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": record.name,
        "class": record.class_name,
        "kind": record.kind,
        "geometry": geometry(record),
        "activations": [activation_entry(a) for a in record.activations],
        "tensors": tensors,
    }
    if flatten_shape is not None:
        # A Dense fed by Flatten: the shape Flatten received (channels last, as Keras), and the order of the
        # flat inputs the exported kernel expects ("HWC": Keras/TFLite; "CHW": PyTorch/ONNX's NCHW flatten).
        entry["flatten_shape"] = list(flatten_shape)
        if flatten_order is not None:
            entry["flatten_order"] = flatten_order
    return entry
