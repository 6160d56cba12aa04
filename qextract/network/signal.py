"""A tensor between two layers: integer codes on a grid, or floats; and the exact arithmetic of grids.

Every float is a dyadic number ``m * 2**e`` (``m`` an odd integer), so any
scale a quantizer produces - a power of two, a float ``alpha``, a per-channel
``auto`` scale - can be moved into the codes: ``codes * m`` at the scale
``2**e``. That is how the simulation keeps every layer on one power-of-two
grid in int64 (:func:`uniform`), aligns a bias to an accumulator, and hands the
registry's ``requantize`` the power-of-two scale it needs. Where the codes
would outgrow int64, the caller falls back to floats and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..numformat import NumberFormat

INT_LIMIT = 2**62
"""Largest magnitude an int64 intermediate may reach (headroom for one addition)."""

FLOAT_EXACT = 2**53
"""Integers float64 holds exactly: a float64 dot product of integers is exact while every partial sum stays below."""


class Overflow(ArithmeticError):
    """Integer codes would outgrow int64; the caller computes in floats instead."""


@dataclass(frozen=True, eq=False)
class Signal:
    """Codes at ``scale`` (float64, () or (C,) along the last axis), or float ``values`` (codes None).

    ``format`` is the codes' number format where a quantizer produced them.
    ``exact`` is False where the layer that produced it computed in floating
    point (from inputs on no grid), even if a quantizer put the result on a grid.
    """

    codes: np.ndarray | None
    scale: np.ndarray = field(default_factory=lambda: np.ones(()))
    floats: np.ndarray | None = None
    format: NumberFormat | None = None
    exact: bool = True
    span: tuple[int, int] | None = None  # known lowest and highest code (an accumulator's), else None

    def limits(self) -> tuple[int, int]:
        """Lowest and highest code: known (``span``, the format's range) or computed (two passes)."""
        assert self.codes is not None
        if self.span is not None:
            return self.span
        fmt = self.format
        if fmt is not None and fmt.quantized and fmt.bits <= 62 and not fmt.has_signs:
            return int(fmt.code_min), int(fmt.code_max)
        if self.codes.size == 0:
            return 0, 0
        return int(self.codes.min()), int(self.codes.max())

    def code_bound(self) -> int:
        """The largest code magnitude (known, or computed)."""
        lo, hi = self.limits()
        return max(abs(lo), abs(hi))

    @property
    def values(self) -> np.ndarray:
        if self.codes is None:
            assert self.floats is not None
            return self.floats
        return self.codes * self.scale

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.codes if self.codes is not None else self.floats).shape)  # type: ignore[union-attr]

    @classmethod
    def of_floats(cls, values: np.ndarray) -> Signal:
        return cls(None, np.ones(()), np.asarray(values, np.float64), None, False)


