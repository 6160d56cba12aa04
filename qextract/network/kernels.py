"""Exact dot products, convolutions and windows over integer codes (or floats), channels last.

Integer inputs run as float64 BLAS products where every partial sum provably
stays below 2**53 (then float64 *is* integer arithmetic, and fast), else as
int64 products; above 2**62 the caller gets :class:`~.signal.Overflow` and
decides. Windows follow TensorFlow's padding rule (:mod:`qextract.padding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..padding import conv_pads
from .signal import FLOAT_EXACT, INT_LIMIT, Overflow


def pads_for(
    padding: str, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> list[tuple[int, int]]:
    return conv_pads(padding, tuple(spatial), tuple(kernel), tuple(strides), tuple(dilation))


def windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    fill: float | int = 0,
) -> np.ndarray:
    """``(N, *out, *kernel, C)`` windows of channels-last ``x``, padded with ``fill`` (a view where no padding)."""
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    nd = len(kernel)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    win = sliding_window_view(x, span, axis=tuple(range(1, 1 + nd)))  # (N, *full, C, *span)
    index = (slice(None), *(slice(None, None, s) for s in strides), slice(None))
    win = win[(*index, *(slice(None, None, d) for d in dilation))]
    return np.moveaxis(win, 1 + nd, -1)


def bound(x_max: int, w: np.ndarray, contracted: tuple[int, ...]) -> int:
    """The largest magnitude a sum of ``x * w`` over ``contracted`` axes of ``w`` can reach, with ``|x| <= x_max``."""
    sums = np.abs(w).astype(np.float64).sum(axis=contracted) if w.size else np.zeros(1)
    return int(x_max) * int(np.max(sums, initial=0.0)) + 1


def _route(x_max: int, w: np.ndarray, contracted: tuple[int, ...]) -> type:
    """The dtype that sums these products exactly: float64 below 2**53, int64 below 2**62."""
    b = bound(x_max, w, contracted)
    if b < FLOAT_EXACT:
        return np.float64
    if b < INT_LIMIT:
        return np.int64
    raise Overflow(f"products sum up to {b:.3g}, beyond 64-bit integers")


def _operands(x: np.ndarray, w: np.ndarray, contracted: tuple[int, ...], x_max: int | None) -> tuple:
    """``x`` and ``w`` in the dtype that computes their products exactly (float64 for floats)."""
    if x_max is None:
        return np.asarray(x, np.float64), np.asarray(w, np.float64)
    dtype = _route(x_max, w, contracted)
    return x.astype(dtype, copy=False), w.astype(dtype, copy=False)


def _result(y: np.ndarray, x_max: int | None) -> np.ndarray:
    return y if x_max is None else y.astype(np.int64, copy=False)


def dense(x: np.ndarray, kernel: np.ndarray, x_max: int | None = None) -> np.ndarray:
    """``x @ kernel`` over the last axis of ``x`` (any leading axes).

    ``x_max`` (the largest ``|x|``) marks integer operands: the product is then
    exact, int64; without it everything is float64.
    """
    xs, k = _operands(x, kernel, (0,), x_max)
    lead = x.shape[:-1]
    return _result(xs.reshape(-1, x.shape[-1]) @ k, x_max).reshape(*lead, kernel.shape[-1])


def _shifted(
    x: np.ndarray, offset: tuple[int, ...], out: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    """The input pixels kernel tap ``offset`` meets at every output position: a strided slice of padded ``x``."""
    index = [slice(None)]
    for o, n, s, d in zip(offset, out, strides, dilation):
        index.append(slice(o * d, o * d + (n - 1) * s + 1, s))
    return x[tuple(index)]


def _geometry(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` padded, and the output's spatial shape."""
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = tuple((n - ((k - 1) * d + 1)) // s + 1 for n, k, s, d in zip(x.shape[1:-1], kernel, strides, dilation))
    return x, out


def _columns(
    xp: np.ndarray,
    taps: Sequence[tuple[int, ...]],
    out: tuple[int, ...],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """``(N * positions, taps * C)`` columns gathered tap by tap (each a strided slice copied whole)."""
    n, c = xp.shape[0], xp.shape[-1]
    if c == 1:  # tap-major, so that every copy runs along whole rows; BLAS takes the transpose as it is
        cols = np.empty((len(taps), n, *out), xp.dtype)
        for t, offset in enumerate(taps):
            cols[t] = _shifted(xp, offset, out, strides, dilation)[..., 0]
        return cols.reshape(len(taps), -1).T
    cols = np.empty((n, *out, len(taps), c), xp.dtype)
    for t, offset in enumerate(taps):
        cols[..., t, :] = _shifted(xp, offset, out, strides, dilation)
    return cols.reshape(-1, len(taps) * c)


def conv(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    x_max: int | None = None,
) -> np.ndarray:
    """Correlation of ``x (N, *spatial, I)`` with ``kernel (*k, I, O)`` as Keras's Conv1D/Conv2D: one matrix product."""
    nd = kernel.ndim - 2
    xs, k = _operands(x, kernel, tuple(range(nd + 1)), x_max)
    xp, out = _geometry(xs, kernel.shape[:nd], strides, dilation, pads)
    cols = _columns(xp, list(np.ndindex(*kernel.shape[:nd])), out, strides, dilation)
    y = cols @ k.reshape(-1, kernel.shape[-1])
    return _result(y, x_max).reshape(x.shape[0], *out, kernel.shape[-1])


DENSE_DEPTHWISE = 64
"""Up to this many output channels a depthwise layer runs as one dense product with a block-diagonal kernel."""


def depthwise(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    x_max: int | None = None,
) -> np.ndarray:
    """Depthwise correlation with ``kernel (*k, C, M)``; output channel ``c*M + m``, as Keras.

    Few channels: a convolution with the block-diagonal kernel ``(*k, C, C*M)``
    (one BLAS product beats C*M thin ones); many: tap by tap, elementwise.
    """
    nd = kernel.ndim - 2
    c, m = kernel.shape[-2:]
    if c * m <= DENSE_DEPTHWISE:
        full = np.zeros((*kernel.shape[:nd], c, c * m), kernel.dtype)
        for ch in range(c):
            full[..., ch, ch * m : (ch + 1) * m] = kernel[..., ch, :]
        return conv(x, full, strides, dilation, pads, x_max)
    xs, k = _operands(x, kernel, tuple(range(nd)), x_max)
    xp, out = _geometry(xs, kernel.shape[:nd], strides, dilation, pads)
    y = np.zeros((x.shape[0], *out, c, m), xs.dtype)
    for offset in np.ndindex(*kernel.shape[:nd]):
        y += _shifted(xp, offset, out, strides, dilation)[..., None] * k[offset]
    return _result(y.reshape(*y.shape[:-2], c * m), x_max)


def window_sums(
    x: np.ndarray, pool: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Sum over each pooling window of ``x`` (same dtype), and how many real (unpadded) elements it covers."""
    nd = len(pool)
    dilation = (1,) * nd
    win = windows(x, pool, strides, dilation, pads)
    axes = tuple(range(1 + nd, 1 + 2 * nd))
    ones = np.ones((1, *x.shape[1:-1], 1), np.int64)
    counts = windows(ones, pool, strides, dilation, pads).sum(axis=axes)[0]  # (*out, 1)
    return win.sum(axis=axes), counts


def window_max(
    x: np.ndarray, pool: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Max over each pooling window; padding never wins (TensorFlow ignores it)."""
    nd = len(pool)
    fill = np.iinfo(np.int64).min if x.dtype.kind == "i" else -np.inf
    win = windows(x, pool, strides, (1,) * nd, pads, fill=fill)
    return win.max(axis=tuple(range(1 + nd, 1 + 2 * nd)))
