"""The registry entry: everything qextract knows about one QKeras quantizer class.

One :class:`QuantizerEntry` subclass per quantizer class answers every
question about it, so that supporting a new quantizer is one class in one
place (:mod:`qextract.quantizers` lists the families):

=====================  =======================================================
method                 answers
=====================  =======================================================
``number_format(q)``   the format of the codes, from the configuration alone
``encode(q, values)``  codes and scale reproducing the quantizer's output
``inference(q, x)``    what it computes at inference (a TensorFlow call)
``graph_safe(q)``      may it run as a traced graph, bit for bit
``bounds(q)``          lowest and highest output value (saturation)
``float_twin(q)``      the float activation it approximates
``rounding(q)``        how it rounds ties (:class:`~.rounding.Rounding`)
``requantize(q, ...)`` its output codes from integer accumulator codes
``qonnx(q)``           the QONNX node it becomes as an activation quantizer
``params``             QKeras's constructor, to build it from a configuration
``numpy_call(q, x)``   what it computes, in NumPy (the TensorFlow-free engine)
=====================  =======================================================

The NumPy side (``params``, ``initialize``, ``optimize``, ``text``,
``numpy_call``) lets the engine of :mod:`qextract.engines` quantize a model file
without TensorFlow: :mod:`.standin` builds an object with QKeras's attributes
from the stored configuration, and ``numpy_call`` computes QKeras's float32
result bit for bit, or raises :class:`~qextract.errors.NeedsQKeras` where it
cannot be sure (:mod:`.emulation`). An entry without ``params`` has no NumPy form.

Entries never decide what the layer computes: :func:`~.execution.apply` runs
the quantizer itself, on a copy, and ``encode`` only reads its result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ExactnessError, NeedsQKeras, UnsupportedError
from ..numformat import NumberFormat
from .activations import ActivationSpec
from .rounding import Rounding

Params = tuple[tuple[str, Any], ...]
"""A constructor's parameters with their defaults, in order."""

Bounds = tuple[float | None, float | None]
"""Lowest and highest output value; a side is None where reaching it is not saturation."""


@dataclass(frozen=True)
class Encoding:
    """Codes and scale for one tensor. ``scale`` is () or (C,) along ``scale_axis``.

    ``codes`` may still be integral floats; the caller range-checks and casts them.
    """

    format: NumberFormat
    codes: np.ndarray
    scale: np.ndarray
    scale_axis: int | None = None
    signs: np.ndarray | None = None


@dataclass(frozen=True)
class QonnxQuant:
    """An activation quantizer as one QONNX node, computing exactly what QKeras computes.

    ``op`` is ``"Quant"`` (IntQuant: ``clip(round(x / scale)) * scale`` with
    ``rounding``, zero point 0, ``bits`` wide, ``signed``, ``narrow`` dropping
    the most negative code) or ``"BipolarQuant"`` (``scale`` times +1 where
    ``x >= 0``, else -1). ``alpha``, where not None, is a float multiplication
    after the node: QKeras rounds ``x`` on the unscaled grid and multiplies the
    result by alpha, which one Quant node (rounding ``x / (alpha * step)``) does not.
    """

    op: str
    scale: float
    bits: int = 1
    signed: bool = True
    narrow: bool = False
    rounding: Rounding = Rounding.HALF_EVEN
    alpha: float | None = None


