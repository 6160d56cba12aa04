"""Powers of two: ``quantized_po2`` and ``quantized_relu_po2``; codes are exponents, signs separate.

QKeras rounds ``log2|x|`` computed in float32 (``log(x) / log(2)``): with
``tf.round`` (half to even) by default, ``tf.floor`` with
``log2_rounding="floor"``. Exact ties in log2 only arise from float32 rounding
of that quotient, and tf.round settles them to even.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import NeedsQKeras
from ..numformat import PowerOfTwo
from .activations import ActivationSpec, relu_spec
from .emulation import EPS, F32, log2_rounded, power_of_two, sign, ste
from .entry import Encoding, Params, QuantizerEntry
from .registry import register
from .rounding import Rounding


@register
class QuantizedPo2(QuantizerEntry):
    """``quantized_po2``: ``sign(x) * 2**clip(round(log2|x|))``. Float twin: linear. No bounds."""

    name = "quantized_po2"
    params: ClassVar[Params | None] = (
        ("bits", 8),
        ("max_value", None),
        ("use_stochastic_rounding", False),
        ("quadratic_approximation", False),
        ("log2_rounding", "rnd"),
        ("qnoise_factor", 1.0),
        ("var_name", None),
        ("use_ste", True),
        ("use_variables", False),
    )
    config_keys = (
        "bits",
        "max_value",
        "use_stochastic_rounding",
        "quadratic_approximation",
        "qnoise_factor",
        "log2_rounding",
    )

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

    # ------------------------------------------------------------------ NumPy form

    def initialize(self, q: Any) -> None:
        """QKeras's exponent range: ``bits - 1`` bits, one of them the exponent's sign unless ``max_value <= 1``."""
        if q.max_value is not None and q.max_value < 0:
            raise NeedsQKeras(f"max_value={q.max_value}, which QKeras rejects")
        sign_bit = 0 if q.max_value is not None and q.max_value <= 1 else 1
        effect = q.bits - 1 - sign_bit
        q._min_exp, q._max_exp = -(2**effect), 2**effect - 1
        if q.quadratic_approximation:
            q._max_exp = 2 * (q._max_exp // 2)

    def text(self, q: Any) -> str:
        flags = [str(q.bits)]
        if q.max_value is not None or q.use_stochastic_rounding:
            flags.append(str(int(q.max_value)))
        if q.use_stochastic_rounding:
            flags.append(str(int(q.use_stochastic_rounding)))
        if q.quadratic_approximation:
            flags.append("quadratic_approximation=" + str(int(q.quadratic_approximation)))
        return "quantized_po2(" + ",".join(flags) + ")"

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """``quantized_po2.__call__`` with ``_clip_power_of_two``: the exponent is ``log2`` rounded, so each
        element is certain unless ``log2 |x|`` lies within TensorFlow's ``log`` error of the rounding boundary."""
        if q.log2_rounding not in ("rnd", "floor"):
            raise NeedsQKeras(f"log2_rounding={q.log2_rounding!r}, which QKeras rejects")
        x_sign = sign(x)
        x_sign = x_sign + (F32(1.0) - np.abs(x_sign))
        x_abs = np.abs(x)
        x_filter = np.where(x_abs < EPS, EPS, x_abs)
        if q.max_value is not None:
            top = F32(q.max_value)
            x_filter = np.where(x_filter >= top, top, x_filter)
        x_input = np.sqrt(x_filter) if q.quadratic_approximation else x_filter
        used = x_abs >= EPS  # the others take min_exp whatever their logarithm
        x_log2 = np.zeros(x.shape, F32)
        x_log2[used] = log2_rounded(x_input[used].astype(np.float64), 0.0, floor=q.log2_rounding == "floor")
        low, high = q._min_exp, q._max_exp
        if high < low:  # K.clip with Python numbers
            high = low
        factor = F32(2.0 if q.quadratic_approximation else 1.0)
        x_clipped = np.where(used, factor * np.clip(x_log2, F32(low), F32(high)), F32(q._min_exp))
        return ste(x, x_sign * power_of_two(x_clipped), q)


@register
class QuantizedReluPo2(QuantizedPo2):
    """``quantized_relu_po2``: po2 of relu(x). Float twin: relu, with ``max_value`` / ``negative_slope`` when set."""

    name = "quantized_relu_po2"
    params: ClassVar[Params | None] = None  # no NumPy form yet

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return relu_spec(q.max_value, q.negative_slope)
