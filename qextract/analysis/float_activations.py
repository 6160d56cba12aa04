"""The float activations of the twin: what each quantized activation or QKeras function approximates.

The quantizer registry: a quantized activation becomes the float activation
its quantizer's entry names (:func:`qextract.quantizers.float_twin`): what the quantizer
approximates, i.e. the float value QKeras's own straight-through estimator
passes on (``quantized_relu`` -> relu, ``quantized_tanh`` -> hard tanh, ...).
QKeras functions (hard_sigmoid / smooth_sigmoid / hard_tanh / smooth_tanh /
binary_sigmoid / binary_tanh) become their float forms; Keras activations stay.

Activations without a Keras built-in become a :class:`FloatActivation` layer
registered as ``qextract>FloatActivation``, so the twin saves and loads like any
Keras model once :mod:`qextract.analysis.twin` has built one twin (or called
:func:`float_activation_class`).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from .. import _keras
from .._keras import tf
from ..errors import UnsupportedError
from ..quantizers import float_twin, is_quantizer
from ..quantizers.activations import ActivationSpec
from ..quantizers.activations import float_function as _float_fn
from ..quantizers.activations import float_layer as _float_layer

# Keras layers that are nothing but an activation: their input is the pre-activation.
ACTIVATION_LAYERS = frozenset(
    {"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Softmax", "FloatActivation"}
)

_FLOAT_FUNCTIONS = ("hard_sigmoid", "smooth_sigmoid", "hard_tanh", "smooth_tanh", "half_tanh", "hard_swish")


@cache
def float_activation_class() -> type:
    """The ``FloatActivation`` Keras layer, created and registered on first use.

    It computes the float functions QKeras quantizes that Keras lacks:
    ``hard_sigmoid`` ``clip(x/2 + 1/2, 0, 1)``, ``smooth_sigmoid``
    ``clip(0.1875x + 1/2, 0, 1)``, ``hard_tanh`` / ``smooth_tanh``
    ``2*sigmoid - 1`` of those, ``half_tanh`` ``2*sigmoid(x) - 1``, and
    ``hard_swish`` ``x * min(relu(x + shift), upper) / upper``.
    """
    keras = _keras.keras()
    Layer: Any = keras.layers.Layer  # known only once TensorFlow is loaded

    @keras.utils.register_keras_serializable(package="qextract")
    class FloatActivation(Layer):
        """A float activation QKeras approximates and Keras has no built-in for."""

        def __init__(self, function: str, relu_shift: float = 3.0, relu_upper_bound: float = 6.0, **kwargs: Any):
            super().__init__(**kwargs)
            if function not in _FLOAT_FUNCTIONS:
                raise ValueError(f"unknown float activation '{function}'; known: {', '.join(_FLOAT_FUNCTIONS)}")
            self.function = function
            self.relu_shift = float(relu_shift)
            self.relu_upper_bound = float(relu_upper_bound)

        def call(self, inputs: Any) -> Any:
            t = tf()
            x = t.convert_to_tensor(inputs)
            if self.function == "hard_sigmoid":
                return t.clip_by_value(0.5 * x + 0.5, 0.0, 1.0)
            if self.function == "smooth_sigmoid":
                return t.clip_by_value(0.1875 * x + 0.5, 0.0, 1.0)
            if self.function == "hard_tanh":
                return 2.0 * t.clip_by_value(0.5 * x + 0.5, 0.0, 1.0) - 1.0
            if self.function == "smooth_tanh":
                return 2.0 * t.clip_by_value(0.1875 * x + 0.5, 0.0, 1.0) - 1.0
            if self.function == "half_tanh":
                return 2.0 * t.sigmoid(x) - 1.0
            relu = t.clip_by_value(x + self.relu_shift, 0.0, self.relu_upper_bound)
            return x * relu / self.relu_upper_bound

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "function": self.function,
                "relu_shift": self.relu_shift,
                "relu_upper_bound": self.relu_upper_bound,
            }

    return FloatActivation


_QKERAS_FUNCTIONS: dict[str, ActivationSpec] = {
    "hard_sigmoid": _float_fn("hard_sigmoid"),
    "binary_sigmoid": _float_fn("hard_sigmoid"),
    "smooth_sigmoid": _float_fn("smooth_sigmoid"),
    "hard_tanh": _float_fn("hard_tanh"),
    "binary_tanh": _float_fn("hard_tanh"),
    "smooth_tanh": _float_fn("smooth_tanh"),
}


def float_activation(activation: Any, where: str = "") -> ActivationSpec:
    """The float activation standing in for ``activation`` (a quantizer, function or None).

    >>> float_activation(quantized_relu(4, 0))        # doctest: +SKIP
    'relu'
    """
    if activation is None:
        return "linear"
    keras = _keras.keras()
    if is_quantizer(activation):
        return float_twin(activation, where)
    if isinstance(activation, keras.layers.Layer):
        return keras.layers.serialize(activation)
    module = getattr(activation, "__module__", "") or ""
    fn_name = getattr(activation, "__name__", "")
    if module.startswith("qkeras"):
        if fn_name in _QKERAS_FUNCTIONS:
            return copy.deepcopy(_QKERAS_FUNCTIONS[fn_name])
        raise UnsupportedError(f"{where}QKeras function '{fn_name}' has no float twin; pass your own float model")
    try:
        spec = keras.activations.serialize(activation)
    except Exception as exc:  # Keras raises ValueError or TypeError here
        raise UnsupportedError(f"{where}activation {activation!r} cannot be serialized: {exc}") from None
    return spec


def activation_label(spec: ActivationSpec) -> str:
    """A short readable name for an activation spec, e.g. ``relu`` or ``ReLU(max_value=6.0)``."""
    if isinstance(spec, str):
        return spec
    cfg = spec.get("config", {})
    if spec.get("class_name") == "qextract>FloatActivation":
        return cfg["function"]
    shown = {k: v for k, v in cfg.items() if k in ("max_value", "negative_slope") and v not in (None, 0.0)}
    return f"{spec.get('class_name')}({', '.join(f'{k}={v}' for k, v in shown.items())})"


def activation_layer_entry(spec: ActivationSpec, name: str) -> dict[str, Any]:
    if isinstance(spec, str):
        return _float_layer("Activation", name=name, activation=spec)
    return _float_layer(spec["class_name"], **{**spec["config"], "name": name})
