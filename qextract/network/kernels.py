"""Exact dot products, convolutions and windows over integer codes (or floats), channels last.

Integer operands run in the narrowest type that sums them exactly: float32
where every partial sum provably stays below 2**24, float64 below 2**53 (then
float arithmetic *is* integer arithmetic, in BLAS, fast), int64 below 2**62;
beyond, :class:`~.signal.Overflow` and the caller decides. Results come back
in that type, holding exact integers. Windows follow TensorFlow's padding
rule (:mod:`qextract.padding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..padding import conv_pads
from .signal import FLOAT_EXACT, INT_LIMIT, Overflow

DENSE_DEPTHWISE = 64
"""Up to this many output channels a depthwise layer runs as one product with a block-diagonal kernel."""


def pads_for(
    padding: str, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> list[tuple[int, int]]:
    return conv_pads(padding, tuple(spatial), tuple(kernel), tuple(strides), tuple(dilation))


def bound(x_max: int, w: np.ndarray, contracted: tuple[int, ...]) -> int:
    """The largest magnitude a sum of ``x * w`` over ``contracted`` axes of ``w`` can reach, with ``|x| <= x_max``."""
    return int(x_max) * column_sum(w, contracted) + 1


def column_sum(w: np.ndarray, contracted: tuple[int, ...]) -> int:
    """The largest sum of ``|w|`` over ``contracted`` axes, one output at a time (an upper bound, as an int).

    Summed in float64: exact below 2**53, and rounded up by a margin above.
    """
    if w.size == 0:
        return 0
    top = float(np.max(np.abs(w.astype(np.float64)).sum(axis=contracted)))
    return int(top) if top < 2**53 else int(top * (1 + 2**-40)) + 1


def exact_dtype(limit: int) -> type:
    """The narrowest type whose arithmetic is exact for integers below ``limit`` in magnitude."""
    if limit < 2**24:
        return np.float32
    if limit < FLOAT_EXACT:
        return np.float64
    if limit < INT_LIMIT:
        return np.int64
    raise Overflow(f"sums up to {limit:.3g} are beyond 64-bit integers")


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
    """``x`` padded with zeros, and the output's spatial shape."""
    if any(p != (0, 0) for p in pads):
        padded = np.zeros((x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], pads)), x.shape[-1]), x.dtype)
        inside = tuple(slice(a, a + n) for n, (a, _) in zip(x.shape[1:-1], pads))
        index = (slice(None), *inside)
        padded[index] = x
        x = padded
    out = tuple((n - ((k - 1) * d + 1)) // s + 1 for n, k, s, d in zip(x.shape[1:-1], kernel, strides, dilation))
    return x, out


def _columns(
    xp: np.ndarray,
    taps: Sequence[tuple[int, ...]],
    out: tuple[int, ...],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """``(N * positions, taps * C)`` columns: one gather per sample with an index computed once per geometry."""
    kernel = tuple(max(t[k] for t in taps) + 1 for k in range(len(out)))
    index = _gather_index(xp.shape[1:], kernel, tuple(strides), tuple(dilation), out)
    return np.take(xp.reshape(xp.shape[0], -1), index, axis=1).reshape(-1, len(taps) * xp.shape[-1])


@lru_cache(maxsize=64)
def _gather_index(
    padded: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    out: tuple[int, ...],
) -> np.ndarray:
    """Flat offsets, within one padded sample ``padded = (*spatial, C)``, of every (position, tap, channel)."""
    nd, c = len(kernel), padded[-1]
    step = [int(np.prod(padded[k + 1 :])) for k in range(nd)]  # elements per unit of each spatial axis
    positions = np.indices(out).reshape(nd, -1)
    taps = np.indices(kernel).reshape(nd, -1)
    base = sum(positions[k] * (strides[k] * step[k]) for k in range(nd))
    offset = sum(taps[k] * (dilation[k] * step[k]) for k in range(nd))
    index = np.asarray(base)[:, None, None] + np.asarray(offset)[None, :, None] + np.arange(c)[None, None, :]
    return index.reshape(-1).astype(np.intp)


def dense(x: np.ndarray, kernel: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``x @ kernel`` over the last axis of ``x`` (any leading axes), computed in ``dtype``."""
    lead = x.shape[:-1]
    y: np.ndarray = x.reshape(-1, x.shape[-1]).astype(dtype, copy=False) @ kernel.astype(dtype, copy=False)
    return y.reshape(*lead, kernel.shape[-1])


def conv(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dtype: type = np.float64,
) -> np.ndarray:
    """Correlation of ``x (N, *spatial, I)`` with ``kernel (*k, I, O)`` as Keras's Conv1D/Conv2D: one matrix product."""
    nd = kernel.ndim - 2
    xp, out = _geometry(x.astype(dtype, copy=False), kernel.shape[:nd], strides, dilation, pads)
    cols = _columns(xp, list(np.ndindex(*kernel.shape[:nd])), out, strides, dilation)
    y = cols @ kernel.reshape(-1, kernel.shape[-1]).astype(dtype, copy=False)
    return y.reshape(x.shape[0], *out, kernel.shape[-1])


def block_diagonal(kernel: np.ndarray) -> np.ndarray:
    """A depthwise kernel ``(*k, C, M)`` as the convolution kernel ``(*k, C, C*M)`` it equals."""
    c, m = kernel.shape[-2:]
    full = np.zeros((*kernel.shape[:-1], c * m), kernel.dtype)
    for ch in range(c):
        full[..., ch, ch * m : (ch + 1) * m] = kernel[..., ch, :]
    return full


def depthwise(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dtype: type = np.float64,
) -> np.ndarray:
    """Depthwise correlation with ``kernel (*k, C, M)``; output channel ``c*M + m``, as Keras (tap by tap)."""
    nd = kernel.ndim - 2
    c, m = kernel.shape[-2:]
    xp, out = _geometry(x.astype(dtype, copy=False), kernel.shape[:nd], strides, dilation, pads)
    k: np.ndarray = kernel.astype(dtype, copy=False)
    y = np.zeros((x.shape[0], *out, c, m), dtype)
    for offset in np.ndindex(*kernel.shape[:nd]):
        y += _shifted(xp, offset, out, strides, dilation)[..., None] * k[offset]
    return y.reshape(*y.shape[:-2], c * m)


def window_sums(
    x: np.ndarray, pool: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Sum over each pooling window of ``x`` (same dtype), and how many real (unpadded) elements it covers."""
    nd = len(pool)
    dilation = (1,) * nd
    xp, out = _geometry(x, pool, strides, dilation, pads)
    ones, _ = _geometry(np.ones((1, *x.shape[1:-1], 1), np.int64), pool, strides, dilation, pads)
    sums = np.zeros((x.shape[0], *out, x.shape[-1]), x.dtype)
    counts = np.zeros((1, *out, 1), np.int64)
    for offset in np.ndindex(*pool):
        sums += _shifted(xp, offset, out, strides, dilation)
        counts += _shifted(ones, offset, out, strides, dilation)
    return sums, counts[0]


def window_max(
    x: np.ndarray, pool: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Max over each pooling window; padding never wins (TensorFlow ignores it)."""
    nd = len(pool)
    dilation = (1,) * nd
    fill = np.iinfo(np.int64).min if x.dtype.kind == "i" else -np.inf
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    xp, out = _geometry(x, pool, strides, dilation, [(0, 0)] * nd)
    taps = iter(np.ndindex(*pool))
    y = _shifted(xp, next(taps), out, strides, dilation).copy()
    for offset in taps:
        np.maximum(y, _shifted(xp, offset, out, strides, dilation), out=y)
    return y
