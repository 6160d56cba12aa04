"""Batch normalization as QKeras computes it at inference: float32 ``x * inv + (beta - mean * inv)``.

``inv = rsqrt(variance + epsilon) * gamma`` from the quantized statistics is
computed by TensorFlow itself, once, while the plan is built: its ``rsqrt`` is
an approximation (Eigen's vectorised one is not correctly rounded, and
differs between CPUs), so no NumPy formula reproduces it bit for bit. The
per-element part is emulated in float32, which NumPy rounds as TensorFlow
does. A batch norm's output lies on no grid: the layer is flagged
``exact_integer=False`` and the quantizer after it rounds its float32 values
exactly. A folded QConv2DBatchnorm is not this: it is a convolution
(:mod:`.contraction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..tensor import LayerRecord
from .signal import Signal
from .step import U32, Output, Step


@dataclass
class BatchNorm(Step):
    """``inv`` and ``offset`` are float32 ``(C,)``: the layer's own constants."""

    inv: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))

    def run(self, inputs: list[Signal]) -> Output:
        x = inputs[0].values.astype(np.float32)
        y = (x * self.inv).astype(np.float32) + self.offset
        pre = Signal.of_floats(y.astype(np.float64))
        return Output(self.activate(pre), pre, None, "float32_scale")

    def error_bound(self, inputs: list[Signal], pre: Signal) -> np.ndarray:
        x = np.abs(inputs[0].values)
        return 4 * U32 * (x * np.abs(self.inv.astype(np.float64)) + np.abs(self.offset.astype(np.float64)))


def batchnorm_constants(layer: Any, record: LayerRecord, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(inv, offset)`` as ``tf.nn.batch_normalization`` computes them from the layer's quantized tensors."""
    from .._keras import tf

    axis = list(np.atleast_1d(layer.axis))
    rank = len(layer.input_shape)
    if len(axis) != 1 or axis[0] % rank != rank - 1:
        raise UnsupportedError(
            f"{where}: batch norm over axis {layer.axis} (not the channel axis, last) is not simulated"
        )

    def tensor(name: str) -> Any:
        return tf().constant(record.tensors[name].values, tf().float32) if name in record.tensors else None

    mean, variance, gamma, beta = (tensor(n) for n in ("moving_mean", "moving_variance", "gamma", "beta"))
    inv = tf().math.rsqrt(variance + layer.epsilon)
    if gamma is not None:
        inv *= gamma
    offset = beta - mean * inv if beta is not None else -mean * inv
    return np.asarray(inv.numpy(), np.float32), np.asarray(offset.numpy(), np.float32)
