"""The float twin: layer and activation tables, weights, names, user models.

Driven by the registries: every layer entry's ``twin`` must have a case here,
so a new entry cannot go untested (each quantizer's float twin is tested with
its registry entry, in ``test_quantizer_registry.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

import qextract  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.analysis.twin import (
    check_float_model,
    float_model,
)
from qextract.errors import TwinMismatchError, UnsupportedError
from qextract.layers import LAYERS

# Every layer entry's float twin (LayerSpec.twin), as the twin builder reads them.
LAYER_TWINS = {name: spec.twin for name, spec in LAYERS.items() if spec.twin is not None}

tf()
q = qkeras()
keras = _keras.keras()
L = keras.layers

# Quantizers fine enough that quantized and float outputs agree to ~1e-5.
FINE = "quantized_bits(24,6,alpha=1)"
FINE_RELU = "quantized_relu(24,8)"


def _fine(**extra):
    return dict(kernel_quantizer=FINE, bias_quantizer=FINE, **extra)


# QKeras class -> (input shape, factory). Every LAYER_TWINS key needs one.
LAYER_CASES = {
    "QDense": ((6,), lambda: q.QDense(5, activation=FINE_RELU, **_fine())),
    "QConv1D": ((7, 3), lambda: q.QConv1D(4, 3, activation=FINE_RELU, **_fine())),
    "QConv2D": ((6, 6, 2), lambda: q.QConv2D(3, 3, padding="same", strides=2, **_fine())),
    "QConv2DTranspose": ((4, 4, 2), lambda: q.QConv2DTranspose(3, 3, strides=2, **_fine())),
    "QSeparableConv1D": (
        (7, 3),
        lambda: q.QSeparableConv1D(4, 3, depthwise_quantizer=FINE, pointwise_quantizer=FINE, bias_quantizer=FINE),
    ),
    "QSeparableConv2D": (
        (6, 6, 2),
        lambda: q.QSeparableConv2D(
            4, 3, depthwise_quantizer=FINE, pointwise_quantizer=FINE, bias_quantizer=FINE, activation=FINE_RELU
        ),
    ),
    "QDepthwiseConv2D": (
        (6, 6, 2),
        lambda: q.QDepthwiseConv2D(3, depth_multiplier=2, depthwise_quantizer=FINE, bias_quantizer=FINE),
    ),
    "QConv2DBatchnorm": ((6, 6, 2), lambda: q.QConv2DBatchnorm(3, 3, activation=FINE_RELU, **_fine())),
    "QDepthwiseConv2DBatchnorm": (
        (6, 6, 2),
        lambda: q.QDepthwiseConv2DBatchnorm(3, depthwise_quantizer=FINE, bias_quantizer=FINE),
    ),
    "QBatchNormalization": (
        (5, 3),
        lambda: q.QBatchNormalization(
            gamma_quantizer=FINE, beta_quantizer=FINE, mean_quantizer=FINE, variance_quantizer=FINE
        ),
    ),
    "QActivation": ((6,), lambda: q.QActivation("quantized_tanh(24)")),
    "QAdaptiveActivation": (
        (6,),
        # ema_freeze_delay: qkeras-v3 1.2.1 cannot write the configuration without it (test_generations.py)
        lambda: q.QAdaptiveActivation(
            "quantized_relu", total_bits=24, current_step=0, quantization_delay=1, ema_freeze_delay=1000
        ),
    ),
    "QAveragePooling2D": (
        (6, 6, 2),
        lambda: q.QAveragePooling2D(2, average_quantizer=FINE, activation="quantized_sigmoid(24)"),
    ),
    "QGlobalAveragePooling2D": (
        (6, 6, 2),
        lambda: q.QGlobalAveragePooling2D(average_quantizer=FINE, activation=FINE_RELU),
    ),
    "QSimpleRNN": (
        (5, 3),
        lambda: q.QSimpleRNN(4, activation="quantized_tanh(24,use_real_tanh=True)", **_fine(recurrent_quantizer=FINE)),
    ),
    "QLSTM": (
        (5, 3),
        lambda: q.QLSTM(4, activation="quantized_tanh(24)", **_fine(recurrent_quantizer=FINE)),
    ),
    "QGRU": (
        (5, 3),
        lambda: q.QGRU(4, activation="quantized_tanh(24,use_real_tanh=True)", **_fine(recurrent_quantizer=FINE)),
    ),
    "QBidirectional": (
        (5, 3),
        lambda: q.QBidirectional(q.QLSTM(3, activation="quantized_tanh(24)", **_fine(recurrent_quantizer=FINE))),
    ),
}


# Inputs small enough for quantizers whose range is fixed by their own state
# (QAdaptiveActivation starts with 0 integer bits: outputs below 1).
INPUT_SCALE = {"QAdaptiveActivation": 0.3}


def _randomize(model, seed=0):
    """Random raw weights (positive variances) so that every weight matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for w in layer.weights:
            name = w.name.split("/")[-1]
            if name.startswith("iteration"):
                continue
            shape = tuple(w.shape)
            if "variance" in name:
                value = rng.uniform(0.5, 2.0, shape)
            elif "gamma" in name:
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0.0, 0.5, shape)
            w.assign(value.astype(np.float32))


