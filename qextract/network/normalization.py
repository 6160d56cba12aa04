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

qkeras-v3's QBatchNormalization computes ``inv`` itself, as ``1 / sqrt(...)``
(:attr:`~qextract.generation.Generation.batchnorm_divides`), and quantizes it
when given an ``inverse_quantizer``: the constants are computed the same way.
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
    """``(inv, offset)`` as the layer computes them from its quantized tensors (``tf.nn.batch_normalization``'s)."""
    from .._keras import generation, tf

    axis = list(np.atleast_1d(layer.axis))
    rank = len(generation().input_shape(layer))
    if len(axis) != 1 or axis[0] % rank != rank - 1:
        raise UnsupportedError(
            f"{where}: batch norm over axis {layer.axis} (not the channel axis, last) is not simulated"
        )

    def tensor(name: str) -> Any:
        return tf().constant(record.tensors[name].values, tf().float32) if name in record.tensors else None

    if any(c.__name__ in generation().batchnorm_divides for c in type(layer).__mro__):
        return _divided_constants(layer, record)
    mean, variance, gamma, beta = (tensor(n) for n in ("moving_mean", "moving_variance", "gamma", "beta"))
    inv = tf().math.rsqrt(variance + layer.epsilon)
    if gamma is not None:
        inv *= gamma
    offset = beta - mean * inv if beta is not None else -mean * inv
    return np.asarray(inv.numpy(), np.float32), np.asarray(offset.numpy(), np.float32)


def _divided_constants(layer: Any, record: LayerRecord) -> tuple[np.ndarray, np.ndarray]:
    """``(inv, offset)`` of a layer computing ``1 / sqrt(variance + epsilon)`` itself, as its traced graph does.

    Keras's ``predict`` runs the layer in a ``tf.function``, where TensorFlow's graph optimizer rewrites the
    division (an eager call computes another last bit). The constants are therefore computed by the same
    operations, on variables as the layer reads them, in a ``tf.function`` too: the graph the optimizer sees
    is the layer's own.
    """
    from .._keras import tf

    t = tf()
    read = {n: t.Variable(record.tensors[n].values.astype(np.float32)) for n in _STATISTICS if n in record.tensors}
    gamma, beta, epsilon = read.get("gamma"), read.get("beta"), layer.epsilon
    inverse_quantizer = getattr(layer, "inverse_quantizer_internal", None)  # qkeras-v3 may quantize the inverse

    @t.function
    def constants() -> tuple[Any, Any]:
        inv = 1 / t.sqrt(read["moving_variance"] + epsilon)
        if gamma is not None:
            inv *= gamma
        if inverse_quantizer is not None:
            inv = inverse_quantizer(inv)
        offset = beta - read["moving_mean"] * inv if beta is not None else -read["moving_mean"] * inv
        return inv, offset

    inv, offset = constants()
    return np.asarray(inv.numpy(), np.float32), np.asarray(offset.numpy(), np.float32)


_STATISTICS = ("moving_mean", "moving_variance", "gamma", "beta")
