"""qextract's ohwi export equals the weight tensors TFLite's own converter writes."""

from __future__ import annotations

import numpy as np
import pytest

import qextract
from qextract import _keras
from qextract._keras import tf
from qextract.exporting.exporter import export


@pytest.fixture(scope="module")
def converted():
    t = tf()
    keras = _keras.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=3, padding="same", name="dw")(x)
    x = keras.layers.Conv2DTranspose(5, (3, 2), strides=2, padding="same", name="tconv")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(7, name="fc")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    flat = t.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = t.lite.Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    tensors = []
    for d in interpreter.get_tensor_details():
        try:
            tensors.append(interpreter.get_tensor(d["index"]))
        except ValueError:  # intermediate tensors have no data
            continue
    return model, [a for a in tensors if a.dtype == np.float32]


@pytest.mark.parametrize("key", ["conv/kernel", "dw/depthwise_kernel", "tconv/kernel", "fc/kernel"])
def test_ohwi_export_equals_tflite_weights(tmp_path, converted, key):
    model, tflite_tensors = converted
    result = export(model, tmp_path / "e", layout="ohwi", formats=["npz"])
    with np.load(result.out_dir / "weights.npz") as z:
        ours = z[key]
    same_shape = [a for a in tflite_tensors if a.shape == ours.shape]
    assert same_shape, f"TFLite has no tensor of shape {ours.shape} for {key}"
    assert any(np.array_equal(a, ours) for a in same_shape), f"{key}: no TFLite tensor equals qextract's ohwi export"
    layer, name = key.split("/")
    native = qextract.extract(model)[layer][name].values
    assert ours.shape != native.shape  # the match is not the untouched Keras array
