"""``quantized_relu``: an unsigned grid ``2**(integer - bits)``, signed with a negative slope.

QKeras computes, with ``m = 2**(bits - (negative_slope != 0))``, ``m_i =
2**integer`` and ``p = x * m / m_i``: ``m_i * clip(round(p) / m, 0, 1 - 1/m)``
plus, with a negative slope ``s``, ``m_i * s * clip(round(p * s) / (s * m), -1, 0)``;
``round`` is ``tf.round`` (half to even). ``relu_upper_bound`` caps the output
only where ``is_quantized_clip`` is off.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..numformat import FixedPoint
from .activations import ActivationSpec, relu_spec
from .entry import Bounds, Encoding, QonnxQuant, QuantizerEntry, check_qnoise, config_int, describe, plain_number
from .grid import grid_encoding
from .registry import register
from .rounding import Rounding, scale_exponents, shift_codes


@register
class QuantizedRelu(QuantizerEntry):
    """``quantized_relu``. Float twin: relu, a ``ReLU`` layer where a ceiling or negative slope is set.

    Bounds: ``(-m_i * slope or None, m_i * (1 - 1/m))``, the top capped by
    ``relu_upper_bound`` where it applies; the floor 0 is the function, not saturation.
    """

    name = "quantized_relu"

    def number_format(self, q: Any) -> FixedPoint:
        return FixedPoint(bits=int(q.bits), integer=config_int(q.integer), is_signed=q.negative_slope != 0)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return grid_encoding(fmt, values, np.float32(fmt.step))

    def bounds(self, q: Any) -> Bounds | None:
        bits, integer = plain_number(q.bits), plain_number(q.integer)
        if bits is None or integer is None:
            return None
        slope = float(getattr(q, "negative_slope", 0.0) or 0.0)
        m, m_i = 2.0 ** (bits - (slope != 0.0)), 2.0**integer
        hi = m_i * (1.0 - 1.0 / m)
        upper = plain_number(getattr(q, "relu_upper_bound", None))
        if upper and not getattr(q, "is_quantized_clip", True):
            hi = min(hi, upper)
        return ((-m_i * slope) if slope else None, hi)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return relu_spec(q.relu_upper_bound, q.negative_slope)

    def rounding(self, q: Any) -> Rounding:
        return Rounding.HALF_EVEN  # tf.round, with or without use_sigmoid

    def qonnx(self, q: Any) -> QonnxQuant:
        """Unsigned ``Quant`` on the grid ``2**(integer - bits)``, half to even (its clip at 0 is the relu).

        Refused: ``use_sigmoid`` (a sigmoid first), a negative slope (a second
        grid below 0) and a ``relu_upper_bound`` that applies (a clip between codes).
        """
        check_qnoise(q)
        why = None
        if q.use_sigmoid:
            why = "use_sigmoid applies a sigmoid before rounding"
        elif q.negative_slope:
            why = f"negative_slope={q.negative_slope} quantizes negative inputs on a second grid"
        elif q.relu_upper_bound and not q.is_quantized_clip:
            why = f"relu_upper_bound={q.relu_upper_bound} clips the output between codes"
        if why is not None:
            raise UnsupportedError(
                f"{describe(q)} has no exact QONNX form: {why}. Fix: a plain quantized_relu(bits, integer)"
            )
        fmt = self.number_format(q)
        return QonnxQuant("Quant", fmt.step, fmt.bits, signed=False, narrow=False, rounding=self.rounding(q))

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        """Integer requantization; implemented without ``use_sigmoid``, for negative slopes up to 1 (QKeras
        allows powers of two only) and a ``relu_upper_bound`` (where it applies) on the output grid."""
        check_qnoise(q)
        if q.use_sigmoid:
            return super().requantize(q, acc, scale)
        acc = np.asarray(acc)
        fmt = self.number_format(q)
        m = 2 ** (fmt.bits - int(fmt.is_signed))
        shift = scale_exponents(scale) + fmt.fractional_bits
        codes = shift_codes(acc, shift, Rounding.HALF_EVEN, 0, m - 1)
        slope = float(q.negative_slope or 0.0)
        if slope:
            mantissa, exponent = math.frexp(slope)
            if not (0.0 < slope <= 1.0 and mantissa == 0.5):
                raise NotImplementedError(
                    f"integer requantization of quantized_relu needs a power-of-two slope of at most 1, not {slope}"
                )
            codes = codes + shift_codes(acc, shift + exponent - 1, Rounding.HALF_EVEN, math.ceil(-slope * m), 0)
        upper = q.relu_upper_bound
        if upper and not q.is_quantized_clip:
            top = float(upper) / fmt.step
            if top != math.floor(top):
                raise NotImplementedError(f"relu_upper_bound={upper} lies between two codes of step {fmt.step}")
            codes = np.minimum(codes, int(top))
        return Encoding(fmt, codes, np.asarray(fmt.step, np.float32))
