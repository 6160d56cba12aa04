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
from typing import Any

import numpy as np

from ..layers.spec import LayerSpec
from ..quantizers import QUANTIZERS
from ..quantizers.parse import ActivationFunction, parse_quantizer
from ..quantizers.standin import build
from ..reading.stored import StoredLayer

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


def quantizer_object(stored: Any, optimized: bool = False) -> Any:
    """What QKeras's ``get_quantizer(stored)`` gives: a quantizer built from its configuration, a named
    float function (:class:`~qextract.quantizers.parse.ActivationFunction`), or None."""
    parsed = parse_quantizer(stored, frozenset(QUANTIZERS))
    if parsed is None or isinstance(parsed, ActivationFunction):
        return parsed
    return build(parsed, optimized)


class StoredLayerView:
    """``layer.kernel``, ``layer.use_bias``, ``layer.kernel_quantizer_internal``, ... of a stored layer.

    ``input_shape`` is the shape derived for it (:mod:`.shapes`). Attributes the
    configuration lacks raise AttributeError, so ``getattr(view, name, None)`` is None
    as for a Keras layer without them.
    """

    def __init__(self, layer: StoredLayer, spec: LayerSpec, input_shape: tuple[Any, ...] | None) -> None:
        self._layer = layer
        self._optimized = {b.quantizer for b in spec.bindings if b.optimized and b.quantizer}
        self.name = layer.name
        self.input_shape = input_shape

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
            value = quantizer_object(config[key], attr in self._optimized)
        elif attr == "quantizer" and "activation" in config:  # QActivation: quantizer = get_quantizer(activation)
            value = quantizer_object(config["activation"])
        elif attr == "activation" and attr in config:
            value = quantizer_object(config["activation"] or "linear")
        elif attr in config:
            value = config[attr]
        else:
            raise AttributeError(attr)
        self.__dict__[attr] = value  # built once, like the layer's own attribute
        return value
