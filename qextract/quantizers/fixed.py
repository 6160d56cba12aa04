"""Fixed point: ``quantized_bits`` and ``quantized_hswish`` (which quantizes hswish(x) with it).

QKeras computes, with ``m = 2**(bits - keep_negative)`` and ``m_i = 2**integer``:

- alpha None / a number / an array: ``alpha * m_i * clip(round(x * m / m_i),
  keep_negative * (symmetric - m), m - 1) / m``, rounding half to even
  (``tf.round``);
- alpha ``"auto"`` / ``"auto_po2"``: a per-channel scale from the data and codes
  ``sign(x) * min(floor(|x| / scale + 1/2), levels / 2)``: half away from zero,
  symmetric signed whatever ``keep_negative`` says;
- ``bits - keep_negative == 0`` (1-bit signed): QKeras's sign quantizer, codes
  -1/+1 with 0 -> +1.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import numpy as np

from ..errors import NeedsQKeras
from ..numformat import Binary, FixedPoint, NumberFormat
from .activations import ActivationSpec, float_function
from .emulation import (
    EPS,
    F32,
    channel_max,
    int_power_of_two,
    log2_rounded,
    no_subnormals,
    po2_scale,
    power_of_two,
    scaling_axes,
    sign,
    ste,
)
from .entry import (
    Bounds,
    Encoding,
    Params,
    QonnxQuant,
    QuantizerEntry,
    activation_alpha,
    check_qnoise,
    config_int,
    data_scale_refused,
    plain_number,
    qkeras_variables,
)
from .grid import grid_encoding, output_scale
from .registry import register
from .rounding import Rounding, scale_exponents, shift_codes


@register
class QuantizedBits(QuantizerEntry):
    """``quantized_bits``: value = alpha * 2**(integer - (bits - keep_negative)) * code.

    Float twin: linear. Bounds: the grid's ends times alpha (None for a data
    scale or variable bits).
    """

    name = "quantized_bits"
    params: ClassVar[Params | None] = (
        ("bits", 8),
        ("integer", 0),
        ("symmetric", 0),
        ("keep_negative", True),
        ("alpha", None),
        ("use_stochastic_rounding", False),
        ("scale_axis", None),
        ("qnoise_factor", 1.0),
        ("var_name", None),
        ("use_ste", True),
        ("use_variables", False),
    )
    config_keys = ("bits", "integer", "symmetric", "alpha", "keep_negative", "use_stochastic_rounding", "qnoise_factor")

    def number_format(self, q: Any) -> NumberFormat:
        bits, integer, kn = int(q.bits), config_int(q.integer), int(bool(q.keep_negative))
        if isinstance(q.alpha, str):
            return FixedPoint(bits=bits, integer=integer, is_signed=True, symmetric=True)
        if bits - kn <= 0:
            return Binary()
        return FixedPoint(bits=bits, integer=integer, is_signed=bool(kn), symmetric=bool(q.symmetric) and bool(kn))

    def graph_safe(self, q: Any) -> bool:
        # Only scaling by powers of two, rounding and clipping: exact in any evaluation order.
        # A float alpha or alpha="auto" rounds differently once Grappler reorders the products.
        if qkeras_variables(q):
            return False
        alpha = q.alpha
        if alpha is None or (isinstance(alpha, str) and alpha == "auto_po2"):
            return True
        return isinstance(alpha, (int, float)) and alpha > 0 and math.frexp(alpha)[0] == 0.5

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        bits, integer, kn = int(q.bits), config_int(q.integer), int(bool(q.keep_negative))
        step = np.float32(2.0 ** (integer - (bits - kn)))
        if isinstance(q.alpha, str):
            # q.scale = (least-squares scale) * 2**(bits-kn); the grid is q.scale * m_i / m.
            return grid_encoding(fmt, values, np.asarray(q.scale, np.float32) * step)
        alpha = np.float32(1.0) if q.alpha is None else np.asarray(q.alpha, np.float32)
        if isinstance(fmt, Binary):
            return grid_encoding(fmt, values, alpha)
        return grid_encoding(fmt, values, alpha * step)

    def bounds(self, q: Any) -> Bounds | None:
        bits, integer, alpha = plain_number(q.bits), plain_number(q.integer), q.alpha
        if bits is None or integer is None or isinstance(alpha, str):
            return None
        scale = 1.0 if alpha is None else plain_number(alpha)
        if scale is None:
            return None
        keep_negative = bool(getattr(q, "keep_negative", True))
        unsigned_bits = bits - keep_negative
        if unsigned_bits <= 0:  # QKeras's one-bit sign quantizer
            return (-scale, scale)
        m, m_i = 2.0**unsigned_bits, 2.0**integer
        lo = keep_negative * (-m + float(bool(getattr(q, "symmetric", 0)))) * m_i / m * scale
        return (lo, (m - 1.0) * m_i / m * scale)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return "linear"

    def rounding(self, q: Any) -> Rounding:
        if isinstance(q.alpha, str):
            return Rounding.HALF_AWAY  # floor(|x| / scale + 0.5) * sign(x)
        if int(q.bits) - int(bool(q.keep_negative)) <= 0:
            return Rounding.HALF_POSITIVE  # sign with 0 -> +1
        return Rounding.HALF_EVEN  # tf.round

    def qonnx(self, q: Any) -> QonnxQuant:
        """``Quant`` on the grid ``2**(integer - (bits - keep_negative))``, half to even, then ``* alpha``.

        QKeras rounds ``x / step`` and multiplies the grid value by alpha; the
        one-bit signed form is ``BipolarQuant`` with scale alpha (0 goes to +1).
        """
        check_qnoise(q)
        alpha = activation_alpha(q)
        a = None if alpha == 1.0 else alpha
        fmt = self.number_format(q)
        if isinstance(fmt, Binary):
            return QonnxQuant("BipolarQuant", 1.0 if a is None else a, rounding=self.rounding(q))
        fixed = cast(FixedPoint, fmt)
        return QonnxQuant("Quant", fixed.step, fixed.bits, fixed.is_signed, fixed.symmetric, self.rounding(q), alpha=a)

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        check_qnoise(q)
        if isinstance(q.alpha, str):
            raise data_scale_refused(q)
        acc = np.asarray(acc)
        fmt = self.number_format(q)
        alpha = np.float32(1.0) if q.alpha is None else np.asarray(q.alpha, np.float32)
        if isinstance(fmt, Binary):
            codes = np.where(acc >= 0, 1, -1).astype(np.int64)
            return Encoding(fmt, codes, *output_scale(alpha, acc.shape))
        step_exponent = -cast(FixedPoint, fmt).fractional_bits
        shift = scale_exponents(scale) - step_exponent
        codes = shift_codes(acc, shift, self.rounding(q), fmt.code_min, fmt.code_max)
        return Encoding(fmt, codes, *output_scale(alpha * np.float32(2.0**step_exponent), acc.shape))

    # ------------------------------------------------------------------ NumPy form

    def initialize(self, q: Any) -> None:
        q.scale = None
        if isinstance(q.alpha, str):  # QKeras: "auto*" |-> symmetric
            q.symmetric = True

    def optimize(self, q: Any) -> None:
        if q.alpha is None:
            q.alpha, q.symmetric = "auto_po2", True

    def text(self, q: Any) -> str:
        flags = [str(q.bits), str(q.integer), str(int(q.symmetric))]
        if not q.keep_negative:
            flags.append("keep_negative=False")
        if q.alpha:
            flags.append("alpha=" + (f"'{q.alpha}'" if isinstance(q.alpha, str) else str(q.alpha)))
        if q.use_stochastic_rounding:
            flags.append("use_stochastic_rounding=" + str(int(q.use_stochastic_rounding)))
        return "quantized_bits(" + ",".join(flags) + ")"

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """``quantized_bits.__call__`` step by step (``_round_through`` is exactly ``round`` in float32)."""
        unsigned_bits = q.bits - q.keep_negative
        m = F32(2.0**unsigned_bits)
        m_i = int_power_of_two(q.integer, "integer")
        if isinstance(q.alpha, str):
            return self._auto(q, x, m, m_i)
        if q.alpha is not None and plain_number(q.alpha) is None:
            raise NeedsQKeras(f"alpha {q.alpha!r} is no plain number")
        scale = F32(1.0 if q.alpha is None else q.alpha)
        with np.errstate(over="ignore", invalid="ignore"):
            if unsigned_bits > 0:
                p = (x * m) / m_i
                no_subnormals(p, "x * 2**(bits - keep_negative - integer)")
                lo = F32(q.keep_negative) * (-m + F32(q.symmetric))
                xq = (m_i * np.minimum(np.maximum(np.rint(p), lo), m - F32(1.0))) / m
            else:
                xq = sign(x)
                xq = xq + (F32(1.0) - np.abs(xq))
                if not q.keep_negative:
                    xq = (xq + F32(1.0)) / F32(2.0)
        q.scale = 1.0 if q.alpha is None else q.alpha
        return ste(x, scale * xq, q)

    def _auto(self, q: Any, x: np.ndarray, m: F32, m_i: F32) -> np.ndarray:
        """``alpha="auto"`` / ``"auto_po2"``: the per-channel scale search, ``auto_po2``'s five rounds included."""
        if not q.symmetric:
            raise NeedsQKeras("an alpha='auto' quantizer that is not symmetric (QKeras asserts)")
        if (q.alpha != "auto" and "po2" not in q.alpha) or x.ndim == 0:
            raise NeedsQKeras(f"alpha={q.alpha!r} on a tensor of shape {x.shape}, which QKeras rejects")
        axes = scaling_axes(q.scale_axis, x.ndim) if x.ndim > 1 else (0,)
        xs = x / m_i
        no_subnormals(xs, "x / 2**integer")
        levels = (2 ** (q.bits - 1) - 1) * 2
        top = F32(levels) / F32(2.0)  # tf.ones_like(v) * levels / 2, and v < levels / 2
        with np.errstate(divide="ignore", invalid="ignore"):  # one bit: levels 0, and QKeras's NaN
            scale = (channel_max(xs, axes) * F32(2.0)) / F32(levels)
        if "po2" in q.alpha:
            scale = power_of_two(log2_rounded((scale + EPS).astype(np.float64), 0.0))
            for _ in range(5):
                z = self._codes(xs, scale, top)
                scale = po2_scale(xs, z, axes if x.ndim > 1 else None)
        else:
            z = self._codes(xs, scale, top)
        with np.errstate(invalid="ignore", over="ignore"):
            scale = scale * m
            q.scale = scale
            xq = scale * ((m_i * z) / m)
        return ste(m_i * xs, xq, q)

    @staticmethod
    def _codes(xs: np.ndarray, scale: np.ndarray, top: F32) -> np.ndarray:
        """``sign(x) * min(floor(|x| / scale + 1/2), levels / 2)``, as QKeras computes it."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quotient = np.abs(xs) / scale
            no_subnormals(quotient, "|x| / scale")
            v = np.floor(quotient + F32(0.5))
        return sign(xs) * np.where(v < top, v, top)


@register
class QuantizedHswish(QuantizedBits):
    """``quantized_hswish``: ``quantized_bits`` of ``x * min(relu(x + shift), upper) / upper``.

    Float twin: that hard swish. Bounds: ``quantized_bits``' (the lower one is
    never reached: hard swish dips only to ``-shift**2 / (4 upper)``).
    """

    name = "quantized_hswish"
    params: ClassVar[Params | None] = None  # hswish(x) first: no NumPy form yet

    def graph_safe(self, q: Any) -> bool:
        return False

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return float_function("hard_swish", relu_shift=float(q.relu_shift), relu_upper_bound=float(q.relu_upper_bound))

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        return QuantizerEntry.requantize(self, q, acc, scale)

    def qonnx(self, q: Any) -> QonnxQuant:
        return QuantizerEntry.qonnx(self, q)
