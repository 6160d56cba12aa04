"""NumPy reference forward passes, independent of TensorFlow.

Each function takes weights in native Keras layout and computes in float64,
so that a float32 layer is compared against something more exact than
itself. They serve the tests (extracted values against the QKeras forward
pass) and :mod:`qextract.verify` (exported files against the Keras layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .padding import conv_pads, transpose_crop


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


Padding = str | Sequence[tuple[int, int]]


def _patches(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int], padding: Padding) -> np.ndarray:
    """(N, *out_spatial, *kernel, C) windows of a channels-last input.

    ``padding`` is a Keras name (padded the TensorFlow way) or explicit
    ``(before, after)`` pairs per spatial axis.
    """
    spatial = x.shape[1:-1]
    if isinstance(padding, str):
        pads = conv_pads(padding, tuple(spatial), tuple(kernel), tuple(strides), tuple(dilation))
    else:
        pads = [tuple(p) for p in padding]
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    win = sliding_window_view(x, span, axis=tuple(range(1, 1 + len(kernel))))
    # win: (N, *out_full, C, *span) -> take strides and dilation
    index = [slice(None)] + [slice(None, None, s) for s in strides] + [slice(None)]
    index += [slice(None, None, d) for d in dilation]
    win = win[tuple(index)]
    nd = len(kernel)
    # move C to the end: (N, *out, *kernel, C)
    return np.moveaxis(win, 1 + nd, -1)


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    x, kernel = _f64(x, kernel)
    return _add(x @ kernel, bias)


def _windowed(x: np.ndarray, kernel: np.ndarray, strides: Sequence[int], padding: Padding, dilation: Sequence[int], out: str) -> np.ndarray:
    """Correlate channels-last ``x`` with ``kernel (*k, C, last)``; ``out`` names the kernel's last axes' result."""
    x, kernel = _f64(x, kernel)
    nd = kernel.ndim - 2
    p = _patches(x, kernel.shape[:nd], strides, dilation, padding)
    letters = "hwd"[:nd]
    return np.einsum(f"n...{letters}c,{letters}c{out[-1]}->n...{out}", p, kernel, optimize=True)


def _add(y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return y if bias is None else y + np.asarray(bias, np.float64)


def conv(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    padding: Padding = "valid",
    dilation: Sequence[int] = (1, 1),
) -> np.ndarray:
    """Conv1D/Conv2D: kernel ``(*k, I, O)`` on channels-last ``x``."""
    return _add(_windowed(x, kernel, strides, padding, dilation, "o"), bias)


def depthwise(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    padding: Padding = "valid",
    dilation: Sequence[int] = (1, 1),
) -> np.ndarray:
    """Depthwise conv: kernel ``(*k, C, M)``; output channel ``c*M + m``."""
    y = _windowed(x, kernel, strides, padding, dilation, "cm")
    return _add(y.reshape(*y.shape[:-2], -1), bias)


def separable(
    x: np.ndarray,
    depthwise_kernel: np.ndarray,
    pointwise_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    padding: Padding = "valid",
    dilation: Sequence[int] = (1, 1),
) -> np.ndarray:
    y = depthwise(x, depthwise_kernel, None, strides, padding, dilation)
    pw = np.asarray(pointwise_kernel, np.float64).reshape(pointwise_kernel.shape[-2], pointwise_kernel.shape[-1])
    return _add(y @ pw, bias)


def conv_transpose(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    padding: str = "valid",
) -> np.ndarray:
    """Conv2DTranspose: kernel ``(KH, KW, O, I)``; each input pixel scatters ``kernel @ x``."""
    x, kernel = _f64(x, kernel)
    n, h, w, _ = x.shape
    kh, kw, o, _ = kernel.shape
    (fh, ch, oh), (fw, cw, ow) = (transpose_crop(h, kh, strides[0], padding), transpose_crop(w, kw, strides[1], padding))
    full = np.zeros((n, fh, fw, o))
    contrib = np.einsum("nyxi,hwoi->nyxhwo", x, kernel, optimize=True)
    for a in range(kh):
        for b in range(kw):
            full[:, a : a + (h - 1) * strides[0] + 1 : strides[0], b : b + (w - 1) * strides[1] + 1 : strides[1], :] += contrib[
                :, :, :, a, b, :
            ]
    return _add(full[:, ch : ch + oh, cw : cw + ow, :], bias)


def batchnorm(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
) -> np.ndarray:
    """Inference batch norm over the last axis."""
    x, mean, variance = _f64(x, mean, variance)
    y = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64)
    if beta is not None:
        y = y + np.asarray(beta, np.float64)
    return y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def simple_rnn(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """tanh SimpleRNN over ``x (N, T, I)``; returns the last state."""
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    h = np.zeros((x.shape[0], kernel.shape[1]))
    b = 0.0 if bias is None else np.asarray(bias, np.float64)
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + b)
    return h


def lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """LSTM with tanh / sigmoid, Keras gate order i, f, c, o; returns the last state."""
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    b = 0.0 if bias is None else np.asarray(bias, np.float64)
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + b
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h


def gru(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None, reset_after: bool = True) -> np.ndarray:
    """GRU with tanh / sigmoid, Keras gate order z, r, h; returns the last state."""
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    b = np.zeros((2, 3 * units)) if bias is None else np.asarray(bias, np.float64).reshape(-1, 3 * units)
    bi, br = (b[0], b[1]) if b.shape[0] == 2 else (b[0], np.zeros(3 * units))
    for t in range(x.shape[1]):
        xz = x[:, t] @ kernel + bi
        split = lambda a: (a[:, :units], a[:, units : 2 * units], a[:, 2 * units :])  # noqa: E731
        if reset_after:
            hz = h @ recurrent + br
            (xz_, xr, xh), (hz_, hr, hh) = split(xz), split(hz)
            z, r = _sigmoid(xz_ + hz_), _sigmoid(xr + hr)
            cand = np.tanh(xh + r * hh)
        else:
            xz_, xr, xh = split(xz)
            z = _sigmoid(xz_ + h @ recurrent[:, :units])
            r = _sigmoid(xr + h @ recurrent[:, units : 2 * units])
            cand = np.tanh(xh + (r * h) @ recurrent[:, 2 * units :])
        h = z * h + (1 - z) * cand
    return h
