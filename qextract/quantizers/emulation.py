"""QKeras's float32 arithmetic in NumPy, bit for bit, and the places where no emulation can be sure.

The NumPy forms of the quantizers (each entry's ``numpy_call``) compute what
QKeras computes in the order QKeras computes it, in float32. Most of it is
exact IEEE arithmetic, which NumPy and TensorFlow do alike: products,
quotients, sums of two numbers, ``floor``, ``rint``, comparisons. Three things
are not, and each is *detected* here rather than guessed:

- **Sums of many numbers** (``K.mean`` in the ``alpha="auto_po2"`` scale
  search): TensorFlow's summation order is its own, so the float32 mean is
  known only to within ``(n + 1) * 2**-24`` relative. The search only rounds
  ``log2`` of a quotient of means, so the result is certain unless that
  ``log2`` lies within the uncertainty of a rounding tie.
- **Transcendental functions** (``log``): TensorFlow's vectorised kernels are
  accurate to a few units in the last place (measured: under 3), not
  correctly rounded. Rounding ``log(x) / log(2)`` is certain unless it lies
  within :data:`LOG_ULPS` units of a tie.
- **Subnormal numbers**: TensorFlow flushes them to zero on CPU; NumPy does not.

Where one of these could change a result, :class:`~qextract.errors.NeedsQKeras`
is raised, naming why; the engine then asks QKeras, or refuses naming the layer
and tensor. ``alpha="auto"`` scales (a float32 mean used as it is, not rounded)
are computed only where no sum is involved (one element per channel).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NeedsQKeras
from .entry import check_qnoise
from .registry import entry_for

F32 = np.float32
U = 2.0**-24
"""Unit roundoff of float32."""
EPS = F32(1e-7)
"""``K.epsilon()``, as the float32 constant TensorFlow adds."""
LN2 = F32(np.log(2.0))
"""``np.log(2.0)`` as QKeras divides a float32 tensor by it: rounded to float32."""
LOG_ULPS = 16
"""Margin for TensorFlow's float32 ``log``: units in the last place of its result (measured error < 3)."""
TINY = F32(np.finfo(np.float32).tiny)


def numpy_apply(q: Any, raw: np.ndarray, where: str = "") -> tuple[np.ndarray, Any]:
    """Run ``q``'s NumPy form on ``raw`` as QKeras would run ``q``, on a copy of ``q`` (which gets ``.scale``).

    The counterpart of :func:`qextract.quantizers.apply` for quantizers built from a
    configuration (:mod:`.standin`). Raises :class:`NeedsQKeras` where the result is not certain.
    """
    entry = entry_for(q, where)
    qc = copy.copy(q)
    check_qnoise(qc)
    x = np.asarray(raw, F32)
    no_subnormals(x, "raw weights")
    out = entry.numpy_call(qc, x)
    return np.asarray(out, F32), qc


def no_subnormals(a: Any, what: str) -> None:
    """Refuse subnormal float32 numbers, which TensorFlow flushes to zero on CPU and NumPy keeps."""
    a = np.asarray(a)
    if a.dtype == np.float32 and np.any((a != 0) & (np.abs(a) < TINY)):
        raise NeedsQKeras(f"{what} hold subnormal numbers, which TensorFlow flushes to zero on CPU and NumPy does not")


