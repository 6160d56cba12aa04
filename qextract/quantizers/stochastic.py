"""Stochastic quantizers: ``stochastic_binary``, ``stochastic_ternary`` and ``bernoulli``.

They draw random values during training; qextract uses their deterministic
inference value and says so in a warning and the tensor's notes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import UnsupportedError
from ..numformat import Binary
from .activations import ActivationSpec
from .entry import Params, QonnxQuant
from .registry import register
from .sign import BinaryQuantizer, TernaryQuantizer

_STOCHASTIC = "{name} draws random values during training; qextract uses its deterministic inference value ({rule})."


def _no_qonnx(name: str) -> UnsupportedError:
    return UnsupportedError(
        f"{name} samples at random, so no QONNX node computes it; refused rather than exported as its deterministic "
        "form. Fix: binary or ternary in the model you export"
    )


@register
class StochasticBinary(BinaryQuantizer):
    """``stochastic_binary`` at inference: ``binary``'s sign."""

    name = "stochastic_binary"
    params: ClassVar[Params | None] = None  # random at training; no NumPy form
    stochastic_note = _STOCHASTIC.format(name=name, rule="binary's sign, as at inference")

    def qonnx(self, q: Any) -> QonnxQuant:
        raise _no_qonnx(self.name)


@register
class StochasticTernary(TernaryQuantizer):
    """``stochastic_ternary`` at inference: ``ternary``'s threshold."""

    name = "stochastic_ternary"
    params: ClassVar[Params | None] = None  # random at training; no NumPy form
    stochastic_note = _STOCHASTIC.format(name=name, rule="ternary's threshold, as at inference")

    def qonnx(self, q: Any) -> QonnxQuant:
        raise _no_qonnx(self.name)


@register
class Bernoulli(BinaryQuantizer):
    """``bernoulli`` samples at random on every call, training or not.

    Its deterministic inference value, used here, is the quantizer's own
    non-stochastic branch: ``scale * (x >= 0)``, codes 0/1. Float twin: linear.
    """

    name = "bernoulli"
    params: ClassVar[Params | None] = None  # random at training; no NumPy form
    stochastic_note = _STOCHASTIC.format(name=name, rule="scale * (x >= 0), codes 0/1")

    def number_format(self, q: Any) -> Binary:
        return Binary(use_01=True)

    def inference(self, q: Any, x: Any) -> Any:
        from qkeras.quantizers import _get_scale

        from .._keras import tf

        t = tf()
        sign = t.sign(x)
        sign += 1.0 - t.abs(sign)
        q01 = (sign + 1.0) / 2.0
        scale = _get_scale(q.alpha, x, q01)
        q.scale = scale
        return scale * q01

    def float_twin(self, q: Any) -> ActivationSpec | None:
        return "linear"

    def qonnx(self, q: Any) -> QonnxQuant:
        raise _no_qonnx(self.name)