def _single_layer_model(cls_name, seed=0):
    shape, factory = LAYER_CASES[cls_name]
    inp = keras.Input(shape)
    layer = factory()
    model = keras.Model(inp, layer(inp))
    _randomize(model, seed)
    return model


def test_every_layer_twin_has_a_case():
    assert set(LAYER_CASES) == set(LAYER_TWINS)


@pytest.mark.parametrize("cls_name", sorted(LAYER_TWINS))
def test_layer_twin_computes_what_the_layer_approximates(cls_name):
    model = _single_layer_model(cls_name)
    twin = float_model(model)
    scale = INPUT_SCALE.get(cls_name, 1.0)
    x = np.random.default_rng(1).normal(0, scale, (4, *LAYER_CASES[cls_name][0])).astype(np.float32)
    expected = model.predict_on_batch(x)
    got = twin.predict_on_batch(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    rule = LAYER_TWINS[cls_name]
    classes = [type(layer).__name__ for layer in twin.layers if type(layer).__name__ != "InputLayer"]
    assert all(not type(layer).__module__.startswith("qkeras") for layer in twin.layers)
    if cls_name == "QActivation":
        assert classes == ["FloatActivation"]  # quantized_tanh -> hard tanh
    elif cls_name == "QAdaptiveActivation":
        assert classes == ["Activation"]  # quantized_relu -> relu
    else:
        assert classes[0] == rule.keras_class
    if rule.folded_batchnorm:
        assert classes[1] == "BatchNormalization"
    # The layer carrying the quantized layer's name computes its output.
    qname = model.layers[-1].name
    assert twin.layers[-1].name == qname


def test_folded_conv_batchnorm_becomes_conv_batchnorm_activation_with_raw_weights():
    model = _single_layer_model("QConv2DBatchnorm", seed=3)
    qlayer = model.layers[-1]
    twin = float_model(model)
    names = [layer.name for layer in twin.layers[1:]]
    assert names == [f"{qlayer.name}_conv", f"{qlayer.name}_bn", qlayer.name]
    conv, bn, act = twin.layers[1:]
    np.testing.assert_array_equal(conv.kernel.numpy(), qlayer.kernel.numpy())
    np.testing.assert_array_equal(conv.bias.numpy(), qlayer.bias.numpy())
    for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(getattr(bn, attr).numpy(), getattr(qlayer.batchnorm, attr).numpy())
    assert bn.epsilon == qlayer.batchnorm.epsilon
    assert conv.activation is keras.activations.linear
    assert act.activation is keras.activations.relu

    # NumPy reference of conv -> batch norm -> relu from the raw weights.
    x = np.random.default_rng(4).normal(0, 1, (2, 6, 6, 2)).astype(np.float32)
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (N,4,4,C,3,3)
    y = np.einsum("nhwcij,ijco->nhwo", patches, qlayer.kernel.numpy()) + qlayer.bias.numpy()
    b = qlayer.batchnorm
    y = (y - b.moving_mean.numpy()) / np.sqrt(b.moving_variance.numpy() + b.epsilon) * b.gamma.numpy() + b.beta.numpy()
    np.testing.assert_allclose(twin.predict_on_batch(x), np.maximum(y, 0), rtol=1e-5, atol=1e-5)


def test_twin_of_a_sequential_model_is_sequential_and_leaves_the_model_alone():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            q.QConv2D(2, 3, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_relu(4,1)", name="c"),
            L.MaxPooling2D(name="pool"),
            L.Flatten(name="flat"),
            q.QDense(3, kernel_quantizer="quantized_bits(4,0,1)", name="d"),
            q.QActivation("quantized_bits(6,2,1)", name="a"),
        ]
    )
    _randomize(model)
    before = [w.numpy().copy() for w in model.weights]
    twin = float_model(model)
    assert isinstance(twin, keras.Sequential)
    assert [layer.name for layer in twin.layers] == ["c", "pool", "flat", "d", "a"]
    assert [type(layer).__name__ for layer in twin.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Activation",
    ]
    assert twin.get_layer("a").activation is keras.activations.linear
    assert twin.name == f"{model.name}_float"
    assert len(model.layers) == 5
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_quantizer_as_activation_of_a_plain_keras_layer_becomes_float():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(3, activation=q.quantized_relu(4, 1), name="d"),
            L.Activation(q.quantized_tanh(4), name="a"),
        ]
    )
    twin = float_model(model)
    assert twin.get_layer("d").activation is keras.activations.relu
    assert type(twin.get_layer("a").activation).__name__ == "FloatActivation"
    np.testing.assert_array_equal(twin.get_layer("d").kernel.numpy(), model.get_layer("d").kernel.numpy())


