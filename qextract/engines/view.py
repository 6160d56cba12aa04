"""A stored layer seen through the attributes a Keras layer has, so that the layer registry reads it unchanged.

The registry (:mod:`qextract.layers`) knows, per layer class, which attribute
holds which weight and which quantizer: ``kernel`` is quantized by
``kernel_quantizer_internal`` when ``kernel_quantizer`` is set. QKeras builds
each ``X_internal`` as ``get_quantizer(X)`` from the configuration key ``X``;
:class:`StoredLayerView` answers the same attributes from the file: the weights
(as :class:`NamedArray`, named as Keras names its variables), the configuration
values, and each ``X_internal`` built from ``config[X]`` by
:mod:`qextract.quantizers.standin`, optimized where the registry's binding says
the layer's constructor optimizes it. So the registry stays the one place that
knows a layer class; nothing here names one.
"""

from __future__ import annotations

from functools import cached_property
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..generation import LEGACY, Generation
from ..layers.spec import LayerSpec
from ..quantizers import QUANTIZERS
from ..quantizers.parse import ActivationFunction, parse_quantizer
from ..quantizers.standin import build
from ..reading.stored import StoredLayer
from .folding import StoredBatchnorm, fold

__all__ = ["NamedArray", "StoredLayerView", "quantizer_object"]


class NamedArray:
    """A stored weight with the name Keras gives the variable (``conv1/kernel:0``)."""

    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name = name
        self.array = array

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def quantizer_object(stored: Any, optimized: bool = False, generation: Generation = LEGACY) -> Any:
    """What ``generation``'s ``get_quantizer(stored)`` gives: a quantizer built from its configuration, a named
    float function (:class:`~qextract.quantizers.parse.ActivationFunction`), or None."""
    parsed = parse_quantizer(stored, frozenset(QUANTIZERS), generation)
    if parsed is None or isinstance(parsed, ActivationFunction):
        return parsed
    return build(parsed, optimized, generation)


_FOLDED_QUANTIZERS = frozenset({"kernel_quantizer_internal", "depthwise_quantizer_internal"})
"""A folded layer's kernel quantizer, which its convolution's constructor optimizes (as QConv2D's)."""
_BATCHNORM = ("gamma", "beta", "moving_mean", "moving_variance")


class StoredLayerView:
    """``layer.kernel``, ``layer.use_bias``, ``layer.kernel_quantizer_internal``, ... of a stored layer.

    ``input_shape`` is the shape derived for it (:mod:`.shapes`). Attributes the
    configuration lacks raise AttributeError, so ``getattr(view, name, None)`` is None
    as for a Keras layer without them.
    """

    def __init__(
        self,
        layer: StoredLayer,
        spec: LayerSpec,
        input_shape: tuple[Any, ...] | None,
        generation: Generation = LEGACY,
    ) -> None:
        self._layer = layer
        self._generation = generation
        self._optimized = {b.quantizer for b in spec.bindings if b.optimized and b.quantizer}
        if spec.twin is not None and spec.twin.folded_batchnorm:
            self._optimized |= _FOLDED_QUANTIZERS
        self.name = layer.name
        self.input_shape = input_shape

    @property
    def _inbound_nodes(self) -> list[Any]:
        """The layer's one call, as Keras 3 keeps it (``generation().input_shape(layer)`` reads it there)."""
        if self.input_shape is None:
            return []
        return [SimpleNamespace(input_tensors=[SimpleNamespace(shape=tuple(self.input_shape))])]

    @cached_property
    def batchnorm(self) -> StoredBatchnorm:
        """A folded layer's batch norm: its settings from the layer's configuration, statistics from its weights
        (stored under the sub-layer's name: ``batch_normalization/gamma``)."""
        config = self._layer.config
        found: dict[str, NamedArray | None] = dict.fromkeys(_BATCHNORM)
        for named, key in zip(self.weights, self._layer.weights):
            head, _, last = key.rpartition("/")
            if head and last in found:
                found[last] = named
        return StoredBatchnorm(
            bool(config.get("center", True)), bool(config.get("scale", True)), float(config.get("epsilon", 1e-3)),
            found["gamma"], found["beta"], found["moving_mean"], found["moving_variance"],
        )  # fmt: skip

    def get_folded_weights(self) -> list[Any]:
        """A folded layer's ``get_folded_weights()``, computed as the file's generation computes it."""
        depthwise = "depthwise_kernel" in self._layer.weights
        kernel = self._layer.weights["depthwise_kernel" if depthwise else "kernel"]
        bias = self._layer.weights.get("bias") if self._layer.config.get("use_bias", True) else None
        return list(fold(self._generation, kernel, bias, self.batchnorm, depthwise))

    @cached_property
    def weights(self) -> list[NamedArray]:
        """Every stored weight, in Keras's order (``layer.weights``)."""
        arrays = list(self._layer.weights.values())
        return [NamedArray(full, a) for full, a in zip(self._layer.full_names, arrays)]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        layer = self._layer
        if attr in layer.weights:
            index = list(layer.weights).index(attr)
            return self.weights[index]
        config = layer.config
        if attr.endswith("_internal"):
            key = attr[: -len("_internal")]
            if key not in config:
                raise AttributeError(attr)
            value = quantizer_object(config[key], attr in self._optimized, self._generation)
        elif attr == "quantizer" and "activation" in config:  # QActivation: quantizer = get_quantizer(activation)
            value = quantizer_object(config["activation"], False, self._generation)
        elif attr == "activation" and attr in config:
            value = quantizer_object(config["activation"] or "linear", False, self._generation)
        elif attr in config:
            value = config[attr]
        else:
            raise AttributeError(attr)
        self.__dict__[attr] = value  # built once, like the layer's own attribute
        return value
