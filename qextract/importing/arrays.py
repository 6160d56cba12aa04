"""A source array in some layout -> the native Keras array of one target tensor, and what was done.

Everything goes through :meth:`qextract.layouts.LayoutPlan.invert`, the exact
inverse of the export's rearrangement. The one case it needs help with is a
Dense kernel fed by Flatten, whose input axis may be in either flatten order:

- ``hwc``: Keras's and TFLite's channels_last flatten (H, W, C);
- ``chw``: PyTorch's NCHW flatten (C, H, W). An ``oihw`` kernel ``(O, I)``
  for a Dense fed by Flatten of (H, W, C) has its I axis in this order.

A 2-D kernel in ``chw`` order is viewed as its convolution form
``(O, C, H, W)`` and read back with the ``oihw`` convolution recipe.
"""

from __future__ import annotations

import numpy as np

from .. import layouts
from ..errors import ExactnessError, LayoutError, UsageError
from ..kinds import Kind
from ..layouts import Layout, LayoutPlan, axes
from .records import Incoming
from .targets import Target

FLATTEN_ORDERS = ("hwc", "chw")


def flatten_order(text: str | None, layout: Layout) -> str:
    """``hwc`` / ``chw`` from a user's or a manifest's words; None: the layout's own (oihw: PyTorch's, else Keras's)."""
    if text is None:
        return layouts.flatten_order(layout, (1, 1, 1)).lower()
    squeezed = "".join(ch for ch in text.lower() if ch.isalpha() or ch == ",").replace(",", "")
    if squeezed in ("chw", "nchw", "channelsfirst") or "pytorch" in squeezed or "chwflatten" in squeezed:
        return "chw"
    if (
        squeezed in ("hwc", "nhwc", "channelslast", "keras", "tflite")
        or "channelslast" in squeezed
        or "hwcflatten" in squeezed
    ):
        return "hwc"
    raise UsageError(
        f"unknown flatten order {text!r}; choose 'hwc' (Keras, TFLite: channels_last) or 'chw' (PyTorch: NCHW)"
    )


def to_native(target: Target, incoming: Incoming) -> tuple[np.ndarray, str]:
    """``incoming``'s array as the float32 native array of its tensor in ``target``; and the transform done."""
    tensor, layout, order = incoming.tensor, incoming.layout, incoming.order
    native_shape = target.shapes[tensor]
    where = f"{target.where}, tensor '{tensor}' from {incoming.source}"
    array = np.asarray(incoming.array)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise LayoutError(f"{where}: dtype {array.dtype} is not numeric")
    cast = "" if array.dtype == np.float32 else f"{array.dtype} -> float32"
    values = array.astype(np.float32)
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ExactnessError(
            f"{where}: {bad} value(s) are NaN or Inf. "
            "Fix: repair the source; nothing meaningful can be loaded from them."
        )
    fs = None
    if target.kind == Kind.DENSE and tensor == "kernel":
        fs = incoming.flatten_shape or target.flatten_shape
        if incoming.flatten_shape and target.flatten_shape and tuple(incoming.flatten_shape) != target.flatten_shape:
            raise LayoutError(
                f"{where}: the source flattened a {tuple(incoming.flatten_shape)} tensor, the model's Flatten "
                f"receives {target.flatten_shape}"
            )
    try:
        if fs is not None and (values.ndim > 2 or order == "chw"):
            described = _describe_flat(values, layout, fs)
            return _flattened(values, layout, native_shape, fs), "; ".join(
                filter(None, [incoming.note, cast, described])
            )
        plan = LayoutPlan.of(target.kind, tensor, layout, native_shape)
        if not layout.native and "X" in plan.axes:
            raise LayoutError(
                f"qextract has no {layout} layout rule for {target.class_name} layers; load it in layout hwio"
            )
        out = plan.invert(values)
    except LayoutError as e:
        raise LayoutError(f"{where}: {e}") from None
    native_axes = LayoutPlan.of(target.kind, tensor, "hwio", native_shape).axes
    moved = "unchanged" if plan.axes == native_axes else f"{plan.axes} -> {native_axes}"
    return out, "; ".join(filter(None, [incoming.note, cast, moved]))


def _flattened(values: np.ndarray, layout: Layout, native_shape: tuple[int, ...], fs: tuple[int, ...]) -> np.ndarray:
    if values.ndim > 2:  # the convolution form: the plan knows each layout's axis order
        return LayoutPlan.of(Kind.DENSE, "kernel", layout, native_shape, flatten_shape=fs).invert(values)
    rows, units = native_shape
    expected = (units, rows) if not layout.native else (rows, units)
    if values.shape != expected:
        raise LayoutError(f"dense tensor 'kernel' in layout {layout} has shape {values.shape}; expected {expected}")
    out_in = values if not layout.native else values.T  # (O, I), I in C,H,W order
    conv_form = out_in.reshape(units, fs[-1], *fs[:-1])  # (O, C, H, W)
    return LayoutPlan.of(Kind.DENSE, "kernel", "oihw", native_shape, flatten_shape=fs).invert(conv_form)


def _describe_flat(values: np.ndarray, layout: Layout, fs: tuple[int, ...]) -> str:
    letters = "".join(("", "K", "HW", "DHW")[len(fs) - 1]) if len(fs) <= 4 else "?"
    keras_rows = f"({'*'.join(letters)}*C, O)"
    if values.ndim > 2:
        return f"convolution form {axes('dense', 'kernel', layout, flatten_shape=fs)} -> {keras_rows}"
    flat = "C*" + "*".join(letters)
    source = f"(O, {flat})" if not layout.native else f"({flat}, O)"
    return f"{source}, rows in PyTorch's C,{','.join(letters)} flatten order -> {keras_rows}"