def test_twin_config_round_trips():
    model = _single_layer_model("QDense")
    inp = model.input
    x = q.QActivation("quantized_sigmoid(4)", name="sig")(model.output)
    model = keras.Model(inp, x)
    twin = float_model(model)
    again = keras.Model.from_config(twin.get_config())
    again.set_weights(twin.get_weights())
    data = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_array_equal(again.predict_on_batch(data), twin.predict_on_batch(data))


@pytest.mark.parametrize(
    "function, reference",
    [
        ("hard_sigmoid", lambda x: np.clip(0.5 * x + 0.5, 0, 1)),
        ("smooth_sigmoid", lambda x: np.clip(0.1875 * x + 0.5, 0, 1)),
        ("hard_tanh", lambda x: np.clip(x, -1, 1)),
        ("smooth_tanh", lambda x: 2 * np.clip(0.1875 * x + 0.5, 0, 1) - 1),
        ("half_tanh", lambda x: np.tanh(x / 2)),
        ("hard_swish", lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ],
)
def test_float_activation_functions(function, reference):
    from qextract.analysis.twin import float_activation_class

    layer = float_activation_class()(function)
    x = np.linspace(-8, 8, 161).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy(), reference(x), rtol=1e-6, atol=1e-6)


def test_hard_tanh_twin_is_what_quantized_tanh_rounds():
    """At high precision, quantized_tanh approaches its twin (not tanh)."""
    x = np.linspace(-3, 3, 601).astype(np.float32)
    fine = q.quantizers.get_quantizer("quantized_tanh(20)")(x).numpy()
    np.testing.assert_allclose(fine, np.clip(x, -1, 1), atol=2e-6)
    assert np.abs(fine - np.tanh(x)).max() > 0.2


def _user_models():
    inp = keras.Input((6,))
    x = q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_relu(4)", name="d1")(inp)
    x = q.QDense(2, kernel_quantizer="quantized_bits(4,0,1)", name="d2")(x)
    model = keras.Model(inp, x)
    finp = keras.Input((6,))
    y = L.Dense(4, activation="relu", name="d1")(finp)
    y = L.Dense(2, name="d2")(y)
    return model, keras.Model(finp, y)


def test_check_float_model_accepts_matching_model():
    model, fmodel = _user_models()
    check_float_model(model, fmodel)


def test_check_float_model_names_missing_and_mismatched_layers():
    model, _ = _user_models()
    finp = keras.Input((6,))
    y = L.Dense(4, activation="relu", name="dense_one")(finp)
    y = L.Dense(3, name="d2")(y)
    with pytest.raises(TwinMismatchError) as err:
        check_float_model(model, keras.Model(finp, y))
    text = str(err.value)
    assert "no float layer named 'd1' (QDense)" in text
    assert "layer 'd2'" in text and "(None, 2)" in text and "(None, 3)" in text


def test_check_float_model_names_input_mismatch():
    model, _ = _user_models()
    finp = keras.Input((5,))
    y = L.Dense(4, name="d1")(finp)
    y = L.Dense(2, name="d2")(y)
    with pytest.raises(TwinMismatchError, match=r"inputs: quantized model takes \(None, 6\)"):
        check_float_model(model, keras.Model(finp, y))


def test_unsupported_quantizer_names_layer():
    inp = keras.Input((4,))
    out = q.QActivation("quantized_ulaw(8,0)", name="ulaw")(inp)
    with pytest.raises(UnsupportedError, match=r"layer 'ulaw' \(QActivation\).*quantized_ulaw"):
        float_model(keras.Model(inp, out))


def test_subclassed_model_is_unsupported():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = q.QDense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(UnsupportedError, match="subclassed"):
        float_model(sub)
