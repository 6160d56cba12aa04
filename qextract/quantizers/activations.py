"""Float activations as Keras specs: what a quantizer's float twin is written in.

A spec is a Keras activation name (``"relu"``) or a serialized activation
layer ``{"class_name": ..., "config": {...}}``, so that :mod:`qextract.analysis.twin`
can put it into a model config without TensorFlow being involved here.
Functions Keras lacks become ``qextract>FloatActivation`` layers (defined in
:mod:`qextract.analysis.twin`).
"""

from __future__ import annotations

from typing import Any

ActivationSpec = str | dict[str, Any]
"""A Keras activation name or a serialized activation layer."""


def float_layer(class_name: str, **config: Any) -> dict[str, Any]:
    """A serialized Keras layer: ``{"class_name": class_name, "config": config}``."""
    return {"class_name": class_name, "config": config}


def float_function(function: str, **params: Any) -> dict[str, Any]:
    """A ``FloatActivation`` layer computing ``function`` (hard_sigmoid, hard_swish, ...)."""
    return float_layer("qextract>FloatActivation", function=function, **params)


def relu_spec(max_value: Any = None, negative_slope: Any = 0.0) -> ActivationSpec:
    """``"relu"``, or a ``ReLU`` layer where a ceiling or a negative slope is set."""
    max_value = None if max_value is None else float(max_value)
    negative_slope = float(negative_slope or 0.0)
    if max_value is None and negative_slope == 0.0:
        return "relu"
    return float_layer("ReLU", max_value=max_value, negative_slope=negative_slope, threshold=0.0)


def internal_sigmoid() -> str:
    """Which sigmoid QKeras's quantizers use right now (``set_internal_sigmoid``): "hard", "smooth" or "real"."""
    from .._keras import qkeras

    q = qkeras().quantizers
    if q._sigmoid is q.hard_sigmoid:
        return "hard"
    if q._sigmoid is q.smooth_sigmoid:
        return "smooth"
    return "real"
