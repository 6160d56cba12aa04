"""Weights as the integer network multiplies them: integer codes at a power-of-two scale per output channel.

An extracted tensor's value is ``codes * scale`` (fixed point, binary,
ternary: the scale maybe per channel, maybe not a power of two) or ``signs *
2**codes`` (powers of two). Either way it is an integer times a power of two:
:func:`integer_tensor` gives those integers and exponents, the one convention
the simulation and the accumulator widths share. Tensors whose values are on
no integer grid (a look-up table, unquantized floats) come back as floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numformat import Float, LookupTable, PowerOfTwo
from ..tensor import LayerRecord, QuantizedTensor
from .signal import INT_LIMIT, Overflow, max_abs, po2_channels


@dataclass(frozen=True, eq=False)
class IntegerTensor:
    """``value == ints * 2**exponent``, ``exponent`` () or ``(C,)`` along ``axis`` of ``ints``.

    ``ints`` is int64 where ``integer``; otherwise it holds the float64
    values and ``exponent`` is 0 (the tensor is on no integer grid).
    """

    name: str
    ints: np.ndarray
    exponent: np.ndarray
    axis: int | None
    integer: bool

    @property
    def values(self) -> np.ndarray:
        """The float64 values (exact while ``|ints| < 2**53``)."""
        if not self.integer:
            return self.ints
        return np.ldexp(self.ints.astype(np.float64), self._along())

    def _along(self) -> np.ndarray:
        if self.axis is None or self.exponent.ndim == 0:
            return self.exponent
        shape = [1] * self.ints.ndim
        shape[self.axis] = -1
        return self.exponent.reshape(shape)

    def per_channel(self, axis: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ints, exponent (channels,))``, the exponent along ``axis``; other axes' exponents moved into the ints."""
        e = self.exponent
        if e.ndim == 0:
            return self.ints, np.full(channels, int(e), np.int64)
        if self.axis == axis % self.ints.ndim:
            return self.ints, e
        low = int(e.min())
        shape = [1] * self.ints.ndim
        shape[self.axis] = -1  # type: ignore[index]
        factor = np.left_shift(np.int64(1), (e - low)).reshape(shape)
        if max_abs(self.ints) * int(factor.max()) >= INT_LIMIT:
            raise Overflow(f"tensor '{self.name}': aligning its per-channel scales overflows 64 bits")
        return self.ints * factor, np.full(channels, low, np.int64)


def integer_tensor(t: QuantizedTensor) -> IntegerTensor:
    """The integers and power-of-two exponents of an extracted tensor (floats where it has no grid)."""
    fmt = t.format
    if t.codes is None or isinstance(fmt, (Float, LookupTable)):
        return IntegerTensor(t.name, np.asarray(t.values, np.float64), np.zeros((), np.int64), None, False)
    codes = np.asarray(t.codes).astype(np.int64)
    if isinstance(fmt, PowerOfTwo):
        signs = np.asarray(t.signs).astype(np.int64)
        live = signs != 0
        low = int(codes[live].min()) if live.any() else 0
        span = int(codes[live].max()) - low if live.any() else 0
        if span >= 61:
            return IntegerTensor(t.name, np.asarray(t.values, np.float64), np.zeros((), np.int64), None, False)
        ints = np.where(live, signs << np.maximum(codes - low, 0), 0)
        scaled, e = po2_channels(t.scale, ints, t.scale_axis if t.scale_axis is not None else -1)
        return IntegerTensor(t.name, scaled, e + low, t.scale_axis if e.ndim else None, True)
    try:
        ints, e = po2_channels(t.scale, codes, t.scale_axis if t.scale_axis is not None else -1)
    except Overflow:
        return IntegerTensor(t.name, np.asarray(t.values, np.float64), np.zeros((), np.int64), None, False)
    return IntegerTensor(t.name, ints, e, t.scale_axis if e.ndim else None, True)


def integer_weights(record: LayerRecord) -> dict[str, IntegerTensor]:
    """Every tensor of a layer as :class:`IntegerTensor`, by tensor name (``kernel``, ``bias``, ...)."""
    return {name: integer_tensor(t) for name, t in record.tensors.items()}
