"""Integer views of number formats and weight tensors: every value as an integer times one step.

An accumulator sums integers only if every term is an integer multiple of
one step. :func:`input_range` gives that view of an input format (its code
range, or for powers of two ``sign * 2**(e - e_min)``), :func:`integer_kernel`
of a weight tensor per output channel (codes, or po2 signs shifted onto the
finest exponent; weights of one channel at steps a power of two apart are put
on the finest). Anything else (look-up tables, floats, steps that are not
powers of two apart) has no such view and is refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ExactnessError, UnsupportedError
from ..numformat import NumberFormat
from ..tensor import QuantizedTensor

__all__ = ["input_range", "integer_kernel"]


def input_range(fmt: NumberFormat, scale: float | np.ndarray, what: str = "input") -> tuple[int, int, float]:
    """``(lo, hi, step)``: every input value is ``x_int * step`` with an integer ``x_int`` in ``[lo, hi]``.

    Fixed point, ternary and binary: the code range at ``scale``. Powers of
    two ``sign * 2**e * scale``: ``x_int = sign * 2**(e - e_min)`` at step
    ``2**e_min * scale``. Look-up tables and floats have no such range
    (UnsupportedError). A per-channel input scale must be one number.
    """
    s = np.unique(np.asarray(scale, np.float64))
    if s.size != 1 or not (np.isfinite(s[0]) and s[0] > 0):
        raise UnsupportedError(
            f"{what} scale {np.asarray(scale).tolist()!r} is not one positive number: channels at different "
            "steps do not sum on one integer grid"
        )
    step = float(s[0])
    if not fmt.quantized or fmt.lookup_table() is not None:
        raise UnsupportedError(
            f"{what} format {fmt} has no integer code range (a look-up table or float); give the input's "
            "quantizer (input_format) so the accumulator sums integers"
        )
    if fmt.has_signs:  # powers of two: codes are the exponents, signs say -/0/+
        top = 2 ** (fmt.code_max - fmt.code_min)
        return (-top if fmt.signed else 0), top, math.ldexp(step, fmt.code_min)
    return fmt.code_min, fmt.code_max, step


def integer_kernel(t: QuantizedTensor, out_axes: tuple[int, ...] = (-1,)) -> tuple[np.ndarray, np.ndarray]:
    """``(w_int, step)``: ``t.values == w_int * step[channel]`` exactly, channels flattened over ``out_axes``.

    ``w_int`` has ``t``'s shape (int64, or Python ints where int64 could
    overflow); ``step`` is float64, one per output channel (C order over
    ``out_axes``: ``c*M + m`` for a depthwise kernel's ``(C, M)``). Weights
    of one channel at steps a power of two apart (powers of two; a
    transposed kernel's scale along its inputs) are put on the finest of
    them. UnsupportedError for a float or look-up kernel, or steps that are
    not powers of two apart.
    """
    name, fmt = t.key, t.format
    if t.codes is None or fmt.lookup_table() is not None:
        what = "is not quantized (float)" if t.codes is None else f"has format {fmt}, not integer multiples of a step"
        raise UnsupportedError(f"tensor '{name}' {what}: no integer accumulator. Fix: quantize it with quantized_bits")
    scale = np.broadcast_to(np.asarray(t.broadcast_scale(), np.float64), t.shape)
    if fmt.has_signs:
        assert t.signs is not None
        m, steps = t.signs.astype(np.int64), np.ldexp(scale, t.codes.astype(np.int64))
    else:
        m, steps = t.codes.astype(np.int64), scale
    axes = [a % m.ndim for a in out_axes]
    rest = [a for a in range(m.ndim) if a not in axes]
    m2 = m.transpose(rest + axes).reshape(-1, int(np.prod([m.shape[a] for a in axes])))
    mant, expo = np.frexp(steps.transpose(rest + axes).reshape(m2.shape))
    used = m2 != 0
    ref_row = np.where(used.any(axis=0), used.argmax(axis=0), 0)
    ref_mant, cols = mant[ref_row, np.arange(m2.shape[1])], np.arange(m2.shape[1])
    bad = used & (mant != ref_mant)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        raise UnsupportedError(
            f"tensor '{name}': output channel {col} has weights at steps that are not powers of two apart "
            "(per-channel scales along the summed axis): no common integer grid"
        )
    e_min = np.where(used, expo, np.iinfo(np.int64).max).min(axis=0)
    e_min = np.where(used.any(axis=0), e_min, expo[ref_row, cols])
    shift = np.where(used, expo - e_min, 0)
    ints: np.ndarray = (
        m2 << shift if int(shift.max(initial=0)) < 40 else m2.astype(object) * (2 ** shift.astype(object))
    )
    step = np.ldexp(ref_mant, e_min)
    if not np.array_equal(
        ints.astype(np.float64) * step, np.asarray(t.values, np.float64).transpose(rest + axes).reshape(m2.shape)
    ):
        raise ExactnessError(
            f"tensor '{name}': its codes times scale do not give its values; the extraction is inconsistent"
        )
    back = [0] * m.ndim
    for i, a in enumerate(rest + axes):
        back[a] = i
    shaped = ints.reshape([m.shape[a] for a in rest + axes]).transpose(back)
    return shaped, step.astype(np.float64)
