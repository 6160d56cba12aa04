"""Tensors a layer computes rather than holds: folded kernels, an average's multiplier, plain floats.

These are the ``custom`` readers of layer entries whose tensors are not
simply their weights bound to quantizers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from .spec import TensorSource


def folded(kernel_name: str, quantizer: str) -> Callable[[Any], list[TensorSource]]:
    """Folded conv-batchnorm: the layer quantizes ``get_folded_weights()`` (moving statistics)."""

    def sources(layer: Any) -> list[TensorSource]:
        if not layer.batchnorm.center:
            raise UnsupportedError(
                f"layer '{layer.name}' ({type(layer).__name__}) has center=False: QKeras's own "
                "folding then adds None and fails. Fix: build it with center=True."
            )
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_folded_weights())
        kq = getattr(layer, f"{quantizer}_internal") if getattr(layer, quantizer) is not None else None
        bq = layer.bias_quantizer_internal if layer.bias_quantizer is not None else None
        bn = layer.batchnorm
        # W_fold = gamma * W / sqrt(var + eps); b_fold = gamma * (b - mean) / sqrt(var + eps) + beta
        own_bias = (layer.bias,) if layer.use_bias else ()
        kernel_from = _present(getattr(layer, kernel_name), bn.gamma, bn.moving_variance)
        bias_from = _present(*own_bias, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        return [TensorSource(kernel_name, kernel, kq, kernel_from), TensorSource("bias", bias, bq, bias_from)]

    return sources


def _present(*variables: Any) -> tuple[Any, ...]:
    return tuple(v for v in variables if v is not None)


def average_multiplier(layer: Any) -> list[TensorSource]:
    """QAveragePooling: the layer multiplies the window sum by quantizer(1 / pool_area)."""
    if not layer.average_quantizer:
        return []
    if hasattr(layer, "pool_size"):
        pool = layer.pool_size
        area = pool * pool if isinstance(pool, int) else int(np.prod(pool))
    else:
        from .._keras import generation

        shape = generation().input_shape(layer)
        area = shape[1] * shape[2] if layer.data_format == "channels_last" else shape[2] * shape[3]
    value = np.asarray(1.0 / area, dtype=np.float32)
    return [TensorSource("average_multiplier", value, layer.average_quantizer_internal)]


def plain(layer: Any) -> list[TensorSource]:
    """Unquantized tensors of a plain Keras layer, named by the shortest unique end of their variable names.

    Usually the last part (``kernel``); a layer with two ``kernel`` variables
    in different sub-layers keeps enough of the path to tell them apart.
    """
    from .._keras import generation

    gen = generation()
    variables = list(layer.weights)
    paths = [[*gen.variable_path(v).split("/")[:-1], gen.weight_name(layer, v)] for v in variables]
    names = []
    for path in paths:
        for n in range(1, len(path) + 1):
            tail = path[-n:]
            if n == len(path) or sum(p[-n:] == tail for p in paths) == 1:
                names.append("/".join(tail))
                break
    return [TensorSource(name, np.asarray(v, dtype=np.float32), None, (v,)) for name, v in zip(names, variables)]
