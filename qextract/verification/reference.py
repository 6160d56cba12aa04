"""NumPy reference forward passes, independent of TensorFlow.

Each function takes weights in native Keras layout and computes in float64,
so that a float32 layer is compared against something more exact than
itself. They serve the tests (extracted values against the QKeras forward
pass) and :mod:`qextract.verification.verifier` (exported files against the Keras layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..padding import conv_pads, transpose_crop


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


Padding = str | Sequence[tuple[int, int]]


def _patches(
    x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int], padding: Padding
) -> np.ndarray:
    """(N, *out_spatial, *kernel, C) windows of a channels-last input.

    ``padding`` is a Keras name (padded the TensorFlow way) or explicit
    ``(before, after)`` pairs per spatial axis.
    """
    spatial = x.shape[1:-1]
    pads: Sequence[tuple[int, ...]]
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


def _windowed(
    x: np.ndarray, kernel: np.ndarray, strides: Sequence[int], padding: Padding, dilation: Sequence[int], out: str
) -> np.ndarray:
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
    groups: int = 1,
) -> np.ndarray:
    """Conv1D/Conv2D: kernel ``(*k, I, O)`` on channels-last ``x``.

    With ``groups`` g, ``x`` has ``g*I`` channels and output channel group
    ``j`` (channels ``j*O/g ... (j+1)*O/g - 1``) sees only input channel group ``j``.
    """
    if groups == 1:
        return _add(_windowed(x, kernel, strides, padding, dilation, "o"), bias)
    x, kernel = _f64(x, kernel)
    nd, (i, o) = kernel.ndim - 2, kernel.shape[-2:]
    if x.shape[-1] != groups * i or o % groups:
        raise ValueError(
            f"groups={groups}: input channels {x.shape[-1]} and kernel {kernel.shape} do not split into groups"
        )
    p = _patches(x, kernel.shape[:nd], strides, dilation, padding)
    p = p.reshape(*p.shape[:-1], groups, i)
    k = kernel.reshape(*kernel.shape[:nd], i, groups, o // groups)
    letters = "hwd"[:nd]
    y = np.einsum(f"n...{letters}gi,{letters}igo->n...go", p, k, optimize=True)
    return _add(y.reshape(*y.shape[:-2], o), bias)


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
    (fh, ch, oh), (fw, cw, ow) = (
        transpose_crop(h, kh, strides[0], padding),
        transpose_crop(w, kw, strides[1], padding),
    )
    full = np.zeros((n, fh, fw, o))
    contrib = np.einsum("nyxi,hwoi->nyxhwo", x, kernel, optimize=True)
    for a in range(kh):
        for b in range(kw):
            full[
                :, a : a + (h - 1) * strides[0] + 1 : strides[0], b : b + (w - 1) * strides[1] + 1 : strides[1], :
            ] += contrib[:, :, :, a, b, :]
    return _add(full[:, ch : ch + oh, cw : cw + ow, :], bias)


def batchnorm(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
    axis: int = -1,
) -> np.ndarray:
    """Inference batch norm over ``axis`` (the last one unless the layer says otherwise)."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    mean, variance = _f64(mean, variance)
    y = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64)
    if beta is not None:
        y = y + np.asarray(beta, np.float64)
    return np.moveaxis(y, -1, axis)


