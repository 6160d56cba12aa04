"""Signs: ``binary`` (codes -1/+1, or 0/1) and ``ternary`` (codes -1/0/+1), times alpha.

``binary`` is ``sign(x)`` with 0 -> +1. ``ternary`` is ``sign(x) * (|x| >=
threshold)`` with a fixed threshold (ties go away from zero); with
``alpha="auto"/"auto_po2"`` it is ``clip(round(x / scale), -1, 1)`` with a scale
from the data (``tf.round``: a tie at ``|x| = scale/2`` goes to 0). Where
alpha is None QKeras's straight-through estimator passes on ``tanh(x)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, cast

import numpy as np

from ..errors import NeedsQKeras, UnsupportedError
from ..numformat import Binary, Ternary
from ..tensor import along
from .activations import ActivationSpec
from .emulation import (
    EPS,
    F32,
    channel_max,
    log2_rounded,
    po2_scale,
    power_of_two,
    scaling_axes,
    sign,
    ste,
    tanh_ste,
)
from .entry import (
    Encoding,
    Params,
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


def _alpha_text(q: Any) -> str:
    return "alpha=" + (f"'{q.alpha}'" if isinstance(q.alpha, str) else str(q.alpha))


def _fixed_scale(q: Any) -> float:
    """The scale QKeras multiplies by for alpha None (1) or a number; an array alpha is not reproduced."""
    if q.alpha is None or isinstance(q.alpha, str):
        return 1.0
    if isinstance(q.alpha, bool) or not isinstance(q.alpha, (int, float)):
        raise NeedsQKeras(f"alpha {q.alpha!r} is no plain number")
    return float(q.alpha)


def _data_scale(alpha: str, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """QKeras's ``_get_scale(alpha, x, q)`` (per output channel, channels last) for binary and ternary."""
    axes = scaling_axes(None, x.ndim) if x.ndim > 1 else None
    if alpha == "auto_po2":
        return po2_scale(x, q, axes)
    if axes is not None and int(np.prod([x.shape[a] for a in axes])) > 1:
        raise NeedsQKeras(
            "alpha='auto' scales are float32 means used as they are, whose last bits depend on TensorFlow's "
            "summation order"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((x * q).astype(F32) / ((q * q).astype(F32) + EPS)).astype(F32)


@register
class BinaryQuantizer(QuantizerEntry):
    """``binary``: codes -1/+1 (0/1 with ``use_01``) times alpha. Float twin: tanh if alpha is None, else linear."""

    name = "binary"
    params: ClassVar[Params | None] = (("use_01", False), ("alpha", None), ("use_stochastic_rounding", False))
    config_keys = ("use_01", "alpha", "use_stochastic_rounding")

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

    # ------------------------------------------------------------------ NumPy form

    def initialize(self, q: Any) -> None:
        q.bits, q.default_alpha, q.scale = 1, 1.0, None

    def optimize(self, q: Any) -> None:
        if q.alpha is None:
            q.alpha = "auto_po2"

    def text(self, q: Any) -> str:
        flags = []
        if q.use_01:
            flags.append("use_01=" + str(int(q.use_01)))
        if q.alpha is not None:
            flags.append(_alpha_text(q))
        if q.use_stochastic_rounding:
            flags.append("use_stochastic_rounding=" + str(q.use_stochastic_rounding))
        return "binary(" + ",".join(flags) + ")"

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """``binary.__call__``: sign with 0 -> +1, times alpha or a power-of-two scale per channel."""
        if q.use_stochastic_rounding:
            raise NeedsQKeras("binary(use_stochastic_rounding=True) rescales x by its maximum first")
        if isinstance(q.alpha, str) and q.alpha not in ("auto", "auto_po2"):
            raise NeedsQKeras(f"alpha={q.alpha!r}, which QKeras rejects")
        scale: Any = _fixed_scale(q)
        k = sign(x)
        k = k + (F32(1.0) - np.abs(k))
        if q.use_01:
            k = (k + F32(1.0)) / F32(2.0)
        if isinstance(q.alpha, str):
            scale = _data_scale(q.alpha, x, k)
        q.scale = scale
        xq = (np.asarray(scale, F32) * k).astype(F32)
        return tanh_ste(x, xq, q) if q.alpha is None else ste(x, xq, q)


@register
class TernaryQuantizer(QuantizerEntry):
    """``ternary``: codes -1/0/+1 times alpha. Float twin: tanh if alpha is None, else linear."""

    name = "ternary"
    params: ClassVar[Params | None] = (
        ("alpha", None),
        ("threshold", None),
        ("use_stochastic_rounding", False),
        ("number_of_unrolls", 5),
    )
    config_keys = ("alpha", "threshold", "use_stochastic_rounding", "number_of_unrolls")

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

    # ------------------------------------------------------------------ NumPy form

    def initialize(self, q: Any) -> None:
        q.bits, q.default_alpha, q.default_threshold, q.scale = 2, 1.0, 0.33, None

    def optimize(self, q: Any) -> None:
        if q.alpha is None:
            q.alpha = "auto_po2"

    def text(self, q: Any) -> str:
        flags = []
        if q.alpha is not None:
            flags.append(_alpha_text(q))
        if q.threshold is not None:
            flags.append("threshold=" + str(q.threshold))
        if q.use_stochastic_rounding:
            flags.append("use_stochastic_rounding=" + str(int(q.use_stochastic_rounding)))
        if q.number_of_unrolls != 5:
            flags.append("number_of_unrolls=" + str(int(q.number_of_unrolls)))
        return "ternary(" + ",".join(flags) + ")"

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """``ternary.__call__``: a fixed threshold, or the unrolled scale / threshold search of alpha="auto*"."""
        if isinstance(q.alpha, str):
            if q.alpha not in ("auto", "auto_po2") or q.threshold is not None:
                raise NeedsQKeras(f"ternary(alpha={q.alpha!r}, threshold={q.threshold!r}), which QKeras rejects")
        elif q.use_stochastic_rounding or isinstance(q.threshold, str):
            raise NeedsQKeras("ternary with a fixed alpha and stochastic rounding or a string threshold")
        scale: Any = _fixed_scale(q)
        if isinstance(q.alpha, str):
            axes = scaling_axes(None, x.ndim) if x.ndim > 1 else None
            scale = (F32(2.0) * channel_max(x, axes)) / F32(3.0)
            if "po2" in q.alpha:
                scale = power_of_two(log2_rounded((scale + EPS).astype(np.float64), 0.0))
            codes = np.zeros_like(x)
            for _ in range(int(q.number_of_unrolls)):
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = scale * np.rint(x / scale)
                codes = (np.abs(v) >= scale / F32(2.0)).astype(F32) * sign(x)
                scale = _data_scale(q.alpha, x, codes)
        else:
            threshold = q.default_threshold if q.threshold is None else q.threshold
            codes = (np.abs(x) >= F32(threshold)).astype(F32) * sign(x)
        q.scale = scale
        xq = (np.asarray(scale, F32) * codes).astype(F32)
        return tanh_ste(x, xq, q) if q.alpha is None else ste(x, xq, q)
