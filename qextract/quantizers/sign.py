"""Signs: ``binary`` (codes -1/+1, or 0/1) and ``ternary`` (codes -1/0/+1), times alpha.

``binary`` is ``sign(x)`` with 0 -> +1. ``ternary`` is ``sign(x) * (|x| >=
threshold)`` with a fixed threshold (ties go away from zero); with
``alpha="auto"/"auto_po2"`` it is ``clip(round(x / scale), -1, 1)`` with a scale
from the data (``tf.round``: a tie at ``|x| = scale/2`` goes to 0). Where
alpha is None QKeras's straight-through estimator passes on ``tanh(x)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import numpy as np

from ..errors import UnsupportedError
from ..numformat import Binary, Ternary
from ..tensor import along
from .activations import ActivationSpec
from .entry import (
    Encoding,
    QonnxQuant,
    QuantizerEntry,
    activation_alpha,
    check_qnoise,
    data_scale_refused,
    describe,
)
from .grid import grid_encoding, output_scale
from .registry import register
from .rounding import Rounding, scale_exponents


def alpha_scale(q: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """The configured output scale: 1 for alpha None, else alpha (refused where it comes from the data)."""
    if isinstance(q.alpha, str):
        raise data_scale_refused(q)
    return output_scale(1.0 if q.alpha is None else q.alpha, shape)


def _activation_alpha(q: Any) -> float:
    """The output scale of a sign quantizer on activations: 1 for alpha None, else alpha (a power of two)."""
    alpha = activation_alpha(q)
    return 1.0 if alpha is None else alpha


def _sign_twin(q: Any) -> ActivationSpec:
    return "tanh" if getattr(q, "alpha", None) is None else "linear"


@register
class BinaryQuantizer(QuantizerEntry):
    """``binary``: codes -1/+1 (0/1 with ``use_01``) times alpha. Float twin: tanh if alpha is None, else linear."""

    name = "binary"

    def number_format(self, q: Any) -> Binary:
        return Binary(use_01=bool(getattr(q, "use_01", False)))

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        enc = grid_encoding(self.number_format(q), values, q.scale)
        if cast(Binary, enc.format).use_01:
            return enc
        # A scale of 0 (alpha="auto" on an all-zero channel) makes every code 0 and the grid says 0, which
        # binary has not: the code is +1, what QKeras's own sign gives a zero weight (every weight there is 0).
        zero_scale = np.broadcast_to(along(enc.scale, enc.scale_axis, values.ndim) == 0, values.shape)
        return replace(enc, codes=np.where(zero_scale & (enc.codes == 0), 1.0, enc.codes))

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return _sign_twin(q)

    def rounding(self, q: Any) -> Rounding:
        return Rounding.HALF_POSITIVE  # sign(x) with 0 -> +1

    def qonnx(self, q: Any) -> QonnxQuant:
        """``BipolarQuant`` with scale alpha: +alpha where ``x >= 0``, else -alpha (QKeras's sign with 0 -> +1)."""
        check_qnoise(q)
        scale = _activation_alpha(q)
        if getattr(q, "use_01", False):
            raise UnsupportedError(
                f"{describe(q)} has no exact QONNX form: use_01 outputs 0/1, not BipolarQuant's -1/+1"
            )
        return QonnxQuant("BipolarQuant", scale, rounding=self.rounding(q))

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        check_qnoise(q)
        acc = np.asarray(acc)
        fmt = self.number_format(q)
        codes = np.where(acc >= 0, 1, fmt.code_min).astype(np.int64)
        return Encoding(fmt, codes, *alpha_scale(q, acc.shape))


@register
class TernaryQuantizer(QuantizerEntry):
    """``ternary``: codes -1/0/+1 times alpha. Float twin: tanh if alpha is None, else linear."""

    name = "ternary"

    def number_format(self, q: Any) -> Ternary:
        return Ternary()

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        return grid_encoding(self.number_format(q), values, q.scale)

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return _sign_twin(q)

    def rounding(self, q: Any) -> Rounding:
        if isinstance(q.alpha, str):
            return Rounding.HALF_EVEN  # tf.round(x / scale), then |v| >= scale / 2
        return Rounding.HALF_AWAY  # |x| >= threshold

    def qonnx(self, q: Any) -> QonnxQuant:
        """A 2-bit narrow signed ``Quant`` with scale ``2 * threshold``, rounding half away from zero.

        ``round(x / (2 t))`` is +-1 exactly where ``|x| >= t`` (also after the
        float32 division: 0.5 is a float32 number and division rounds
        monotonically), and the node outputs +-``2 t``: exact where alpha is
        ``2 t``; any other alpha is refused.
        """
        check_qnoise(q)
        alpha = _activation_alpha(q)
        threshold = float(np.float32(q.default_threshold if q.threshold is None else q.threshold))
        if alpha != 2.0 * threshold:
            raise UnsupportedError(
                f"{describe(q)} has no exact QONNX form: its outputs +-{alpha:g} are not +-2 x threshold "
                f"({threshold:g}), the only values a Quant node rounding at that threshold gives. "
                f"Fix: ternary(alpha={alpha:g}, threshold={alpha / 2:g})"
            )
        return QonnxQuant("Quant", 2.0 * threshold, 2, signed=True, narrow=True, rounding=self.rounding(q))

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        check_qnoise(q)
        acc = np.asarray(acc)
        out_scale = alpha_scale(q, acc.shape)
        threshold = q.default_threshold if q.threshold is None else q.threshold
        # QKeras compares float32 |x| with a float32 threshold; |acc| * 2**e is exact in float64.
        magnitude = np.ldexp(np.abs(acc).astype(np.float64), scale_exponents(scale))
        codes = np.sign(acc).astype(np.int64) * (magnitude >= float(np.float32(threshold)))
        return Encoding(self.number_format(q), codes, *out_scale)
