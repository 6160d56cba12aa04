"""``quantized_ulaw``: a non-uniform table of levels; codes index it.

QKeras rounds ``sigmoid(x / m_i) * m`` (half to even, ``tf.round``) and maps
the result through the mu-law curve; the table is computed with TensorFlow by
the very formula QKeras uses, so that each level is bit-identical to an output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..numformat import LookupTable
from .entry import Bounds, Encoding, QuantizerEntry
from .registry import register
from .rounding import Rounding


@register
class QuantizedUlaw(QuantizerEntry):
    """``quantized_ulaw``. No float twin. Bounds: ``m_i * (-1 + symmetric/m)`` to ``m_i * (1 - 1/m)``."""

    name = "quantized_ulaw"

    def number_format(self, q: Any) -> LookupTable:
        from .._keras import tf

        t = tf()
        m = 2 ** (int(q.bits) - 1)
        m_i = 2 ** int(q.integer)
        k = t.constant(np.arange(0, m + 1, dtype=np.float32))
        rp = 2.0 * (k / m) - 1.0
        # keras.backend.log / clip of both Keras generations are these TensorFlow ops
        u_law = t.sign(rp) * t.math.log(1 + q.u * t.abs(rp)) / t.math.log(1 + q.u)
        levels = m_i * t.clip_by_value(u_law, -1.0 + (1.0 * q.symmetric) / m, 1.0 - 1.0 / m)
        table = tuple(float(v) for v in np.unique(levels.numpy().astype(np.float32)))
        return LookupTable(bits=int(q.bits), table=table)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        table = np.asarray(fmt.table, np.float32)
        codes = np.searchsorted(table, values).clip(0, len(table) - 1)
        return Encoding(fmt, codes.astype(np.int64), np.ones((), np.float32))

    def bounds(self, q: Any) -> Bounds | None:
        m, m_i = 2.0 ** (q.bits - 1), 2.0**q.integer
        return (m_i * (-1.0 + float(bool(q.symmetric)) / m), m_i * (1.0 - 1.0 / m))

    def rounding(self, q: Any) -> Rounding:
        return Rounding.HALF_EVEN
