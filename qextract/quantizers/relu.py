"""``quantized_relu``: an unsigned grid ``2**(integer - bits)``, signed with a negative slope.

QKeras computes, with ``m = 2**(bits - (negative_slope != 0))``, ``m_i =
2**integer`` and ``p = x * m / m_i``: ``m_i * clip(round(p) / m, 0, 1 - 1/m)``
plus, with a negative slope ``s``, ``m_i * s * clip(round(p * s) / (s * m), -1, 0)``;
``round`` is ``tf.round`` (half to even). ``relu_upper_bound`` caps the output
only where ``is_quantized_clip`` is off.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..errors import NeedsQKeras, UnsupportedError
from ..numformat import FixedPoint
from .activations import ActivationSpec, relu_spec
from .emulation import F32, int_power_of_two, power_of_two, ste
from .entry import (
    Bounds,
    Encoding,
    Params,
    QonnxQuant,
    QuantizerEntry,
    check_qnoise,
    config_int,
    describe,
    plain_number,
)
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
    params: ClassVar[Params | None] = (
        ("bits", 8),
        ("integer", 0),
        ("use_sigmoid", 0),
        ("negative_slope", 0.0),
        ("use_stochastic_rounding", False),
        ("relu_upper_bound", None),
        ("is_quantized_clip", True),
        ("qnoise_factor", 1.0),
        ("var_name", None),
        ("use_ste", True),
        ("use_variables", False),
    )
    config_keys = (
        "bits",
        "integer",
        "use_sigmoid",
        "negative_slope",
        "use_stochastic_rounding",
        "relu_upper_bound",
        "qnoise_factor",
    )

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

    # ------------------------------------------------------------------ NumPy form

    def initialize(self, q: Any) -> None:
        slope = q.negative_slope
        if slope < 0 or (slope != 0 and math.log2(slope) % 1 != 0):
            raise NeedsQKeras(f"negative_slope={slope}, which QKeras rejects (a power of two, or 0)")

    def text(self, q: Any) -> str:
        flags = [str(q.bits), str(q.integer)]
        if q.use_sigmoid or q.use_stochastic_rounding:
            flags.append(str(int(q.use_sigmoid)))
        if q.negative_slope:
            flags.append(str(q.negative_slope))
        if q.use_stochastic_rounding:
            flags.append(str(int(q.use_stochastic_rounding)))
        return "quantized_relu(" + ",".join(flags) + ")"

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """``quantized_relu.__call__`` without ``use_sigmoid``: clips, a relu and ``tf.round``, all exact in float32."""
        if q.use_sigmoid:
            raise NeedsQKeras("quantized_relu(use_sigmoid=1) applies QKeras's internal sigmoid first")
        slope = F32(q.negative_slope)
        non_sign_bits = q.bits - (q.negative_slope != 0.0)
        m = int_power_of_two(non_sign_bits, "bits")
        m_i = int_power_of_two(q.integer, "integer")
        m_f = power_of_two(F32(q.integer) - F32(non_sign_bits))
        relu = np.where(x > 0, x, x * slope) if q.negative_slope != 0.0 else np.maximum(x, F32(0.0))
        if q.is_quantized_clip:
            x_u = np.where(x <= m_i - m_f, relu, m_i - m_f)
        elif q.relu_upper_bound is not None:
            x_u = np.where(x <= F32(q.relu_upper_bound), relu, F32(q.relu_upper_bound))
        else:
            x_u = relu
        with np.errstate(over="ignore", invalid="ignore"):
            p = (x * m) / m_i
            xq = m_i * np.minimum(np.maximum(np.rint(p) / m, F32(0.0)), F32(1.0) - F32(1.0) / m)
            if q.negative_slope > 0:
                neg_factor = F32(1.0) / (slope * m)
                xq = xq + (m_i * slope) * np.minimum(np.maximum(np.rint(p * slope) * neg_factor, F32(-1.0)), F32(0.0))
        if q.relu_upper_bound and not q.is_quantized_clip:
            xq = np.where(xq <= F32(q.relu_upper_bound), xq, F32(q.relu_upper_bound))
        return ste(x_u, xq, q)
