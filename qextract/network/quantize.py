"""Activation quantizers on simulated tensors: the registry's integer ``requantize`` (QKeras's rounding, clipping).

Codes on a grid go to :meth:`QuantizerEntry.requantize
<qextract.quantizers.entry.QuantizerEntry.requantize>` as they are (a
non-power-of-two scale moved into the codes first). Floats (a batch norm's
output, raw input data) go through integer stand-ins that round, clip and
compare exactly as the floats themselves (:func:`~.signal.float_codes`), so
one implementation per quantizer - the registry's - decides every output.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..numformat import Binary, FixedPoint
from ..quantizers import describe, entry_for
from .signal import Overflow, Signal, exponent_scale, float_codes, po2_channels, split

FLOAT_FRACTION_BITS = 40
"""Fraction bits kept for float inputs to a quantizer: decisions on thresholds with at most 38 are exact."""


def quantize(q: Any, sig: Signal, where: str) -> Signal:
    """``sig`` through activation quantizer ``q`` as QKeras computes it; ``where`` names the layer for errors."""
    entry = entry_for(q, where)
    if entry.stochastic_note:
        raise UnsupportedError(
            f"{where}: {describe(q)} draws random values on every call, so no simulation reproduces it. "
            "Fix: a deterministic quantizer"
        )
    if sig.codes is not None:
        try:
            acc, e = po2_channels(sig.scale, sig.codes)
        except Overflow:
            sig = Signal.of_floats(sig.values)
        else:
            span = sig.limits() if acc is sig.codes else None
            return _requantize(entry, q, acc, np.asarray(e), True, where, span)
    stand_ins, exponent = float_codes(sig.values, _float_bits(entry, q, where))
    return _requantize(entry, q, stand_ins, np.asarray(exponent), sig.exact, where)


TABLE_LIMIT = 1 << 20
"""Largest accumulator range requantized through a table (one ``requantize`` call per distinct scale)."""


def _requantize(
    entry: Any,
    q: Any,
    acc: np.ndarray,
    exponent: np.ndarray,
    exact: bool,
    where: str,
    span: tuple[int, int] | None = None,
) -> Signal:
    """``entry.requantize`` of ``acc`` at scale ``2**exponent`` (() or per channel along the last axis).

    A quantizer maps each accumulator value independently, so where the
    values span a small range the registry requantizes that range once (per
    distinct scale) and the codes are looked up: the same outputs, in one pass.
    """
    try:
        enc = _by_table(entry, q, acc, exponent, span)
        if enc is None:
            enc = entry.requantize(q, acc, exponent_scale(exponent))
    except NotImplementedError as e:
        raise UnsupportedError(
            f"{where}: activation quantizer {describe(q)} cannot be simulated exactly ({e}). "
            "Fix: a quantizer with an integer form (quantized_bits with a fixed alpha, quantized_relu, binary, ternary)"
        ) from None
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: activation quantizer {describe(q)}: {e}") from None
    return Signal(np.asarray(enc.codes, np.int64), np.asarray(enc.scale, np.float64), None, enc.format, exact)


def _by_table(entry: Any, q: Any, acc: np.ndarray, exponent: np.ndarray, span: tuple[int, int] | None) -> Any:
    """The requantization by table look-up, or None where the range is too wide to pay off."""
    if acc.size < 4096:
        return None
    lo, hi = span if span is not None else (int(acc.min()), int(acc.max()))
    width = hi - lo + 1
    if width > min(TABLE_LIMIT, acc.size):
        return None
    levels = np.arange(lo, hi + 1, dtype=np.int64)
    distinct, which = np.unique(exponent, return_inverse=True)
    tables = [entry.requantize(q, levels, exponent_scale(u)) for u in distinct]
    if any(np.ndim(t.scale) for t in tables):
        return None  # a per-channel output scale (an array alpha): no single table
    first = tables[0]
    flat = np.concatenate([np.asarray(t.codes, np.int64) for t in tables])
    offset = which.reshape(exponent.shape) * width - lo  # channel c reads table which[c]
    return replace(first, codes=np.take(flat, acc + offset))


def _float_bits(entry: Any, q: Any, where: str) -> int:
    """How many fraction bits float inputs to ``q`` keep (see :func:`~.signal.float_codes`).

    A fixed-point quantizer rounds ``x * 2**f`` and clips at multiples of
    ``2**-f`` (``f`` its fraction bits): ``f`` bits are enough. Binary only
    looks at the sign. Anything else (ternary's float threshold) keeps
    :data:`FLOAT_FRACTION_BITS`.
    """
    fmt = entry.number_format(q)
    if isinstance(fmt, FixedPoint):
        return fmt.fractional_bits
    if isinstance(fmt, Binary):
        return 0
    k = FLOAT_FRACTION_BITS
    bounds = entry.bounds(q)
    if bounds is not None and any(b is not None for b in bounds):
        top = max(abs(b) for b in bounds if b is not None)
        if top >= 2.0**17:  # keep |x| up to twice the range unclamped below 2**58
            k = min(k, 56 - math.ceil(math.log2(top)))
    return k


# ------------------------------------------------------------------------------------- ap_fixed


_ROUNDING = ("AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_INF", "AP_RND_MIN_INF", "AP_RND_CONV")
_OVERFLOW = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


def ap_round(y: np.ndarray, mode: str) -> np.ndarray:
    """``y`` rounded to integers by a Vivado HLS quantization mode (float64 in, float64 out)."""
    if mode == "AP_TRN":
        return np.floor(y)
    if mode == "AP_TRN_ZERO":
        return np.trunc(y)
    down, frac = np.floor(y), y - np.floor(y)
    tie = frac == 0.5
    near = np.where(frac > 0.5, down + 1, down)
    if mode == "AP_RND":  # ties to +inf
        return np.where(tie, down + 1, near)
    if mode == "AP_RND_MIN_INF":
        return np.where(tie, down, near)
    if mode == "AP_RND_ZERO":
        return np.where(tie, np.where(y < 0, down + 1, down), near)
    if mode == "AP_RND_INF":
        return np.where(tie, np.where(y < 0, down, down + 1), near)
    return np.rint(y)  # AP_RND_CONV: ties to even


def ap_overflow(c: np.ndarray, lo: int, hi: int, bits: int, signed: bool, mode: str) -> np.ndarray:
    """Integer codes ``c`` (float64) brought into ``[lo, hi]`` by a Vivado HLS overflow mode."""
    if c.size == 0 or (c.min() >= lo and c.max() <= hi):
        return c
    if mode == "AP_SAT":
        return np.clip(c, lo, hi)
    if mode == "AP_SAT_ZERO":
        return np.where((c < lo) | (c > hi), 0, c)
    if mode == "AP_SAT_SYM":
        return np.clip(c, -hi if signed else lo, hi)
    wrapped = np.mod(c, 2.0**bits)  # AP_WRAP: keep the low bits, as the hardware does
    return np.where(signed & (wrapped > hi), wrapped - 2.0**bits, wrapped)


def ap_quantize(x: np.ndarray, bits: int, integer: int, signed: bool, rounding: str, overflow: str) -> Signal:
    """Data as an ``ap_fixed<bits, integer, rounding, overflow>`` (``ap_ufixed`` unsigned) holds it."""
    fraction = bits - integer
    fmt = FixedPoint(bits=bits, integer=integer - int(signed), is_signed=signed)
    y = np.ldexp(np.asarray(x, np.float64), fraction)
    c = ap_overflow(ap_round(y, rounding), fmt.code_min, fmt.code_max, bits, signed, overflow)
    return Signal(c.astype(np.int64), np.asarray(2.0**-fraction), None, fmt, True)


def exponent_of(scale: np.ndarray | float) -> int | None:
    """``e`` for a per-tensor power-of-two ``scale == 2**e``, else None."""
    m, e = split(scale)
    return int(e) if m.ndim == 0 and int(m) == 1 else None
