"""One tensor quantized and proven: its layer's quantizer applied, codes and scale checked exact.

The codes are checked before they are returned: every one an exact integer in its format's range
(range-checked as int64 before any cast), no two codes within rounding distance of one value, and
``codes x scale`` reproducing the quantizer's output in float32 (or differing only where QKeras's
straight-through form rounds a clipped value, which is counted and warned about).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .._keras import generation
from ..errors import ExactnessError, QExtractError, QExtractWarning, UnsupportedError
from ..layers import TensorSource
from ..numformat import FixedPoint
from ..quantizers import apply, describe, entry_for, ste_explains
from ..tensor import QuantizedTensor, along, decode

__all__ = ["quantize_tensor"]


def quantize_tensor(
    source: TensorSource,
    layer: str,
    layer_class: str,
    run: Callable[[Any, np.ndarray, str], tuple[np.ndarray, Any]] = apply,
) -> QuantizedTensor:
    """Apply ``source.quantizer`` to ``source.raw`` and derive exact codes and scale.

    ``run`` computes the quantizer's output: QKeras's own call (:func:`~qextract.quantizers.apply`),
    or its NumPy form for a quantizer built from a file (:func:`~qextract.quantizers.emulation.numpy_apply`);
    the proof that follows is the same.
    """
    where = f"layer '{layer}' ({layer_class}), tensor '{source.name}' {tuple(source.raw.shape)}"
    raw = source.raw
    if not np.all(np.isfinite(raw)):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        raise ExactnessError(
            f"{where}: {bad} raw weight(s) are NaN or Inf. Fix: retrain or repair the weights; "
            "nothing meaningful can be exported from them."
        )
    if source.quantizer is None:
        return QuantizedTensor(
            layer, layer_class, source.name, raw, raw, notes=("unquantized",), variables=_names(source)
        )
    q = source.quantizer
    entry = entry_for(q, where)
    try:
        out, used = run(q, raw, where)
        enc = entry.encode(used, out)
    except QExtractError as e:
        raise type(e)(f"{where}: {e}") from None
    notes = (entry.stochastic_note,) if entry.stochastic_note else ()
    return _checked(where, source, layer, layer_class, q, out, enc, notes)


def _checked(
    where: str,
    source: TensorSource,
    layer: str,
    layer_class: str,
    q: Any,
    out: np.ndarray,
    enc: Any,
    notes: tuple[str, ...],
) -> QuantizedTensor:
    """The tensor, once its codes are proven: exact integers in range, unique, reproducing ``out``.

    Every test runs on exact integers (int64) or exact quotients (float64), so
    that no rounding of a wide code hides an overflow: the range is checked
    before the codes are cast to their dtype, never after.
    """
    fmt = enc.format
    if not np.all(np.isfinite(out)):
        raise ExactnessError(_not_finite_message(where, q))
    problem = fmt.width_problem()
    if problem is not None:
        raise UnsupportedError(
            f"{where}: {describe(q)} cannot be held exactly: {problem}. Fix: use fewer bits "
            "(codes of at most 64 bits, 63 without a sign)."
        )
    scale = along(enc.scale, enc.scale_axis, out.ndim)
    signs = enc.signs
    codes = _small_float_codes(enc.codes, fmt)
    if codes is not None:  # every code an integer in range, proven in float32 (the common case)
        outside = np.zeros(codes.shape, bool)
    else:
        codes, off = _exact_integers(enc.codes)
        outside = off | (codes < fmt.code_min) | (codes > fmt.code_max)
    if outside.any() and isinstance(fmt, FixedPoint):
        codes, outside = _clipped_by_ste(fmt, codes, outside & ~off, outside, scale, source.raw, out)
    if outside.any():
        raise ExactnessError(_outside_message(where, q, fmt, enc.codes, outside, out))
    grid = decode(fmt, codes, scale, signs)
    ambiguous = _ambiguous(fmt, codes, scale, grid)
    if ambiguous.any():
        raise ExactnessError(_ambiguous_message(where, q, codes, ambiguous, scale, grid))
    codes = codes.astype(fmt.code_dtype)
    differs = grid != out
    ste_rounded = 0
    if differs.any():
        explained = ste_explains(source.raw, grid, out)
        unexplained = differs & ~explained
        if unexplained.any():
            i = np.unravel_index(int(np.argmax(unexplained)), out.shape)
            raise ExactnessError(
                f"{where}: codes x scale does not reproduce {describe(q)} at {int(unexplained.sum())} element(s) "
                f"(first at {tuple(int(k) for k in i)}: layer value {out[i]!r}, codes x scale {grid[i]!r})"
            )
        ste_rounded = int(differs.sum())
        warnings.warn(
            f"{where}: at {ste_rounded} clipped element(s) QKeras's straight-through form x + (q - x) "
            "rounds the quantized value in float32; qextract keeps the exact grid value codes x scale "
            "(the layer's float value differs by that rounding only).",
            QExtractWarning,
            stacklevel=4,
        )
    return QuantizedTensor(
        layer=layer,
        layer_class=layer_class,
        name=source.name,
        raw=source.raw,
        values=grid,
        format=fmt,
        codes=codes,
        scale=enc.scale.astype(np.float32),
        scale_axis=enc.scale_axis,
        signs=signs,
        quantizer=q,
        quantizer_str=describe(q),
        ste_rounded=ste_rounded,
        notes=notes,
        variables=_names(source),
    )


def _names(source: TensorSource) -> tuple[str, ...]:
    return tuple(generation().variable_path(v) for v in source.variables)


def _not_finite_message(where: str, q: Any) -> str:
    why, fix = "", "a quantizer configuration QKeras computes finitely"
    if type(q).__name__ == "quantized_relu" and int(q.bits) >= 32:
        why = " (QKeras's quantized_relu computes 2**bits in int32, which overflows from 32 bits on)"
        fix = "quantized_relu of at most 31 bits"
    return (
        f"{where}: quantizer {describe(q)} produced NaN or Inf from finite weights{why}; "
        f"the layer computes with them too. Fix: {fix}"
    )


def _small_float_codes(codes: np.ndarray, fmt: Any) -> np.ndarray | None:
    """``codes`` as they are when they are float32 integers inside a range float32 holds exactly (|code| <= 2**24).

    Then every test can run on them without a cast: each is exactly the
    integer it shows. None where that does not hold; the caller then takes the
    int64 path, which also says which codes fail and why.
    """
    if codes.dtype != np.float32 or max(abs(int(fmt.code_min)), abs(int(fmt.code_max))) > 2**24:
        return None
    with np.errstate(invalid="ignore"):
        ok = (codes >= fmt.code_min) & (codes <= fmt.code_max) & (np.rint(codes) == codes)  # NaN fails all three
    return codes if ok.all() else None


def _exact_integers(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` as int64, and where they are no integer int64 holds (NaN, a fraction, beyond +-2**63)."""
    c = np.asarray(codes)
    if c.dtype.kind in "iu":
        return c.astype(np.int64), np.zeros(c.shape, bool)
    f = c if c.dtype in (np.float32, np.float64) else c.astype(np.float64)
    with np.errstate(invalid="ignore"):
        # A float is an int64 integer exactly when it survives the round trip through int64: NaN, fractions
        # and magnitudes from 2**63 on (whose cast is undefined, in practice -2**63) all come back different.
        ints = f.astype(np.int64)
        off = ints.astype(f.dtype) != f
    return (np.where(off, 0, ints) if off.any() else ints), off