def split(scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``(m, e)`` with ``scale == m * 2**e`` element by element, ``m`` an odd int64 (0 for a zero scale).

    >>> [a.tolist() for a in split(np.array([0.25, 0.75, 3.0]))]
    [[1, 3, 3], [-2, -2, 0]]
    """
    s = np.asarray(scale, np.float64)
    if not np.all(np.isfinite(s)):
        raise Overflow(f"scale {s.ravel()[:3].tolist()} is not finite")
    mantissa, exponent = np.frexp(s)
    m = np.ldexp(mantissa, 53).astype(np.int64)  # exact: a float64 significand has 53 bits
    e = exponent.astype(np.int64) - 53
    if m.size:
        zeros = np.maximum(_trailing_zeros(m), 0)
        m, e = m >> zeros, e + zeros
    return m, np.where(m == 0, 0, e)


def _trailing_zeros(m: np.ndarray) -> np.ndarray:
    a = np.abs(m)
    low = a & -a  # lowest set bit
    return np.where(a == 0, 0, np.log2(np.maximum(low, 1)).astype(np.int64))


def is_po2(scale: np.ndarray | float) -> bool:
    """True where every element of ``scale`` is a power of two."""
    m, _ = split(scale)
    return bool(np.all(m == 1))


def checked_int(a: np.ndarray, bound: float) -> np.ndarray:
    """``a`` as int64 when ``bound`` (its magnitude bound) stays within :data:`INT_LIMIT`, else :class:`Overflow`."""
    if bound >= INT_LIMIT:
        raise Overflow(f"codes up to {bound:.3g} do not fit 64-bit integers")
    return a.astype(np.int64, copy=False)


def max_abs(a: np.ndarray) -> int:
    """The largest magnitude in an integer array (0 for an empty one), as a Python int."""
    if a.size == 0:
        return 0
    return max(abs(int(a.max())), abs(int(a.min())))


def channel_range(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per last-axis channel minimum and maximum of ``a`` (reduced over rows of whole samples: long inner loops)."""
    if a.size == 0:
        return np.zeros(a.shape[-1], a.dtype), np.zeros(a.shape[-1], a.dtype)
    rows = a.reshape(a.shape[0], -1)
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    c = a.shape[-1]
    return lo.reshape(-1, c).min(axis=0), hi.reshape(-1, c).max(axis=0)


def uniform(sig: Signal) -> tuple[np.ndarray, int]:
    """The signal's codes at one power-of-two scale ``2**E``: ``(codes, E)``.

    A per-channel or non-power-of-two scale is moved into the codes
    (``codes * m * 2**(e - E)``); :class:`Overflow` where they outgrow int64.
    """
    assert sig.codes is not None
    m, e = split(sig.scale)
    if m.ndim == 0 and int(m) == 1:
        return sig.codes, int(e)
    if np.all(m == 1) and np.all(e == e.flat[0]):
        return sig.codes, int(e.flat[0])
    live = m != 0
    low = int(e[live].min()) if np.any(live) else 0
    factor = m * np.ldexp(1.0, np.where(live, e - low, 0)).astype(np.float64)
    biggest = float(np.max(np.abs(factor))) * max_abs(sig.codes)
    if biggest >= INT_LIMIT or np.any(np.abs(factor) >= INT_LIMIT):
        raise Overflow(f"aligning per-channel scales gives codes up to {biggest:.3g}")
    return sig.codes * factor.astype(np.int64), low


def po2_channels(scale: np.ndarray | float, codes: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes at a power-of-two scale per channel: ``(codes * m, e)`` for ``scale = m * 2**e``.

    ``scale`` is () or runs along ``axis`` of ``codes``.
    """
    m, e = split(scale)
    if np.all(m == 1):
        return codes, e
    if m.ndim == 0:
        return _times(codes, m), e
    shape = [1] * codes.ndim
    shape[axis] = -1
    return _times(codes, m.reshape(shape)), e


def _times(codes: np.ndarray, m: np.ndarray) -> np.ndarray:
    if max_abs(codes) * max_abs(np.asarray(m)) >= INT_LIMIT:
        raise Overflow("scale mantissas push the codes beyond 64 bits")
    return codes.astype(np.int64) * m


def exponent_scale(e: np.ndarray | int) -> np.ndarray:
    """``2**e`` as float64 (e int or array)."""
    return np.ldexp(1.0, np.asarray(e, np.int64))


def collapse(scale: np.ndarray) -> np.ndarray:
    """A per-channel scale whose channels all agree, as a per-tensor one."""
    s = np.asarray(scale, np.float64)
    if s.ndim and s.size and np.all(s == s.flat[0]):
        return np.asarray(s.flat[0])
    return s


def float_codes(x: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Integer stand-ins for floats ``x`` at scale ``2**-(k+2)``: rounding ``x * 2**(k-j)``, ``j >= 0``, sees no change.

    ``y = x * 2**k`` (exact in float64) becomes ``4 * floor(y) + c`` with ``c``
    0 for an integer, 1 below a half, 2 for a half, 3 above: rounding by any
    rule, clipping and comparing with a threshold that is a multiple of
    ``2**-k`` then decide exactly as on ``x`` itself, since no power-of-two
    boundary they use lies between ``x`` and its stand-in. Magnitudes are
    clamped to ``2**58`` (saturated anyway by any quantizer the caller admits).
    Returns the codes and the exponent of their scale, ``-(k+2)``.
    """
    twice = np.clip(np.ldexp(np.asarray(x, np.float64), k + 1), -(2.0**58), 2.0**58)
    half_steps = np.floor(twice)  # 2*floor(y) + (frac >= 1/2): the half is kept exactly...
    codes = half_steps.astype(np.int64) * 2
    codes += half_steps != twice  # ...and anything left over as one sticky bit
    return codes, -(k + 2)
