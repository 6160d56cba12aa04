"""NumPy re-implementations of the activations a recurrent cell applies, float and QKeras-quantized.

A recurrent layer's activations are inside its recurrence, so they cannot be
switched off for the comparison as a Dense layer's can: the NumPy reference
(:mod:`qextract.verification.reference`) must apply the very same functions. These are
written from QKeras 0.9.0's and tf-keras's definitions, in float64, without
TensorFlow.

A quantized activation is a step function. A float32 layer and this float64
reference see pre-activations that differ by rounding (about 1e-7
relative), so a value lying within that distance of a step may be rounded to
different levels by the two. :meth:`Activation.near_step` finds such values
so that the comparison can set those samples aside instead of failing on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Fn = Callable[[np.ndarray], np.ndarray]

NEAR_STEP = 1e-6
"""How close (relative to ``1 + |z|``) to a quantization step a pre-activation counts as undecidable.

float32 layers and this float64 reference were seen to differ by about 1e-7 relative in
pre-activations; 1e-6 leaves a margin and sets aside a few samples in a hundred.
"""

__all__ = [
    "FLOAT",
    "Activation",
    "quantized_bits",
    "quantized_relu",
    "quantized_sigmoid",
    "quantized_tanh",
    "sigmoid_of",
]


@dataclass(frozen=True)
class Activation:
    """A NumPy activation; ``stepped`` when it is piecewise constant (quantized)."""

    name: str
    fn: Fn
    stepped: bool = False

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.fn(np.asarray(z, np.float64))

    def near_step(self, z: np.ndarray, rel: float | None = None) -> np.ndarray:
        """True where moving ``z`` by ``rel * (1 + |z|)`` (default :data:`NEAR_STEP`) either way changes the output."""
        rel = NEAR_STEP if rel is None else rel
        if not self.stepped:
            return np.zeros(np.shape(z), bool)
        z = np.asarray(z, np.float64)
        d = rel * (1.0 + np.abs(z))
        return self.fn(z - d) != self.fn(z + d)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _hard_sigmoid_qkeras(z: np.ndarray) -> np.ndarray:
    return np.clip(0.5 * z + 0.5, 0.0, 1.0)


def _smooth_sigmoid(z: np.ndarray) -> np.ndarray:
    return np.clip(0.1875 * z + 0.5, 0.0, 1.0)


_SIGMOIDS: dict[str, Fn] = {"hard": _hard_sigmoid_qkeras, "smooth": _smooth_sigmoid, "real": _sigmoid}


def sigmoid_of(mode: str) -> Fn:
    """QKeras's internal sigmoid (``qkeras.quantizers.set_internal_sigmoid``): "hard" (default), "smooth" or "real"."""
    return _SIGMOIDS[mode]


def _elu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

FLOAT: dict[str, Fn] = {
    "linear": lambda z: z,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda z: np.maximum(z, 0.0),
    "softsign": lambda z: z / (1.0 + np.abs(z)),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "elu": _elu,
    "selu": lambda z: _SELU_SCALE * np.where(z > 0, z, _SELU_ALPHA * np.expm1(np.minimum(z, 0))),
    "swish": lambda z: z * _sigmoid(z),
    "silu": lambda z: z * _sigmoid(z),
    "exponential": np.exp,
    "keras.hard_sigmoid": lambda z: np.clip(0.2 * z + 0.5, 0.0, 1.0),  # tf-keras 2.x: slope 0.2
    "keras3.hard_sigmoid": lambda z: np.clip(z + 3.0, 0.0, 6.0) / 6.0,  # Keras 3: relu6(x + 3) / 6, slope 1/6
    "qkeras.hard_sigmoid": _hard_sigmoid_qkeras,  # QKeras: slope 0.5
    "qkeras.smooth_sigmoid": _smooth_sigmoid,
    "qkeras.hard_tanh": lambda z: 2.0 * _hard_sigmoid_qkeras(z) - 1.0,
    "qkeras.smooth_tanh": lambda z: 2.0 * _smooth_sigmoid(z) - 1.0,
}
"""Float activations by name; QKeras's own functions (which differ from Keras's of the same name) are prefixed."""


def _mix(x: np.ndarray, xq: np.ndarray, qnoise_factor: float) -> np.ndarray:
    """QKeras's ``x + qnoise_factor * (xq - x)``: the quantized value itself when the factor is 1."""
    return xq if qnoise_factor == 1.0 else x + qnoise_factor * (xq - x)


