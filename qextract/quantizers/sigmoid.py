"""The sigmoid family: ``quantized_tanh`` and ``quantized_sigmoid``.

Both round a float function of ``x`` (``tf.round``, half to even): tanh
``round(p * m) / m`` clipped to ``[-1 + symmetric/m, 1 - 1/m]`` with ``m =
2**(bits-1)``, sigmoid to ``[symmetric/m, 1 - 1/m]`` with ``m = 2**bits``. The
function is QKeras's internal sigmoid (``set_internal_sigmoid``, "hard" by
default: ``clip(x/2 + 1/2, 0, 1)``) unless ``use_real_tanh``/``use_real_sigmoid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..numformat import FixedPoint
from .activations import ActivationSpec, float_function, internal_sigmoid
from .entry import Bounds, Encoding, QuantizerEntry
from .grid import grid_encoding
from .registry import register
from .rounding import Rounding


@register
class QuantizedTanh(QuantizerEntry):
    """``quantized_tanh``: signed codes on a ``2**-(bits-1)`` grid in [-1, 1).

    Float twin: tanh if ``use_real_tanh``, else ``2 * sigmoid(x) - 1`` of the
    internal sigmoid (default "hard": ``clip(x, -1, 1)``).
    """

    name = "quantized_tanh"

    def number_format(self, q: Any) -> FixedPoint:
        return FixedPoint(bits=int(q.bits), integer=0, is_signed=True, symmetric=bool(q.symmetric))

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return grid_encoding(fmt, values, np.float32(fmt.step))

    def bounds(self, q: Any) -> Bounds | None:
        m = 2.0 ** (q.bits - 1)
        return (-1.0 + float(bool(q.symmetric)) / m, 1.0 - 1.0 / m)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        if q.use_real_tanh:
            return "tanh"
        by_sigmoid: dict[str, ActivationSpec] = {
            "hard": float_function("hard_tanh"),
            "smooth": float_function("smooth_tanh"),
            "real": float_function("half_tanh"),
        }
        return by_sigmoid[internal_sigmoid()]

    def rounding(self, q: Any) -> Rounding:
        return Rounding.HALF_EVEN


@register
class QuantizedSigmoid(QuantizerEntry):
    """``quantized_sigmoid``: unsigned codes on a ``2**-bits`` grid in [0, 1).

    Float twin: sigmoid if ``use_real_sigmoid``, else the internal sigmoid
    (default "hard": ``clip(x/2 + 1/2, 0, 1)``, not Keras's ``hard_sigmoid``,
    whose slope is 0.2).
    """

    name = "quantized_sigmoid"

    def number_format(self, q: Any) -> FixedPoint:
        return FixedPoint(bits=int(q.bits), integer=0, is_signed=False)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return grid_encoding(fmt, values, np.float32(fmt.step))

    def bounds(self, q: Any) -> Bounds | None:
        m = 2.0**q.bits
        return (float(bool(q.symmetric)) / m, 1.0 - 1.0 / m)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        if q.use_real_sigmoid:
            return "sigmoid"
        by_sigmoid: dict[str, ActivationSpec] = {
            "hard": float_function("hard_sigmoid"),
            "smooth": float_function("smooth_sigmoid"),
            "real": "sigmoid",
        }
        return by_sigmoid[internal_sigmoid()]

    def rounding(self, q: Any) -> Rounding:
        return Rounding.HALF_EVEN
