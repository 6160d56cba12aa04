"""Rounding modes: how a quantizer settles a value that lies between two codes, ties above all.

Which rule a quantizer uses is part of what its output *is*: an integer
reference or a QONNX graph that rounds ties differently disagrees with the
layer on every tie. QKeras 0.9.0 uses four rules, each registry entry declares
its own (:meth:`QuantizerEntry.rounding <qextract.quantizers.entry.QuantizerEntry.rounding>`),
and the tests check each declaration against QKeras on exact ties.

:func:`shift_codes` is the integer form used to requantize accumulators:
``clip(round(acc * 2**shift))`` computed in int64, without a float in sight.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from ..errors import UnsupportedError

MAX_SHIFT = 62
"""Largest power-of-two rescaling :func:`shift_codes` performs exactly in int64 (either way)."""


class Rounding(str, Enum):
    """A rounding rule, ``str``-valued so that it serializes as its name.

    ``HALF_EVEN``: to the nearest integer, ties to the even one: ``tf.round``,
    ``np.rint`` (QONNX ``ROUND``). Every QKeras quantizer that calls
    ``_round_through`` rounds so at inference.

    ``HALF_AWAY``: ties away from zero, ``sign(x) * floor(|x| + 1/2)`` (QONNX
    ``HALF_UP``): ``quantized_bits``' ``alpha="auto"/"auto_po2"`` path, and
    ``ternary``'s ``|x| >= threshold`` with a fixed threshold.

    ``HALF_POSITIVE``: ties toward +inf, ``floor(x + 1/2)`` (no QONNX Quant
    mode; QONNX's BipolarQuant has this rule): ``binary``'s sign, which maps 0
    to +1, and ``bernoulli``'s ``x >= 0``.

    ``FLOOR``: ``floor(x)`` (QONNX ``FLOOR``): ``quantized_po2(log2_rounding="floor")``.
    """

    HALF_EVEN = "half_even"
    HALF_AWAY = "half_away"
    HALF_POSITIVE = "half_positive"
    FLOOR = "floor"

    @property
    def qonnx(self) -> str | None:
        """The QONNX ``Quant`` node's ``rounding_mode`` for this rule, None where it has none."""
        return _QONNX[self]

    def round(self, x: np.ndarray | float) -> np.ndarray:
        """``x`` rounded to integers by this rule, as floats (NumPy, any shape)."""
        x = np.asarray(x, np.float64)
        if self is Rounding.HALF_EVEN:
            return np.rint(x)
        if self is Rounding.HALF_AWAY:
            return np.sign(x) * np.floor(np.abs(x) + 0.5)
        if self is Rounding.HALF_POSITIVE:
            return np.floor(x + 0.5)
        return np.floor(x)


_QONNX = {
    Rounding.HALF_EVEN: "ROUND",
    Rounding.HALF_AWAY: "HALF_UP",
    Rounding.HALF_POSITIVE: None,
    Rounding.FLOOR: "FLOOR",
}


def scale_exponents(scale: np.ndarray | float, what: str = "scale") -> np.ndarray:
    """``e`` with ``scale == 2**e`` element by element (int64); an UnsupportedError for any other scale.

    Integer requantization rescales by shifting, which needs power-of-two scales.
    """
    s = np.asarray(scale, np.float64)
    mantissa, exponent = np.frexp(s)
    if not np.all((mantissa == 0.5) & np.isfinite(s)):
        bad = s[~((mantissa == 0.5) & np.isfinite(s))].ravel()[:3].tolist()
        raise UnsupportedError(
            f"the {what} must be a power of two to requantize by shifting, got {bad}. "
            "Fix: power-of-two scales (alpha=None, 1 or 'auto_po2' upstream)"
        )
    return (exponent - 1).astype(np.int64)


def shift_codes(acc: np.ndarray, shift: np.ndarray | int, rounding: Rounding, lo: int, hi: int) -> np.ndarray:
    """``clip(rounding(acc * 2**shift), lo, hi)`` exactly, in int64.

    ``acc`` holds integers; ``shift`` (broadcast against it) is a power of two
    per element, at most :data:`MAX_SHIFT` either way. ``[lo, hi]`` must lie
    within ``+-2**62`` so that no intermediate overflows.

    >>> shift_codes(np.array([3, 5, -3, -5]), -1, Rounding.HALF_EVEN, -8, 7).tolist()
    [2, 2, -2, -2]
    >>> shift_codes(np.array([3, 5, -3, -5]), -1, Rounding.HALF_AWAY, -8, 7).tolist()
    [2, 3, -2, -3]
    """
    if min(lo, -hi) < -(2**MAX_SHIFT):
        raise UnsupportedError(f"codes in [{lo}, {hi}] are too wide to requantize in 64-bit integers")
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"accumulator codes must be integers, got {acc.dtype}")
    acc = acc.astype(np.int64)
    shift = np.broadcast_to(np.asarray(shift, np.int64), acc.shape)
    if shift.size and int(np.abs(shift).max()) > MAX_SHIFT:
        raise UnsupportedError(f"a rescaling by 2**{int(np.abs(shift).max())} is beyond 2**{MAX_SHIFT}")
    up = np.maximum(shift, 0)
    # Left shifts: clamp first, in the unshifted domain (clipping is monotone), so nothing overflows.
    bound_lo = -((-lo) >> up) - 1
    bound_hi = (hi >> up) + 1
    left = np.clip(acc, bound_lo, bound_hi) << up
    k = np.maximum(-shift, 0)
    right = _divide(acc, k, rounding)
    return np.clip(np.where(shift >= 0, left, right), lo, hi)


def _divide(acc: np.ndarray, k: np.ndarray, rounding: Rounding) -> np.ndarray:
    """``rounding(acc / 2**k)`` for ``0 <= k <= 62``, in int64."""
    floor = acc >> k  # arithmetic shift: floor division for negative numbers too
    if rounding is Rounding.FLOOR:
        return floor
    rest = acc - (floor << k)  # in [0, 2**k)
    half = np.left_shift(np.int64(1), np.maximum(k - 1, 0))
    positive_k = k > 0
    above = positive_k & (rest > half)
    tie = positive_k & (rest == half)
    if rounding is Rounding.HALF_EVEN:
        up = tie & (floor % 2 == 1)
    elif rounding is Rounding.HALF_AWAY:
        up = tie & (acc >= 0)
    else:  # HALF_POSITIVE
        up = tie
    return floor + above + up
