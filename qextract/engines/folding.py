"""Folded conv-batchnorm layers (QConv2DBatchnorm, QDepthwiseConv2DBatchnorm) computed as the file's generation folds.

Both generations quantize ``get_folded_weights()``, in the same order of operations::

    inv = <inverse square root>(moving_variance + epsilon)
    inv *= gamma                          (where the layer scales)
    folded_kernel = inv * kernel          (inv reshaped to (C, M) for a depthwise kernel)
    folded_bias = inv * (bias - moving_mean) + beta      (bias = 0 without use_bias)

and differ only in the inverse square root (:attr:`~qextract.generation.Generation.batchnorm_fold`):

- qkeras-v3 (``"reciprocal_sqrt"``): ``1 / keras.ops.sqrt(...)``: a correctly rounded square root and
  division, which NumPy computes alike, so a Keras 3 file's fold needs no TensorFlow;
- QKeras 0.9 (``"rsqrt"``): ``math_ops.rsqrt``, TensorFlow's vectorised approximation, which no
  NumPy expression reproduces. Where TensorFlow is installed (either stack) it is computed with
  TensorFlow's own ops in QKeras 0.9's order, on constants: no QKeras layer is built, so a QKeras
  0.9 file's folded layer is computed as QKeras 0.9 computes it also under the Keras 3 stack.
  Without TensorFlow: :class:`~qextract.errors.NeedsQKeras`, naming rsqrt.

Every other step is one IEEE float32 operation per element (``epsilon``, a Python float, is
rounded to float32 first, as TensorFlow converts it), so NumPy and TensorFlow agree on it; a
subnormal intermediate (which TensorFlow flushes to zero on CPU) is refused.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NeedsQKeras
from ..generation import Generation
from ..quantizers.emulation import no_subnormals

__all__ = ["StoredBatchnorm", "fold", "tensorflow_installed"]

F32 = np.float32
RSQRT_WHY = (
    "QKeras 0.9 folds the batch norm into the weights with TensorFlow's rsqrt, whose vectorised kernel is a "
    "CPU-specific approximation (it differs from 1/sqrt in about 40 % of elements, by up to 3 units in the last "
    "place, on an AVX machine), so the folded weights of a QKeras 0.9 file cannot be reproduced bit for bit "
    "without TensorFlow"
)


@dataclass(frozen=True)
class StoredBatchnorm:
    """A folded layer's batch norm as ``layer.batchnorm`` shows it: settings and its stored statistics."""

    center: bool
    scale: bool
    epsilon: float
    gamma: Any
    beta: Any
    moving_mean: Any
    moving_variance: Any


Arrays = tuple[np.ndarray, np.ndarray]


def fold(generation: Generation, kernel: Any, bias: Any, bn: StoredBatchnorm, depthwise: bool) -> Arrays:
    """``get_folded_weights()`` of a folded layer written by ``generation``: (folded kernel, folded bias).

    ``bias`` is None without ``use_bias``; ``depthwise`` reshapes ``inv`` to the kernel's last two
    axes (C, M), as QKeras does for a depthwise kernel.
    """
    compute = _FOLDS.get(generation.batchnorm_fold)
    if compute is None:
        raise NeedsQKeras(f"a batch-norm fold of kind {generation.batchnorm_fold!r}, which qextract does not compute")
    k = np.asarray(kernel, F32)
    b = None if bias is None else np.asarray(bias, F32)
    gamma = None if bn.gamma is None else np.asarray(bn.gamma, F32)
    if bn.beta is None:
        raise NeedsQKeras("a folded layer without beta (center=False), whose fold QKeras itself cannot compute")
    beta, mean, variance = (np.asarray(a, F32) for a in (bn.beta, bn.moving_mean, bn.moving_variance))
    named = (("the kernel", k), ("the bias", b), ("gamma", gamma), ("beta", beta), ("the moving mean", mean),
             ("the moving variance", variance))  # fmt: skip
    for what, a in named:
        if a is not None:
            no_subnormals(a, what)
    shape = (int(k.shape[2]), int(k.shape[3])) if depthwise else None
    kernel_f, bias_f = compute(k, b, gamma, beta, mean, variance, F32(bn.epsilon), shape)
    no_subnormals(kernel_f, "the folded kernel")
    no_subnormals(bias_f, "the folded bias")
    return kernel_f, bias_f


def _numpy_fold(
    k: np.ndarray, b: np.ndarray | None, gamma: np.ndarray | None, beta: np.ndarray, mean: np.ndarray,
    variance: np.ndarray, eps: np.float32, depthwise: tuple[int, int] | None,
) -> Arrays:  # fmt: skip
    """qkeras-v3: ``inv = 1 / sqrt(variance + epsilon)``, every step a correctly rounded float32 operation."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        shifted = (variance + eps).astype(F32)
        no_subnormals(shifted, "variance + epsilon")
        inv = (F32(1.0) / np.sqrt(shifted).astype(F32)).astype(F32)
        no_subnormals(inv, "1 / sqrt(variance + epsilon)")
        if gamma is not None:
            inv = (inv * gamma).astype(F32)
        centred = ((F32(0.0) if b is None else b) - mean).astype(F32)
        bias_f = ((inv * centred).astype(F32) + beta).astype(F32)
        kernel_f = ((inv.reshape(depthwise) if depthwise else inv) * k).astype(F32)
    return kernel_f, bias_f


def _tensorflow_fold(
    k: np.ndarray, b: np.ndarray | None, gamma: np.ndarray | None, beta: np.ndarray, mean: np.ndarray,
    variance: np.ndarray, eps: np.float32, depthwise: tuple[int, int] | None,
) -> Arrays:  # fmt: skip
    """QKeras 0.9: ``inv = math_ops.rsqrt(variance + epsilon)`` with TensorFlow's ops, in QKeras 0.9's order."""
    if not tensorflow_installed():
        raise NeedsQKeras(RSQRT_WHY)
    from .._keras import tf
    from .ask_qkeras import before_tensorflow

    while before_tensorflow:
        before_tensorflow.pop()()
    t = tf()
    c = t.constant
    inv = t.math.rsqrt(c(variance) + c(eps))
    if gamma is not None:
        inv = inv * c(gamma)
    bias_f = inv * ((c(F32(0.0)) if b is None else c(b)) - c(mean)) + c(beta)
    if depthwise is not None:
        inv = t.reshape(inv, list(depthwise))
    kernel_f = inv * c(k)
    return np.asarray(kernel_f.numpy(), F32), np.asarray(bias_f.numpy(), F32)


def tensorflow_installed() -> bool:
    """True where TensorFlow can be imported (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


Fold = Callable[..., Arrays]
_FOLDS: dict[str, Fold] = {"reciprocal_sqrt": _numpy_fold, "rsqrt": _tensorflow_fold}