class QuantizerEntry:
    """How qextract handles one QKeras quantizer class; subclasses fill in the methods.

    ``name`` is the QKeras class name the entry is registered under.
    ``stochastic_note`` (stochastic quantizers) is the warning extraction gives.
    """

    name: ClassVar[str] = ""
    stochastic_note: ClassVar[str | None] = None
    params: ClassVar[Params | None] = None
    """QKeras's constructor parameters with their defaults, in order (None: no NumPy form)."""
    config_keys: ClassVar[tuple[str, ...]] = ()
    """The keys of QKeras's ``get_config()``, in order."""

    def number_format(self, q: Any) -> NumberFormat:
        """The format of the codes ``q`` produces, from its configuration alone (activations have no data)."""
        raise NotImplementedError

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        """Codes and scale that reproduce ``values``, the output of ``q`` (already called, so ``q.scale`` is set)."""
        raise NotImplementedError

    def inference(self, q: Any, x: Any) -> Any:
        """What the quantizer computes at inference (``x`` is a tf tensor)."""
        check_qnoise(q)
        return q(x)

    def graph_safe(self, q: Any) -> bool:
        """True where a traced graph gives the same bits as eager calls, whatever order it computes in."""
        return False

    def bounds(self, q: Any) -> Bounds | None:
        """The lowest and highest value ``q`` outputs, from its configuration.

        None where they are unknown or meaningless: data-dependent scales,
        variable integer bits, power-of-two, binary, ternary, stochastic.
        QKeras's own ``min()``/``max()`` are range hints, not output values.
        """
        return None

    def float_twin(self, q: Any) -> ActivationSpec | None:
        """The float activation ``q`` approximates: what QKeras's straight-through estimator passes on.

        A Keras activation name or a serialized activation layer
        (:mod:`~.activations`); None where the quantizer has no float twin.
        """
        return None

    def rounding(self, q: Any) -> Rounding:
        """How ``q`` rounds at inference, ties included (what QKeras really does, not what it says)."""
        raise NotImplementedError(f"{self.name} declares no rounding mode")

    def requantize(self, q: Any, acc: np.ndarray, scale: np.ndarray | float) -> Encoding:
        """The codes ``q`` outputs for the inputs ``acc * scale``, computed in integer arithmetic.

        ``acc`` holds integer codes (an accumulator), ``scale`` their power-of-two
        scale, per tensor or broadcast against ``acc``. Returns the output codes
        (int64, in :meth:`number_format`) and the output scale: the quantizer's
        output is ``codes * scale``, equal to QKeras's wherever ``acc * scale`` is
        exact in float32 (QKeras computes there; this is exact everywhere).

        Raises NotImplementedError where no integer form exists yet (a nonlinear
        function before the rounding), UnsupportedError where none can
        (a scale computed from the data).
        """
        raise NotImplementedError(
            f"integer requantization of {self.name} is not implemented: it applies a function QKeras computes "
            "in float before rounding"
        )

    def initialize(self, q: Any) -> None:
        """What QKeras's constructor derives from its arguments, set on a quantizer built from a configuration."""

    def optimize(self, q: Any) -> None:
        """QKeras's ``_set_trainable_parameter``, which layers call on their weight quantizers (kernel, ...)."""

    def text(self, q: Any) -> str:
        """``str(q)`` as QKeras prints the quantizer (a quantizer built from a configuration has no ``__str__``)."""
        raise NeedsQKeras(f"{self.name} has no NumPy form in qextract")

    def numpy_call(self, q: Any, x: np.ndarray) -> np.ndarray:
        """QKeras's output for float32 ``x`` computed in NumPy, bit for bit; sets ``q.scale`` as QKeras's call does.

        Raises :class:`~qextract.errors.NeedsQKeras` where the float32 result depends
        on something NumPy cannot reproduce (:mod:`.emulation`).
        """
        raise NeedsQKeras(f"{self.name} has no NumPy form in qextract")

    def qonnx(self, q: Any) -> QonnxQuant:
        """The QONNX node ``q`` becomes where it quantizes activations; an UnsupportedError where none is exact.

        Weights need no such answer: their exact values are stored and their
        number format says which node re-quantizes them.
        """
        raise UnsupportedError(
            f"{describe(q)} has no exact QONNX form as an activation: QONNX's Quant and BipolarQuant round x / scale "
            f"on a uniform grid, and {self.name} computes another function of x first. Fix: quantized_relu or "
            "quantized_bits with alpha None or a number, or binary"
        )


# ---------------------------------------------------------------- reading QKeras attributes


