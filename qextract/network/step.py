"""One layer of the simulated network: what it computes from its inputs, and how far QKeras's float32 may stray.

Each supported layer becomes a :class:`Step` (built by :mod:`.plan`). A step
runs on :class:`~.signal.Signal` inputs and returns an :class:`Output`: the
layer's output, its value before its activation (for layers that fuse one),
the accumulator range it saw and the *cause* that could make TensorFlow's
float32 arithmetic differ from it, if any:

- ``None``: QKeras's float32 computes this layer exactly (power-of-two scales,
  every partial sum below 2**24 least significant bits): any difference is a bug;
- ``"float32_accumulator"``: sums reach 2**24 LSBs, where float32 rounds;
- ``"float32_scale"``: a scale that is not a power of two (a float alpha, a batch
  norm, an average over a non-power-of-two area): float32 rounds every product;
- ``"float_input"``: the layer computes in floats (its input is on no grid, or it
  is a float function such as softmax), the simulation in float64.

:meth:`Step.error_bound` bounds, element by element, how far QKeras's float32
pre-activation value can lie from the simulation's: the comparison accepts a
difference only within it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..quantizers import describe, is_quantizer
from .quantize import quantize
from .result import AccumulatorRange
from .signal import Signal

U32 = 2.0**-24
"""Unit roundoff of float32."""

CAUSES = ("float32_accumulator", "float32_scale", "float_input")


@dataclass
class Output:
    """What a step produced for one batch (see the module docstring for ``cause``)."""

    signal: Signal
    pre: Signal | None = None
    accumulator: AccumulatorRange | None = None
    cause: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Step:
    """A layer: ``name``, Keras class, the names of the layers feeding it, and its activation (if it fuses one)."""

    name: str
    class_name: str
    inbound: tuple[str, ...]
    activation: Any = None
    notes: tuple[str, ...] = field(default=(), repr=False)

    @property
    def where(self) -> str:
        return f"layer '{self.name}' ({self.class_name})"

    def run(self, inputs: list[Signal]) -> Output:
        raise NotImplementedError

    def error_bound(self, inputs: list[Signal], pre: Signal) -> np.ndarray:
        """How far QKeras's float32 value before the activation may lie from ``pre`` (0: exact)."""
        return np.zeros(pre.shape)

    @property
    def quantizer(self) -> Any:
        """The activation quantizer whose codes this layer outputs, or None."""
        return self.activation if self.activation is not None and is_quantizer(self.activation) else None

    def activate(self, pre: Signal) -> Signal:
        """The layer's activation applied to ``pre``."""
        return activate(self.activation, pre, self.where)


# ------------------------------------------------------------------------------- activations

_EXACT = ("linear", "relu")


def activation_name(fn: Any) -> str | None:
    """The Keras name of an activation function (None for no activation)."""
    if fn is None:
        return None
    return getattr(fn, "__name__", None) or type(fn).__name__


def activate(fn: Any, pre: Signal, where: str) -> Signal:
    """A quantizer through the registry; ``linear``/``relu`` exactly on codes; other Keras functions in float64."""
    if fn is None:
        return pre
    if is_quantizer(fn):
        return quantize(fn, pre, where)
    name = activation_name(fn)
    if name == "linear":
        return pre
    if name == "relu":
        if pre.codes is not None:
            return Signal(np.maximum(pre.codes, 0), pre.scale, None, pre.format, True)
        return Signal(None, pre.scale, np.maximum(pre.values, 0.0), None, False)
    function = float_function(name)
    if function is not None:
        return Signal.of_floats(function(pre.values))
    raise UnsupportedError(
        f"{where}: activation '{name}' cannot be simulated; supported: a QKeras quantizer with an integer form, "
        f"{', '.join(sorted({*_EXACT, *_FLOAT_FUNCTIONS, 'hard_sigmoid'}))}"
    )


def float_function(name: str | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The NumPy form of Keras float activation ``name`` as the installed Keras computes it (None: not one).

    A function the two Kerases compute differently under one name (``hard_sigmoid``) is the generation's.
    """
    from .._keras import generation
    from ..verification.reference_activations import FLOAT

    key = generation().keras_activations.get(str(name))
    return FLOAT[key] if key is not None else _FLOAT_FUNCTIONS.get(str(name))


def is_float_function(fn: Any) -> bool:
    """True for an activation the simulation computes in float64 (softmax, sigmoid, ...)."""
    return fn is not None and not is_quantizer(fn) and float_function(activation_name(fn)) is not None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_FLOAT_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": _softmax,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "exponential": np.exp,
}
"""Keras float activations both generations compute alike (``hard_sigmoid``: :func:`float_function`)."""

FLOAT_FUNCTION_TOLERANCE = 2.0**-20
"""Relative tolerance between TensorFlow's float32 and NumPy's float64 for a float activation (softmax, ...)."""


def check_activation(fn: Any, where: str) -> None:
    """Refuse, while the plan is built, an activation no step can compute."""
    if fn is None or is_quantizer(fn):
        return
    name = activation_name(fn)
    if name not in _EXACT and float_function(name) is None:
        raise UnsupportedError(f"{where}: activation '{name}' cannot be simulated")


def quantizer_text(fn: Any) -> str:
    """A quantizer's description, an activation's name, or "-" for none."""
    if fn is None or activation_name(fn) == "linear":
        return "-"
    return describe(fn) if is_quantizer(fn) else str(activation_name(fn))