def ste(x: np.ndarray, xq: np.ndarray, q: Any) -> np.ndarray:
    """QKeras's output ``x + stop_gradient(qnoise_factor * (-x + xq))`` (or its ``use_ste=False`` form) in float32."""
    x, xq = np.asarray(x, F32), np.asarray(xq, F32)
    qnf = F32(getattr(q, "qnoise_factor", 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        if getattr(q, "use_ste", True):
            return x + qnf * (-x + xq)
        return (F32(1.0) - qnf) * x + qnf * xq


def tanh_ste(x: np.ndarray, xq: np.ndarray, q: Any) -> np.ndarray:
    """QKeras's ``x = tanh(x)`` then ``x + (-x + xq)`` (binary and ternary with alpha None).

    TensorFlow's float32 ``tanh`` is within a few units in the last place of the
    true value (measured: 5), so the result is taken only where every float32
    within :data:`LOG_ULPS` of ``tanh(x)`` gives the same output.
    """
    t = np.tanh(np.asarray(x, np.float64)).astype(F32)
    out = ste(t, xq, q)
    for direction in (F32(-np.inf), F32(np.inf)):
        c = t
        for _ in range(LOG_ULPS):
            c = np.clip(np.nextafter(c, direction), F32(-1.0), F32(1.0))
            if np.any(ste(c, xq, q) != out):
                raise NeedsQKeras(
                    "tanh(x) passed through the straight-through form lands on a float32 rounding that "
                    "TensorFlow's tanh kernel (a CPU-specific approximation) decides"
                )
    return out


def sign(x: np.ndarray) -> np.ndarray:
    """``tf.sign``: -1, 0 or +1 in float32 (+0 for both zeros)."""
    return np.where(x > 0, F32(1), np.where(x < 0, F32(-1), F32(0))).astype(F32)


def power_of_two(k: np.ndarray) -> np.ndarray:
    """``K.pow(2.0, k)`` for integral float ``k``: exact, but TensorFlow flushes results below 2**-126 to zero."""
    k = np.asarray(k)
    if np.any(k < -126) or np.any(k > 127):
        raise NeedsQKeras("a power-of-two scale outside float32's normal range (TensorFlow flushes or overflows it)")
    return np.ldexp(F32(1.0), k.astype(np.int32)).astype(F32)


def int_power_of_two(e: Any, what: str) -> F32:
    """``K.cast_to_floatx(K.pow(2, e))`` with an int32 ``e``: QKeras fails below 0 and wraps from 31 on."""
    e = int(e)
    if not 0 <= e <= 30:
        raise NeedsQKeras(f"{what}={e}: QKeras computes 2**{what} in int32, which fails below 0 and wraps from 31 on")
    return F32(2.0**e)


def log2_rounded(arg: np.ndarray, rel: np.ndarray | float, floor: bool = False) -> np.ndarray:
    """``tf.round`` (or ``tf.floor``) of ``K.log(a) / np.log(2.0)`` in float32, with ``a`` known to ``arg``.

    ``arg`` is the argument as float64, exact or within relative ``rel`` of what
    TensorFlow computes in float32 (its summation order unknown). Where the
    float32 quotient could fall on either side of the rounding boundary (a
    half-integer, or an integer for ``floor``), :class:`NeedsQKeras` is raised.
    """
    a = np.asarray(arg, np.float64)
    if np.any(a <= 0) or not np.all(np.isfinite(a)):
        raise NeedsQKeras("a logarithm of a value that is not positive and finite")
    log = np.log(a)
    t = log / np.float64(LN2)
    ulp_log = np.spacing(np.abs(log).astype(F32)).astype(np.float64)
    ulp_t = np.spacing(np.abs(t).astype(F32)).astype(np.float64)
    margin = (np.asarray(rel, np.float64) * 1.001 + LOG_ULPS * ulp_log) / np.float64(LN2) + ulp_t + 2.0**-40
    if floor:
        boundary = np.rint(t)
        result = np.floor(t)
    else:
        boundary = np.floor(t) + 0.5
        result = np.rint(t)
    close = np.abs(t - boundary) <= margin
    if np.any(close):
        i = np.unravel_index(int(np.argmax(close)), close.shape) if close.ndim else ()
        raise NeedsQKeras(
            f"log2 of a scale or value is {float(np.asarray(t)[i])!r}, within {float(np.asarray(margin)[i]):.2g} of "
            "the rounding boundary, where TensorFlow's float32 evaluation (its summation order, its log kernel) "
            "decides the side"
        )
    return result.astype(F32)


def scaling_axes(scale_axis: Any, ndim: int) -> tuple[int, ...]:
    """QKeras's ``_get_scaling_axis``: every axis but the channel axis (the last under channels_last)."""
    if scale_axis is not None:
        return tuple(i for i in range(ndim) if i != int(scale_axis))
    require_channels_last()
    return tuple(range(ndim - 1))


def require_channels_last() -> None:
    """QKeras picks the per-channel axis from Keras's ``image_data_format``; only the default is reproduced."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        fmt = json.loads((home / "keras.json").read_text()).get("image_data_format", "channels_last")
    except (OSError, ValueError, AttributeError):
        return
    if fmt != "channels_last":
        raise NeedsQKeras(f"Keras's image_data_format is {fmt!r} ({home / 'keras.json'}): per-channel axes differ")


def po2_scale(x: np.ndarray, q: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    """QKeras's ``_get_scale("auto_po2", x, q)``: ``2**round(log2(mean(x q) / (mean(q q) + eps) + eps))``.

    ``axes`` are the axes averaged over (None: no average, element by element, as
    QKeras does for 1-D tensors). ``x q`` and ``q q`` are never negative here (``q``
    has the sign of ``x``), which bounds any summation order's error.
    """
    xq, qq = (x * q).astype(F32), (q * q).astype(F32)
    no_subnormals(xq, "products of the weights and their codes")
    if axes is None:  # element by element: every operation is one exact IEEE float32 step
        with np.errstate(divide="ignore", invalid="ignore"):
            arg32 = xq / (qq + EPS) + EPS
        no_subnormals(arg32, "a scale")
        return power_of_two(log2_rounded(arg32.astype(np.float64), 0.0))
    if np.any(xq < 0):
        raise NeedsQKeras("a mean of products with mixed signs")
    n = int(np.prod([x.shape[a] for a in axes]))
    mean_xq = xq.astype(np.float64).sum(axis=axes, keepdims=True) / n
    sum_qq = qq.astype(np.float64).sum(axis=axes, keepdims=True)
    mean_qq = sum_qq / n
    rel_sum = (n + 2) * U / (1 - (n + 2) * U)  # any order of n - 1 float32 additions, then the division by n
    integral = np.all(qq == np.rint(qq)) and float(sum_qq.max(initial=0.0)) <= 2.0**24
    rel_qq = 2 * U if integral else rel_sum  # integers summing to at most 2**24: every order is exact
    arg = mean_xq / (mean_qq + np.float64(EPS)) + np.float64(EPS)
    return power_of_two(log2_rounded(arg, rel_sum + rel_qq + 4 * U))


def channel_max(x: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    """``K.max(|x|, axis, keepdims=True)`` (None: over everything, kept as shape (1,)*ndim); order-free."""
    a = np.abs(x)
    return a.max(axis=axes, keepdims=True) if axes is not None else a.max(keepdims=True)
