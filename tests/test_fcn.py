"""fully_convolutional: a Flatten -> Dense head as convolutions (issue 14).

The same on the original size and on every window.
"""

from __future__ import annotations

import numpy as np
import pytest

import qextract
from qextract import _keras
from qextract._keras import qkeras
from qextract.errors import UnsupportedError

keras = _keras.keras()
L = keras.layers
Q = qkeras()

AUTO = "quantized_bits(6,0,1,alpha='auto_po2')"


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        a = rng.standard_normal(w.shape).astype(np.float32) * 0.4
        new.append(np.abs(a) + 0.5 if "variance" in w.name else a)
    model.set_weights(new)
    return model


def qcnn():
    """A QKeras CNN whose trunk pads nothing (total stride 2), with a Flatten -> QDense head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 2))
    x = Q.QConv2D(4, 3, kernel_quantizer=AUTO, bias_quantizer="quantized_bits(8,2)", name="c1")(inp)
    x = Q.QActivation("quantized_relu(6,2)", name="a1")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = Q.QConv2D(5, 2, kernel_quantizer=AUTO, name="c2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.3, name="drop")(x)
    x = Q.QDense(8, kernel_quantizer=AUTO, bias_quantizer="quantized_bits(8,2)", name="fc1")(x)
    x = Q.QActivation("quantized_relu(6,2)", name="a2")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = Q.QDense(3, kernel_quantizer="quantized_po2(5,1)", name="fc2")(x)
    out = L.Softmax(name="soft")(x)
    return _randomize(keras.Model(inp, out), 0)


@pytest.fixture(scope="module")
def converted():
    model = qcnn()
    before = [w.copy() for w in model.get_weights()]
    return model, qextract.fully_convolutional(model), before


def test_original_size_gives_the_original_output(converted):
    model, fcn, before = converted
    x = np.random.default_rng(1).standard_normal((4, 10, 10, 2)).astype(np.float32)
    out = fcn(x).numpy()
    assert out.shape == (4, 1, 1, 3)
    np.testing.assert_allclose(out[:, 0, 0], model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the model is unchanged
    assert "flat" not in [layer.name for layer in fcn.layers] and "flat" in [layer.name for layer in model.layers]


def test_each_output_position_is_the_original_model_on_its_window(converted):
    model, fcn, _ = converted
    x = np.random.default_rng(2).standard_normal((2, 14, 16, 2)).astype(np.float32)
    out = fcn(x).numpy()
    stride = 2  # the trunk's MaxPooling2D
    assert out.shape == (2, 3, 4, 3)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            window = x[:, i * stride : i * stride + 10, j * stride : j * stride + 10]
            np.testing.assert_allclose(out[:, i, j], model(window).numpy(), rtol=1e-5, atol=1e-6)


def test_qdense_becomes_qconv2d_with_the_same_quantizers_and_values(converted):
    model, fcn, _ = converted
    assert type(fcn.get_layer("fc1")).__name__ == "QConv2D" and fcn.get_layer("fc1").kernel_size == (3, 3)
    assert type(fcn.get_layer("fc2")).__name__ == "QConv2D" and fcn.get_layer("fc2").kernel_size == (1, 1)
    old, new = qextract.extract(model), qextract.extract(fcn)
    for name, shape in (("fc1", (3, 3, 5, 8)), ("fc2", (1, 1, 8, 3))):
        for tensor in old[name]:
            converted_tensor = new[name][tensor.name]
            assert converted_tensor.quantizer_str == tensor.quantizer_str
            values = (
                converted_tensor.values
                if tensor.name == "bias"
                else converted_tensor.values.reshape(tensor.values.shape)
            )
            np.testing.assert_array_equal(values, tensor.values)
            np.testing.assert_array_equal(converted_tensor.scale, tensor.scale)  # per-channel: along the output axis
            assert converted_tensor.scale_axis == (
                None if tensor.scale_axis is None else len(converted_tensor.values.shape) - 1
            )
        assert new[name]["kernel"].values.shape == shape
    assert new["fc1"]["kernel"].per_channel  # the auto_po2 scale is per output channel, as in the Dense


def test_no_keras_serialization_chatter():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qextract.fully_convolutional(qcnn())
    assert not [w for w in caught if "serialize()" in str(w.message)]


def test_plain_keras_sequential_model():
    keras.utils.set_random_seed(0)
    model = _randomize(
        keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(3, 3, name="c"), L.Flatten(), L.Dense(4, name="d")]), 1
    )
    fcn = qextract.fully_convolutional(model)
    assert type(fcn.get_layer("d")).__name__ == "Conv2D"
    x = np.random.default_rng(3).standard_normal((2, 9, 7, 1)).astype(np.float32)
    out = fcn(x).numpy()
    assert out.shape == (2, 4, 2, 4)
    np.testing.assert_allclose(out[:, 3, 1], model(x[:, 3:9, 1:7]).numpy(), rtol=1e-5, atol=1e-6)


def _model(*layers, shape=(6, 6, 2)):
    inp = keras.Input(shape)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: _model(L.Conv2D(2, 3), L.GlobalAveragePooling2D(), L.Dense(3)), "exactly one Flatten .* found none"),
        (
            lambda: _model(L.Dense(4, name="mid"), L.Flatten(), L.Dense(3)),
            "Dense layer\\(s\\) 'mid' are not in the Flatten -> Dense head",
        ),
        (lambda: _model(L.Flatten(), L.Reshape((72, 1), name="r"), L.Flatten(), L.Dense(3)), "exactly one Flatten"),
        (
            lambda: _model(L.Flatten(), L.BatchNormalization(name="bn0"), L.Dense(3)),
            "layer 'bn0' \\(BatchNormalization\\) between Flatten and the first Dense",
        ),
        (lambda: _model(L.Flatten(), L.Dense(3), L.Reshape((3, 1), name="r")), "layer 'r' \\(Reshape\\) after Flatten"),
        (lambda: _model(L.Flatten(name="f"), L.Dropout(0.1)), "layer 'f' \\(Flatten\\) feeds no Dense"),
        (lambda: _model(L.Flatten(name="f"), L.Dense(3), shape=(5, 4)), "flattens a tensor of shape \\(5, 4\\)"),
    ],
)
def test_refusals_name_the_layer(build, message):
    with pytest.raises(UnsupportedError, match=message):
        qextract.fully_convolutional(build())


def test_cli_fcn(tmp_path, capsys):
    from qextract.cli import main

    model = qcnn()
    model.save(tmp_path / "m.h5")
    assert main(["fcn", str(tmp_path / "m.h5"), "--out", str(tmp_path / "fcn.h5")]) == 0
    assert "(None, None, None, 2)" in capsys.readouterr().out
    loaded = qextract.load_model(tmp_path / "fcn.h5")
    x = np.random.default_rng(4).standard_normal((1, 10, 10, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy()[:, 0, 0], model(x).numpy(), rtol=1e-5, atol=1e-6)
    keras.Sequential([keras.Input((4,)), L.Dense(2)]).save(tmp_path / "dense.h5")
    assert main(["fcn", str(tmp_path / "dense.h5"), "--out", str(tmp_path / "x.h5")]) == 4
    err = capsys.readouterr().err
    assert "exactly one Flatten" in err and err.count("\n") == 1
