"""Pooling: max (exact on codes), average (a window sum, then a scale), and QKeras's quantized-multiplier average.

Keras averages divide each window's sum by the number of real pixels it
covers; QKeras's ``QAveragePooling2D`` multiplies that average by the area
and by ``average_quantizer(1 / area)``, so a full window gives ``sum *
multiplier``: integer codes ``sum * m`` at the input scale times the
multiplier's. Where every window is full and the divisor is a power of two
(or a quantized multiplier), the result stays on a grid; otherwise (a border
window under "same", a plain average over 9 pixels) it is computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .result import AccumulatorRange
from .signal import Signal, channel_range, collapse, exponent_scale, is_po2, max_abs, uniform
from .step import U32, Output, Step
from .weights import IntegerTensor


@dataclass
class Pooling(Step):
    """``mode`` max or average; ``pool`` None for global pooling (over every spatial axis)."""

    mode: str = "max"
    pool: tuple[int, ...] | None = None
    strides: tuple[int, ...] = ()
    padding: str = "valid"
    keepdims: bool = False
    multiplier: IntegerTensor | None = None  # QKeras's quantized 1/area
    multiplier_po2: bool = True

    def _pads(self, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        assert self.pool is not None
        nd = len(self.pool)
        return kernels.pads_for(self.padding, shape[1 : 1 + nd], self.pool, self.strides, (1,) * nd)

    def run(self, inputs: list[Signal]) -> Output:
        x = inputs[0]
        out = self._max(x) if self.mode == "max" else self._average(x)
        assert out.pre is not None
        out.signal = self.activate(out.pre)
        return out

    def _global(self, a: np.ndarray, how: str) -> np.ndarray:
        axes = tuple(range(1, a.ndim - 1))
        return getattr(a, how)(axis=axes, keepdims=self.keepdims)

    def _max(self, x: Signal) -> Output:
        data = x.codes if x.codes is not None else x.values
        if self.pool is None:
            y = self._global(data, "max")
        else:
            y = kernels.window_max(data, self.pool, self.strides, self._pads(data.shape))
        pre = Signal(y, x.scale, None, x.format, True, x.span) if x.codes is not None else Signal.of_floats(y)
        return Output(pre, pre, None, None if x.codes is not None else "float_input")

    def _sums(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Window sums, the real pixels each covers (broadcastable), and the full window's area."""
        if self.pool is None:
            area = int(np.prod(a.shape[1:-1]))
            return self._global(a, "sum"), np.asarray(area), area
        sums, counts = kernels.window_sums(a, self.pool, self.strides, self._pads(a.shape))
        return sums, counts, int(np.prod(self.pool))

    def _average(self, x: Signal) -> Output:
        area = int(np.prod(self.pool)) if self.pool is not None else int(np.prod(x.shape[1:-1]))
        if x.codes is not None:
            codes, e_in = uniform(x)
            sums, counts, area = self._sums(codes)
            full = bool(np.all(counts == area))
            if full and self.multiplier is not None and self.multiplier.integer:
                m, me = self.multiplier.ints, self.multiplier.exponent
                acc = sums * int(m.reshape(()))
                scale = collapse(exponent_scale(np.asarray(e_in + me)))
                pre = Signal(acc, np.asarray(scale), None, None, True)
                cause = None if is_po2(area) and self.multiplier_po2 and is_po2(x.scale) else "float32_scale"
                if cause is None and max_abs(sums) >= 2**24:
                    cause = "float32_accumulator"
                return Output(pre, pre, self._range(acc, scale, x, e_in), cause)
            if full and self.multiplier is None and is_po2(area):
                pre = Signal(sums, exponent_scale(e_in) / area, None, None, True)
                cause = None if is_po2(x.scale) and max_abs(sums) < 2**24 else "float32_accumulator"
                return Output(pre, pre, None, cause)
        sums, counts, area = self._sums(x.values)
        values = sums / counts
        if self.multiplier is not None:
            values = values * area * float(self.multiplier.values.reshape(()))
        pre = Signal.of_floats(values)
        return Output(pre, pre, None, "float32_scale" if x.codes is not None else "float_input")

    def _range(self, acc: np.ndarray, scale: np.ndarray, x: Signal, e_in: int) -> AccumulatorRange:
        lo, hi = channel_range(acc)
        return AccumulatorRange(
            min=lo,
            max=hi,
            scale=float(scale) if np.ndim(scale) == 0 else scale,
            input_format=x.format,
            input_scale=float(2.0**e_in),
            samples=acc.shape[0],
        )

    def error_bound(self, inputs: list[Signal], pre: Signal) -> np.ndarray:
        if self.mode == "max":
            return np.zeros(pre.shape)
        n = int(np.prod(self.pool)) if self.pool is not None else int(np.prod(inputs[0].shape[1:-1]))
        sums, counts, area = self._sums(np.abs(inputs[0].values))
        magnitude = sums / counts * (area * abs(float(self.multiplier.values.reshape(()))) if self.multiplier else 1)
        return (n + 4) * U32 * magnitude
