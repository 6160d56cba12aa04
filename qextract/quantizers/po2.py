"""Powers of two: ``quantized_po2`` and ``quantized_relu_po2``; codes are exponents, signs separate.

QKeras rounds ``log2|x|`` computed in float32 (``log(x) / log(2)``): with
``tf.round`` (half to even) by default, ``tf.floor`` with
``log2_rounding="floor"``. Exact ties in log2 only arise from float32 rounding
of that quotient, and tf.round settles them to even.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..numformat import PowerOfTwo
from .activations import ActivationSpec, relu_spec
from .entry import Encoding, QuantizerEntry
from .registry import register
from .rounding import Rounding


@register
class QuantizedPo2(QuantizerEntry):
    """``quantized_po2``: ``sign(x) * 2**clip(round(log2|x|))``. Float twin: linear. No bounds."""

    name = "quantized_po2"

    def number_format(self, q: Any) -> PowerOfTwo:
        factor = 2 if q.quadratic_approximation else 1
        negative = getattr(q, "negative_slope", -1) != 0
        return PowerOfTwo(
            bits=int(q.bits),
            exponent_min=factor * int(q._min_exp),
            exponent_max=factor * int(q._max_exp),
            negative=negative,
        )

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        mantissa, exponent = np.frexp(values)
        signs = np.sign(values).astype(np.int8)
        # frexp gives |m| in [0.5, 1): a power of two has |m| == 0.5 and exponent e+1.
        codes = np.where(signs == 0, fmt.code_min, exponent - 1).astype(np.int64)
        off_grid = (signs != 0) & (np.abs(mantissa) != 0.5)
        if off_grid.any():
            codes = np.where(off_grid, np.iinfo(np.int32).min, codes)  # caught by the range check
        return Encoding(fmt, codes, np.ones((), np.float32), signs=signs)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return "linear"

    def rounding(self, q: Any) -> Rounding:
        return Rounding.FLOOR if q.log2_rounding == "floor" else Rounding.HALF_EVEN


@register
class QuantizedReluPo2(QuantizedPo2):
    """``quantized_relu_po2``: po2 of relu(x). Float twin: relu, with ``max_value`` / ``negative_slope`` when set."""

    name = "quantized_relu_po2"

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return relu_spec(q.max_value, q.negative_slope)
