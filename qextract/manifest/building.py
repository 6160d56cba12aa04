"""``manifest.json``: what every exported file holds, built from the extraction and the laid-out tensors.

The entries are the typed dataclasses of :mod:`qextract.manifest.entries`;
:mod:`qextract.verification.verifier` reads them back (with the files) and nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..kinds import Kind
from ..layouts import AXIS_MEANINGS, ExportedTensor
from ..padding import conv_pads, transpose_crop
from ..tensor import ActivationRecord, LayerRecord
from .entries import ActivationEntry, Geometry, LayerEntry, ScaleEntry, TensorEntry

__all__ = ["activation_entry", "geometry", "layer_entry", "tensor_entry"]


def _floats(a: np.ndarray) -> tuple[float, ...] | float:
    """Float32 values as JSON numbers; repr of a float32 widened to float64 round-trips exactly."""
    a = np.asarray(a, np.float32)
    return float(a) if a.ndim == 0 else tuple(float(v) for v in a.reshape(-1))


def tensor_entry(t: ExportedTensor, files: list[str], ste_rounded: int, notes: tuple[str, ...]) -> TensorEntry:
    """The manifest's entry of ``t``, held by ``files`` (paths inside the export)."""
    entry = TensorEntry(
        name=t.name,
        key=t.key,
        layout=t.layout,
        axes=t.axes,
        axis_meaning={c: AXIS_MEANINGS[c] for c in dict.fromkeys(t.axes)},
        shape=tuple(t.shape),
        native_shape=tuple(t.native_shape),
        quantized=t.quantized,
        quantizer=t.quantizer_str,
        format=_tensor_format(t),
        files=tuple(files),
        notes=tuple(notes),
    )
    if not t.quantized:
        return entry
    scale = ScaleEntry(
        values=_floats(t.scale),
        axis=t.scale_axis,
        per_channel=t.per_channel,
        power_of_two=bool(np.all(np.frexp(np.asarray(t.scale, np.float32))[0] == 0.5)),
    )
    return dataclasses.replace(
        entry,
        code_dtype=str(t.codes.dtype),  # type: ignore[union-attr]
        c_type=t.format.c_type,
        scale=scale,
        ap_type=t.ap_type,
        decode=_decode_rule(t),
        ste_rounded=ste_rounded,
    )


def _tensor_format(t: ExportedTensor) -> dict[str, Any]:
    """The format's description, without its unit-scale ``ap_type``: the tensor's own ``ap_type``
    (which accounts for its scale, e.g. a per-channel auto_po2 one) is recorded beside it."""
    described = t.format.describe()
    described.pop("ap_type", None)
    return described


def _decode_rule(t: ExportedTensor) -> str:
    """The format's value rule, saying where the manifest keeps what it names."""
    note = "signs stored beside the codes" if t.format.has_signs else "scale broadcast along scale.axis"
    return f"{t.format.value_rule(table='format.table')} ({note})"


def activation_entry(a: ActivationRecord) -> ActivationEntry:
    return ActivationEntry(a.name, a.quantizer_str, a.format.describe(), tuple(a.notes))


_GEOMETRY_KEYS = (
    "strides",
    "dilation_rate",
    "kernel_size",
    "depth_multiplier",
    "padding",
    "epsilon",
    "reset_after",
    "pool_size",
    "data_format",
    "groups",
)


def geometry(record: LayerRecord) -> Geometry:
    """Strides, dilation and the explicit padding a hardware flow needs, from TF's rules.

    Pads are computed over the spatial axes, which for ``data_format="channels_first"``
    are ``input_shape[2:]`` (not ``[1:-1]``); pooling windows get them too. A grouped
    convolution records ``groups`` (its kernel's I axis is ``C / groups``), a batch
    norm the ``axis`` it normalises.
    """
    c = record.config
    out: dict[str, Any] = {k: c[k] for k in ("input_shape", "output_shape") if k in c}
    for key in _GEOMETRY_KEYS:
        if key in c:
            out[key] = c[key]
    if record.kind == Kind.BATCHNORM and "axis" in c:
        axis = c["axis"]
        out["axis"] = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
    groups = _groups(record)
    if groups is not None:
        out["groups"] = groups
    window = c.get("kernel_size", c.get("pool_size"))
    if "padding" in c and window is not None and "input_shape" in c:
        first = c.get("data_format") == "channels_first"
        sizes = tuple(c["input_shape"][2:] if first else c["input_shape"][1:-1])
        kernel = tuple(window) if isinstance(window, (list, tuple)) else (window,) * len(sizes)
        strides = tuple(c.get("strides") or kernel)
        dilation = tuple(c.get("dilation_rate") or [1] * len(kernel))
        if None not in sizes and len(sizes) == len(kernel) in (1, 2):
            if record.kind == Kind.CONV2D_TRANSPOSE:
                crops = [transpose_crop(n, k, s, c["padding"]) for n, k, s in zip(sizes, kernel, strides)]
                out["transpose_crop"] = [{"full": f, "before": b, "size": n} for f, b, n in crops]
            else:
                pads = conv_pads(c["padding"], sizes, kernel, strides, dilation)
                names = (("top", "bottom"), ("left", "right")) if len(pads) == 2 else (("left", "right"),)
                out["explicit_padding"] = {n: p for pair, pad in zip(names, pads) for n, p in zip(pair, pad)}
    return Geometry.from_json(out)


def _groups(record: LayerRecord) -> int | None:
    """A convolution's ``groups``: recorded by extraction, or input channels over the kernel's I axis."""
    if record.kind not in (Kind.CONV1D, Kind.CONV2D) or "kernel" not in record.tensors:
        return None
    c = record.config
    if isinstance(c.get("groups"), int):
        return int(c["groups"])
    shape = c.get("input_shape")
    if not shape:
        return None
    channels = shape[1] if c.get("data_format") == "channels_first" else shape[-1]
    per_group = record.tensors["kernel"].values.shape[-2]
    if not isinstance(channels, int) or per_group < 1 or channels % per_group:
        return None
    return channels // per_group


def layer_entry(
    record: LayerRecord, tensors: list[TensorEntry], flatten_shape: list[int] | None, flatten_order: str | None = None
) -> LayerEntry:
    # A Dense fed by Flatten: the shape Flatten received (channels last, as Keras), and the order of the
    # flat inputs the exported kernel expects ("HWC": Keras/TFLite; "CHW": PyTorch/ONNX's NCHW flatten).
    return LayerEntry(
        name=record.name,
        class_name=record.class_name,
        kind=record.kind,
        geometry=geometry(record),
        activations=tuple(activation_entry(a) for a in record.activations),
        tensors=tuple(tensors),
        flatten_shape=None if flatten_shape is None else tuple(flatten_shape),
        flatten_order=None if flatten_shape is None else flatten_order,
    )
