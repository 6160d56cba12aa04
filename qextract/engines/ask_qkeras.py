"""Asking QKeras for one stored layer: the layer built by Keras from its configuration, given its stored weights.

Where the NumPy forms cannot be sure of a tensor (:class:`~qextract.errors.NeedsQKeras`),
the NumPy engine hands the layer here. Only that layer is built, exactly as
loading the model would build it (deserialized with QKeras's objects, called on
an input of its stored shape, then given the file's weights), and extracted by
the Keras path (:func:`qextract.reading.extraction.extract_layer`'s walk), so its
record is what the whole-model path gives, for a fraction of the cost.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from ..errors import ModelLoadError, NeedsQKeras, UnsupportedError
from ..layers import KERAS_LAYERS, LAYERS
from ..tensor import LayerRecord
from .placement import StoredPlace

__all__ = ["ask_qkeras", "qkeras_installed"]

before_tensorflow: list[Callable[[], None]] = []
"""Called once before this module first imports TensorFlow (the command line silences its start-up)."""


def qkeras_installed() -> bool:
    """True where TensorFlow, tf-keras and QKeras can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tf_keras", "qkeras"))


def ask_qkeras(p: StoredPlace, why: NeedsQKeras) -> LayerRecord:
    """The Keras path's record of the layer at ``p``; ``why`` says what the NumPy engine could not be sure of."""
    from dataclasses import replace

    from .._keras import custom_objects, quiet_keras, tf
    from ..reading.extraction import _extract_placed
    from ..reading.nested import Placed

    layer_class = p.layer.class_name
    if (layer_class not in LAYERS and layer_class not in KERAS_LAYERS) or p.input_shape is None:
        raise UnsupportedError(
            f"layer '{p.key}' ({layer_class}): the NumPy engine cannot compute it ({why}), and qextract builds only "
            "registered layer classes alone. Fix: engine='qkeras' (the whole model loaded by Keras)",
            arguments=("engine",),
        )
    while before_tensorflow:
        before_tensorflow.pop()()
    keras = tf().keras
    with quiet_keras():
        layer = keras.layers.deserialize(
            {"class_name": layer_class, "config": dict(p.layer.config)}, custom_objects=custom_objects()
        )
        inputs = keras.Input(batch_shape=p.input_shape)
        keras.Model(inputs, layer(inputs))  # built and called as in the loaded model
    _set_weights(p, layer)
    record, _ = _extract_placed(Placed(p.key, layer, p.input_shape, p.output_shape))
    if p.flatten is None:
        return record
    return replace(record, config={**record.config, "flatten_input_shape": list(p.flatten)})


def _set_weights(p: StoredPlace, layer: Any) -> None:
    values = list(p.layer.weights.values())
    expected = [tuple(w.shape) for w in layer.weights]
    if expected != [tuple(v.shape) for v in values]:
        raise ModelLoadError(
            f"layer '{p.key}' ({p.layer.class_name}): the file holds weights of shapes "
            f"{[tuple(v.shape) for v in values]}, but the layer built from its configuration has {expected}"
        )
    layer.set_weights(values)