def quantized_tanh(
    bits: int, symmetric: bool = False, use_real_tanh: bool = False, sigmoid: str = "hard"
) -> Activation:
    """``clip(round(p * m) / m, -1 + symmetric/m, 1 - 1/m)``.

    With ``p = tanh(x)`` or ``2 sigmoid(x) - 1`` and ``m = 2**(bits-1)``.
    """
    m = 2.0 ** (bits - 1)
    sig = sigmoid_of(sigmoid)

    def fn(x: np.ndarray) -> np.ndarray:
        p = np.tanh(x) if use_real_tanh else 2.0 * sig(x) - 1.0
        return np.clip(np.round(p * m) / m, -1.0 + float(symmetric) / m, 1.0 - 1.0 / m)

    return Activation(f"quantized_tanh({bits})", fn, stepped=True)


def quantized_sigmoid(
    bits: int, symmetric: bool = False, use_real_sigmoid: bool = False, sigmoid: str = "hard"
) -> Activation:
    """``clip(round(p * m) / m, symmetric/m, 1 - 1/m)`` with ``m = 2**bits``."""
    m = 2.0**bits
    sig = _sigmoid if use_real_sigmoid else sigmoid_of(sigmoid)

    def fn(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(sig(x) * m) / m, float(symmetric) / m, 1.0 - 1.0 / m)

    return Activation(f"quantized_sigmoid({bits})", fn, stepped=True)


def quantized_relu(
    bits: int,
    integer: int = 0,
    use_sigmoid: bool = False,
    negative_slope: float = 0.0,
    relu_upper_bound: float | None = None,
    is_quantized_clip: bool = True,
    qnoise_factor: float = 1.0,
    sigmoid: str = "hard",
) -> Activation:
    """QKeras's ``quantized_relu`` (deterministic rounding), term by term as its ``__call__`` computes it."""
    non_sign = bits - (negative_slope != 0.0)
    m, m_i = 2.0**non_sign, 2.0**integer
    m_f = 2.0 ** (integer - non_sign)
    sig = sigmoid_of(sigmoid)

    def relu(x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0) + negative_slope * np.minimum(x, 0.0)

    def fn(x: np.ndarray) -> np.ndarray:
        if is_quantized_clip:
            x_u = np.where(x <= m_i - m_f, relu(x), m_i - m_f)
        elif relu_upper_bound is not None:
            x_u = np.where(x <= relu_upper_bound, relu(x), relu_upper_bound)
        else:
            x_u = relu(x)
        if use_sigmoid:
            p = sig(x / m_i) * m
            xq = m_i * np.clip(2.0 * (np.round(p) / m) - 1.0, 0.0, 1.0 - 1.0 / m)
            if negative_slope > 0:
                xq = xq + m_i * negative_slope * np.clip(
                    2.0 * (np.round(p * negative_slope) / (negative_slope * m)) - 1.0, -1.0, 0.0
                )
        else:
            p = x * m / m_i
            xq = m_i * np.clip(np.round(p) / m, 0.0, 1.0 - 1.0 / m)
            if negative_slope > 0:
                xq = xq + m_i * negative_slope * np.clip(np.round(p * negative_slope) / (negative_slope * m), -1.0, 0.0)
        if relu_upper_bound and not is_quantized_clip:
            xq = np.where(xq <= relu_upper_bound, xq, relu_upper_bound)
        return _mix(x_u, xq, qnoise_factor)

    return Activation(f"quantized_relu({bits},{integer})", fn, stepped=True)


def quantized_bits(
    bits: int,
    integer: int = 0,
    symmetric: bool = False,
    keep_negative: bool = True,
    alpha: float | None = None,
    qnoise_factor: float = 1.0,
) -> Activation:
    """QKeras's ``quantized_bits`` with a fixed ``alpha`` (None or a number): a data-independent grid."""
    kn = int(bool(keep_negative))
    unsigned = bits - kn
    m, m_i = 2.0**unsigned, 2.0**integer
    scale = 1.0 if alpha is None else float(alpha)

    def fn(x: np.ndarray) -> np.ndarray:
        if unsigned > 0:
            xq = m_i * np.clip(np.round(x * m / m_i), kn * (-m + float(symmetric)), m - 1) / m
        else:
            xq = np.where(x >= 0, 1.0, -1.0) if kn else np.where(x >= 0, 1.0, 0.0)
        return _mix(x, scale * xq, qnoise_factor)

    return Activation(f"quantized_bits({bits},{integer})", fn, stepped=True)