def config_int(value: Any) -> int:
    """A QKeras integer attribute, which may be a tf.Variable or a 1-element array."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.size != 1:
        raise UnsupportedError(f"per-element integer bits {arr.tolist()} are not supported")
    return int(arr.reshape(()))


def config_float(value: Any) -> float:
    """A QKeras float attribute, which may be a tf.Variable or a 1-element array."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(np.asarray(value).reshape(()))


def plain_number(value: Any) -> float | None:
    """A plain float from a Python/NumPy scalar; None for tensors, variables, arrays (unknown before a call)."""
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    return None


def qkeras_variables(q: Any) -> bool:
    """True where the quantizer holds tf.Variables (``use_variables``, adaptive integer bits)."""
    return bool(getattr(q, "use_variables", False)) or any(hasattr(v, "assign") for v in vars(q).values())


def describe(q: Any) -> str:
    """``str(q)``, or an equivalent built from its config where QKeras's ``__str__`` fails.

    QKeras 0.9.0's ``quantized_hswish.__str__`` always fails an assertion, and
    ``quantized_bits.__str__`` fails for array alphas. An integer held in a
    variable is shown by its value, as QKeras 0.9 shows it (qkeras-v3 prints
    the variable object).
    """
    integer = getattr(q, "integer", None)
    if hasattr(integer, "numpy"):  # qkeras-v3 prints a variable integer (QAdaptiveActivation's) as the object
        value = np.asarray(integer)
        q = copy.copy(q)
        q.integer = int(value.reshape(-1)[0]) if value.size == 1 else value
    try:
        return str(q)
    except Exception:
        config = q.get_config() if hasattr(q, "get_config") else {}
        args = ",".join(f"{k}={_short(v)}" for k, v in config.items())
        return f"{type(q).__name__}({args})"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return repr(value)


def check_qnoise(q: Any) -> None:
    """An ExactnessError where ``q`` mixes float and quantized values (``qnoise_factor < 1``)."""
    qnf = getattr(q, "qnoise_factor", 1.0)
    qnf = config_float(qnf) if qnf is not None else 1.0
    if qnf != 1.0:
        raise ExactnessError(
            f"{describe(q)} has qnoise_factor={qnf:g} < 1: its output mixes float and quantized values, "
            "which lie on no integer grid. Fix: set qnoise_factor=1.0 (the value after "
            "quantization-aware training has finished) before extracting."
        )


def activation_alpha(q: Any) -> float | None:
    """The alpha an activation quantizer multiplies its grid value by: None for alpha None, else a power of two.

    QKeras returns ``x + (alpha * q - x)`` (its straight-through form), which
    float32 rounds unless ``alpha * q`` has few significant bits: with
    ``ternary(alpha=0.6)`` an input of -12 comes out as -0.6000004, no multiple
    of alpha. A power of two keeps the sum exact (for ``|x|`` below
    ``2**24 * alpha``), so only those are written as QONNX nodes.
    """
    if isinstance(q.alpha, str):
        raise data_scale_refused(q)
    if q.alpha is None:
        return None
    alpha = np.asarray(q.alpha, np.float64)
    if alpha.size != 1:
        raise UnsupportedError(f"{describe(q)} has an array alpha {alpha.shape}: one QONNX node takes one alpha")
    a = float(alpha.reshape(()))
    mantissa, _ = np.frexp(a)
    if not (a > 0 and mantissa == 0.5):
        raise UnsupportedError(
            f"{describe(q)} has no exact QONNX form: QKeras returns x + (alpha * q - x), which float32 rounds off "
            f"the grid for alpha={a:g} (not a power of two), so its outputs are no multiples of alpha. "
            "Fix: a power-of-two alpha"
        )
    return a


def data_scale_refused(q: Any) -> UnsupportedError:
    """The error for requantizing a quantizer whose scale comes from the data (``alpha="auto"``)."""
    return UnsupportedError(
        f"{describe(q)} computes its scale from the data on every call (alpha='{q.alpha}'), so its codes "
        "cannot be requantized from the configuration. Fix: a fixed alpha (None or a number)"
    )