def _float32_integers(codes: np.ndarray) -> np.ndarray:
    """Where an int64 code is a float32 number (at most 24 significant bits), so ``code * scale`` is formed exactly."""
    a = np.abs(codes).astype(np.uint64)  # abs(-2**63) wraps to -2**63, which is 2**63 as uint64: right
    lowest = a & (~a + np.uint64(1))
    return np.where(a == 0, np.uint64(0), a // np.maximum(lowest, np.uint64(1))) < np.uint64(2**24)


def _clipped_by_ste(
    fmt: FixedPoint,
    codes: np.ndarray,
    beyond: np.ndarray,
    outside: np.ndarray,
    scale: Any,
    raw: np.ndarray,
    out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Codes beyond the range that are a clipped weight's straight-through rounding, clipped back.

    QKeras's ``x + (q - x)`` can round a clipped weight's grid value ``q``
    (the range's end) to a float32 beyond it: the range's end is the code,
    as for any other rounded clipped element, but only where that end is a
    float32 number, i.e. the value QKeras's float32 clip bound really is.
    """
    ends = np.clip(codes, fmt.code_min, fmt.code_max)
    candidates = beyond & _float32_integers(ends)
    if not candidates.any():
        return codes, outside
    explained = candidates & ste_explains(raw, decode(fmt, ends, scale), out)
    return np.where(explained, ends, codes), outside & ~explained


def _outside_message(where: str, q: Any, fmt: Any, codes: np.ndarray, outside: np.ndarray, out: np.ndarray) -> str:
    """Where the first value off the format's codes lies, and why (the entry's ``codes``, exact floats or integers)."""
    i = np.unravel_index(int(np.argmax(outside)), outside.shape)
    at = f"first at {tuple(int(k) for k in i)}: value {float(out[i])!r}"
    text = f"{where}: {int(outside.sum())} value(s) of {describe(q)} are not on its {fmt} grid ({at}"
    code = codes[i].item()
    if not (isinstance(code, int) or (math.isfinite(code) and code == round(code))):
        return text + f", no integer multiple of its scale); codes must lie in [{fmt.code_min}, {fmt.code_max}]"
    code = int(code)
    text += f" is code {code}, outside [{fmt.code_min}, {fmt.code_max}])"
    magnitude = fmt.bits - int(fmt.signed) if isinstance(fmt, FixedPoint) else 0
    if magnitude > 24 and abs(code) == 2**magnitude:
        text += (
            f". At {fmt.bits} bits QKeras's clip bound, {'+' if code > 0 else '-'}(2**{magnitude} - 1), "
            f"is not a float32 number and rounds to {'+' if code > 0 else '-'}2**{magnitude} in its float32 "
            f"arithmetic, so weights at the end of the range quantize to a code the {fmt.bits}-bit format "
            "cannot hold. Fix: at most 24 bits besides the sign (bits - keep_negative <= 24), "
            "or raw weights strictly inside the quantizer's range"
        )
    return text


def _ambiguous(fmt: Any, codes: np.ndarray, scale: Any, grid: np.ndarray) -> np.ndarray:
    """Where another code of the range gives the same float32 value: the layer's integer is then unknowable.

    Only a scale that is not a power of two can do this (a power-of-two scale
    makes ``value / scale`` exact), and only for codes of about 2**23 and more,
    where neighbouring products round to one float32.
    """
    ambiguous = np.zeros(codes.shape, bool)
    small = np.asarray(scale, np.float32)
    if not isinstance(fmt, FixedPoint) or not np.any((small != 0) & (np.frexp(small)[0] != 0.5)):
        return ambiguous  # powers of two (or 0) only: value / scale is exact, codes are unique
    s = np.broadcast_to(small, codes.shape)
    rounding = (s != 0) & (np.frexp(s)[0] != 0.5)
    if not rounding.any():
        return ambiguous
    for step, inside in ((-1, codes > fmt.code_min), (1, codes < fmt.code_max)):
        neighbour = codes + step * inside.astype(np.int64)  # stays put at the range's ends: never past int64
        ambiguous |= rounding & inside & (decode(fmt, neighbour, s) == grid)
    return ambiguous


def _ambiguous_message(
    where: str, q: Any, codes: np.ndarray, ambiguous: np.ndarray, scale: Any, grid: np.ndarray
) -> str:
    i = np.unravel_index(int(np.argmax(ambiguous)), ambiguous.shape)
    s = np.float32(np.broadcast_to(np.asarray(scale, np.float32), codes.shape)[i])
    code = int(codes[i])
    twin = next(c for c in (code - 1, code + 1) if np.float32(c) * s == grid[i])
    return (
        f"{where}: {int(ambiguous.sum())} value(s) of {describe(q)} do not determine their codes (first at "
        f"{tuple(int(k) for k in i)}: value {float(grid[i])!r} is float32(code x {float(s)!r}) "
        f"for codes {min(code, twin)} and {max(code, twin)} alike). With a scale that is not a power of two, "
        f"float32's 24-bit significand cannot tell codes of magnitude about "
        f"2**{max(abs(code), 1).bit_length() - 1} apart, so the layer's integers cannot be recovered from its values. "
        "Fix: a power-of-two scale (alpha=1 or 'auto_po2'), or fewer bits (|code| below 2**22)"
    )