def channels_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``: every function here computes channels-last."""
    return np.moveaxis(x, 1, -1)


def channels_first(y: np.ndarray) -> np.ndarray:
    """The inverse of :func:`channels_last`."""
    return np.moveaxis(y, -1, 1)


def average_pool(
    x: np.ndarray,
    multiplier: float,
    pool: Sequence[int],
    strides: Sequence[int],
    padding: Padding = "valid",
) -> np.ndarray:
    """QAveragePooling: the window sum times the quantized ``1/area`` multiplier, channels-last.

    QKeras computes Keras's average (which under "same" divides a border
    window by the number of *real* pixels it covers), multiplies by the full
    ``area`` and then by the multiplier; so a border window gives
    ``sum / count * area * multiplier``, which is the window sum only where
    the window lies inside the input.
    """
    x = np.asarray(x, np.float64)
    ones = np.ones((1, *x.shape[1:-1], 1))
    dilation = [1] * len(pool)
    sums = _patches(x, pool, strides, dilation, padding).sum(axis=tuple(range(-1 - len(pool), -1)))
    counts = _patches(ones, pool, strides, dilation, padding).sum(axis=tuple(range(-1 - len(pool), -1)))
    area = float(np.prod(pool))
    return sums / counts * area * float(multiplier)


def global_average_pool(x: np.ndarray, multiplier: float, keepdims: bool = False) -> np.ndarray:
    """QGlobalAveragePooling: the sum over every spatial position times the multiplier, channels-last."""
    x = np.asarray(x, np.float64)
    return x.sum(axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims) * float(multiplier)


# --- recurrent layers ----------------------------------------------------------------------

Fn = Callable[[np.ndarray], np.ndarray]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


_sigmoid = sigmoid  # the name the zoo's references used


def _identity(z: np.ndarray) -> np.ndarray:
    return z


def _run(
    x: np.ndarray,
    step: Callable[[np.ndarray, tuple[np.ndarray, ...]], tuple[np.ndarray, ...]],
    states: tuple[np.ndarray, ...],
    return_sequences: bool,
    go_backwards: bool,
) -> np.ndarray:
    """Run ``step`` over the time axis of ``x (N, T, I)`` as Keras's RNN does.

    ``go_backwards`` reads the sequence from its end; the outputs then stay in
    that (reversed) order, as Keras returns them.
    """
    seq = x[:, ::-1] if go_backwards else x
    outputs = []
    for t in range(seq.shape[1]):
        states = step(seq[:, t], states)
        outputs.append(states[0])
    if return_sequences:
        return np.stack(outputs, axis=1)
    return outputs[-1] if outputs else states[0]


def simple_rnn(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray | None,
    *,
    activation: Fn = np.tanh,
    state: Fn = _identity,
    return_sequences: bool = False,
    go_backwards: bool = False,
) -> np.ndarray:
    """SimpleRNN over ``x (N, T, I)``: ``h = act(x k + b + state(h) r)``; the last state unless ``return_sequences``.

    ``state`` is QKeras's state quantizer, applied to the previous output before it is used.
    """
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    b = 0.0 if bias is None else np.asarray(bias, np.float64)

    def step(xt: np.ndarray, s: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return (activation(xt @ kernel + b + state(s[0]) @ recurrent),)

    h0 = np.zeros((x.shape[0], recurrent.shape[0]))
    return _run(x, step, (h0,), return_sequences, go_backwards)


def lstm(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray | None,
    *,
    activation: Fn = np.tanh,
    recurrent_activation: Fn = sigmoid,
    state: Fn = _identity,
    return_sequences: bool = False,
    go_backwards: bool = False,
) -> np.ndarray:
    """LSTM, Keras gate order i, f, c, o; QKeras's ``state`` quantizer applies to both h and c before use."""
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    units = recurrent.shape[0]
    b = 0.0 if bias is None else np.asarray(bias, np.float64)

    def step(xt: np.ndarray, s: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        h, c = state(s[0]), state(s[1])
        z = xt @ kernel + h @ recurrent + b
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
        return recurrent_activation(o) * activation(c), c

    zeros = np.zeros((x.shape[0], units))
    return _run(x, step, (zeros, zeros), return_sequences, go_backwards)


def gru(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray | None,
    reset_after: bool = True,
    *,
    activation: Fn = np.tanh,
    recurrent_activation: Fn = sigmoid,
    state: Fn = _identity,
    return_sequences: bool = False,
    go_backwards: bool = False,
) -> np.ndarray:
    """GRU, Keras gate order z, r, h; bias ``(2, 3u)`` (input, recurrent) when ``reset_after``, else ``(3u,)``."""
    x, kernel, recurrent = _f64(x, kernel, recurrent)
    units = recurrent.shape[0]
    b = np.zeros((2, 3 * units)) if bias is None else np.asarray(bias, np.float64).reshape(-1, 3 * units)
    bi, br = (b[0], b[1]) if b.shape[0] == 2 else (b[0], np.zeros(3 * units))

    def split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return a[:, :units], a[:, units : 2 * units], a[:, 2 * units :]

    def step(xt: np.ndarray, s: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        h = state(s[0])
        xz, xr, xh = split(xt @ kernel + bi)
        if reset_after:
            hz, hr, hh = split(h @ recurrent + br)
            z, r = recurrent_activation(xz + hz), recurrent_activation(xr + hr)
            cand = activation(xh + r * hh)
        else:
            z = recurrent_activation(xz + h @ recurrent[:, :units])
            r = recurrent_activation(xr + h @ recurrent[:, units : 2 * units])
            cand = activation(xh + (r * h) @ recurrent[:, 2 * units :])
        return (z * h + (1 - z) * cand,)

    h0 = np.zeros((x.shape[0], units))
    return _run(x, step, (h0,), return_sequences, go_backwards)


def bidirectional(
    forward: np.ndarray, backward: np.ndarray, merge_mode: str | None, return_sequences: bool
) -> np.ndarray:
    """Keras's Bidirectional merge: the backward layer's sequence is turned back into time order first."""
    if return_sequences:
        backward = backward[:, ::-1]
    if merge_mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / 2
    if merge_mode is None:  # two outputs: compared as one, side by side
        return np.concatenate([forward, backward], axis=-1)
    raise ValueError(f"unknown Bidirectional merge_mode {merge_mode!r}")
