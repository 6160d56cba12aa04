"""Whole fully quantized networks for the integer simulation: hls4ml-like models, small, seeded.

``NETWORKS`` maps a name to a :class:`Network`: a builder returning a QKeras
model with deterministic weights, the input format its input is put on, and
the data it runs on (1,000+ samples: scikit-learn's digits, or random
features mixed with features cut from the digits). Built like the published
hls4ml QKeras examples:

- the jet-tagging MLP 16-64-32-32-5: QDense + QActivation(quantized_relu), or
  the activation fused into QDense, or QDense + QBatchNormalization +
  QActivation; several widths; alpha=1, ``auto_po2`` and power-of-two kernels;
  binary and ternary layers;
- a CNN: QConv2D + QBatchNormalization + QActivation + MaxPooling2D + Flatten
  + QDense, a folded QConv2DBatchnorm with average pooling, depthwise and
  separable convolutions with global pooling, and a functional residual block
  (Add, Concatenate).

Every network here is meant to be computed exactly by QKeras's float32 too
(power-of-two scales, accumulators below 2**24 LSBs), so that its quantized
outputs must equal the simulation's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import qextract  # noqa: F401  (selects legacy Keras before TensorFlow)
from qextract._keras import keras as _keras_module
from qextract._keras import qkeras
from qextract.analysis.data import digits

Q = qkeras()
keras = _keras_module()


@dataclass(frozen=True)
class Network:
    build: Callable[[], Any]
    input_format: str | None
    data: Callable[[], np.ndarray]


def seeded(model: Any, seed: int, spread: float = 0.5) -> Any:
    """Deterministic weights of a realistic spread; batch-norm statistics that keep activations alive."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        name = w.name
        a = rng.standard_normal(w.shape).astype(np.float32) * spread
        if "moving_variance" in name:
            a = np.abs(a) + 0.5
        elif "gamma" in name:
            a = 1.0 + 0.25 * a
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            a = 0.25 * a
        elif "iteration" in name:
            a = np.zeros(w.shape, np.float32)
        weights.append(a)
    model.set_weights(weights)
    return model


def jet_features(n: int = 1200, seed: int = 7) -> np.ndarray:
    """16 features per sample: random normal ones and ones cut from the digits (1,000+ samples in all)."""
    rng = np.random.default_rng(seed)
    pixels = digits((64,))[:, ::4] * 4.0 - 2.0  # 16 of the 64 pixels, in [-2, 2]
    random = rng.standard_normal((n, 16)).astype(np.float32) * 1.5
    return np.concatenate([random, pixels]).astype(np.float32)


def images() -> np.ndarray:
    return digits((8, 8, 1))


def _mlp(name: str, hidden: Callable[[Any, int, str], Any], out: Callable[[Any], Any], seed: int) -> Callable[[], Any]:
    def build() -> Any:
        inp = keras.Input((16,), name="inputs")
        x = inp
        for i, units in enumerate((64, 32, 32), 1):
            x = hidden(x, units, f"{i}")
        outputs = keras.layers.Activation("softmax", name="softmax")(out(x))
        return seeded(keras.Model(inp, outputs, name=name), seed)

    return build


def _jet_separate(bits: int, integer: int, relu: str) -> Callable[[Any, int, str], Any]:
    def layer(x: Any, units: int, i: str) -> Any:
        qb = f"quantized_bits({bits},{integer},alpha=1)"
        x = Q.QDense(units, kernel_quantizer=qb, bias_quantizer=qb, name=f"fc{i}")(x)
        return Q.QActivation(relu, name=f"relu{i}")(x)

    return layer


def _jet_out(bits: int, integer: int, kernel: str | None = None) -> Callable[[Any], Any]:
    qb = f"quantized_bits({bits},{integer},alpha=1)"
    return lambda x: Q.QDense(5, kernel_quantizer=kernel or qb, bias_quantizer=qb, name="output")(x)


def _jet_fused(x: Any, units: int, i: str) -> Any:
    return Q.QDense(
        units,
        kernel_quantizer=Q.quantized_bits(8, 0, alpha="auto_po2"),
        bias_quantizer="quantized_bits(8,3)",
        activation="quantized_relu(8,3)",
        name=f"fc{i}",
    )(x)


def _jet_bn(x: Any, units: int, i: str) -> Any:
    x = Q.QDense(
        units,
        kernel_quantizer="quantized_bits(4,0,alpha=1)",
        bias_quantizer="quantized_bits(4,0,alpha=1)",
        name=f"fc{i}",
    )(x)
    x = Q.QBatchNormalization(name=f"bn{i}")(x)
    return Q.QActivation("quantized_relu(4,2)", name=f"relu{i}")(x)


def _jet_signs(x: Any, units: int, i: str) -> Any:
    """Ternary and binary kernels (alpha=1), binary and quantized_bits activations."""
    if i == "1":
        x = Q.QDense(
            units, kernel_quantizer="ternary(alpha=1)", bias_quantizer="quantized_bits(6,2,alpha=1)", name="fc1"
        )(x)
        return Q.QActivation("quantized_bits(4,1,1,alpha=1)", name="act1")(x)
    if i == "2":
        x = Q.QDense(units, kernel_quantizer="binary(alpha=1)", use_bias=False, name="fc2")(x)
        return Q.QActivation("binary(alpha=1)", name="act2")(x)
    x = Q.QDense(
        units, kernel_quantizer="quantized_po2(4,1)", bias_quantizer="quantized_bits(8,3,alpha=1)", name="fc3"
    )(x)
    return Q.QActivation("quantized_relu(3,1)", name="act3")(x)


def _cnn_bn() -> Any:
    inp = keras.Input((8, 8, 1), name="image")
    x = Q.QConv2D(
        8,
        3,
        padding="same",
        kernel_quantizer="quantized_bits(6,0,alpha=1)",
        bias_quantizer="quantized_bits(6,0,alpha=1)",
        name="conv1",
    )(inp)
    x = Q.QBatchNormalization(name="bn1")(x)
    x = Q.QActivation("quantized_relu(6,2)", name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = Q.QConv2D(
        16,
        3,
        kernel_quantizer="quantized_bits(4,0,alpha=1)",
        bias_quantizer="quantized_bits(4,0,alpha=1)",
        name="conv2",
    )(x)
    x = Q.QActivation("quantized_relu(4,2)", name="relu2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = Q.QDense(
        10, kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,0,alpha=1)", name="dense"
    )(x)
    return seeded(keras.Model(inp, keras.layers.Activation("softmax", name="softmax")(x), name="cnn_bn"), 11)


def _cnn_folded() -> Any:
    inp = keras.Input((8, 8, 1), name="image")
    x = Q.QConv2DBatchnorm(
        8,
        3,
        padding="same",
        kernel_quantizer=Q.quantized_bits(8, 0, alpha="auto_po2"),
        bias_quantizer="quantized_bits(10,3)",
        name="convbn1",
    )(inp)
    x = Q.QActivation("quantized_relu(5,2)", name="relu1")(x)
    x = keras.layers.AveragePooling2D(2, name="avg1")(x)
    x = Q.QConv2D(
        8,
        3,
        strides=2,
        padding="same",
        kernel_quantizer="quantized_bits(6,0,1,alpha=1)",
        bias_quantizer="quantized_bits(8,2)",
        activation="quantized_relu(6,2)",
        name="conv2",
    )(x)
    x = Q.QAveragePooling2D(
        2, average_quantizer="quantized_bits(8,0,1)", activation="quantized_relu(6,2)", name="qavg2"
    )(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = Q.QDense(10, kernel_quantizer="quantized_po2(5,1)", bias_quantizer="quantized_bits(8,3)", name="dense")(x)
    return seeded(keras.Model(inp, x, name="cnn_folded"), 12)


def _cnn_separable() -> Any:
    inp = keras.Input((8, 8, 1), name="image")
    x = Q.QActivation("quantized_bits(6,0,alpha=1)", name="quant_input")(inp)
    x = Q.QConv2D(4, 3, padding="same", kernel_quantizer="quantized_bits(6,0,alpha=1)", use_bias=False, name="conv1")(x)
    x = Q.QActivation("quantized_relu(5,2)", name="relu1")(x)
    x = Q.QDepthwiseConv2D(
        3,
        depth_multiplier=2,
        strides=2,
        padding="same",
        depthwise_quantizer="quantized_bits(6,0,alpha=1)",
        bias_quantizer="quantized_bits(8,3)",
        activation="quantized_relu(6,2)",
        name="dw2",
    )(x)
    x = Q.QSeparableConv2D(
        8,
        3,
        padding="same",
        depthwise_quantizer=Q.quantized_bits(6, 0, alpha="auto_po2"),
        pointwise_quantizer="quantized_bits(6,0,1,alpha=1)",
        bias_quantizer="quantized_bits(8,3)",
        name="sep3",
    )(x)
    x = Q.QActivation("quantized_relu(6,2)", name="relu3")(x)
    x = Q.QGlobalAveragePooling2D(average_quantizer="quantized_bits(8,0,1)", name="gap")(x)
    x = Q.QDense(
        10, kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,0,alpha=1)", name="dense"
    )(x)
    return seeded(keras.Model(inp, x, name="cnn_separable"), 13)


def _residual() -> Any:
    inp = keras.Input((8, 8, 1), name="image")
    a = Q.QConv2D(
        4,
        3,
        padding="same",
        kernel_quantizer="quantized_bits(6,0,alpha=1)",
        bias_quantizer="quantized_bits(6,0,alpha=1)",
        name="conv_a",
    )(inp)
    a = Q.QActivation("quantized_relu(6,2)", name="relu_a")(a)
    b = Q.QConv2D(4, 1, kernel_quantizer="quantized_bits(4,1,alpha=1)", use_bias=False, name="conv_b")(a)
    b = Q.QActivation("quantized_bits(6,2,alpha=1)", name="act_b")(b)
    s = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Concatenate(name="concat")([s, a])
    c = Q.QActivation("quantized_relu(6,2)", name="relu_c")(c)
    c = keras.layers.GlobalMaxPooling2D(name="gmax")(c)
    c = keras.layers.Dropout(0.25, name="drop")(c)
    out = Q.QDense(
        10, kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,0,alpha=1)", name="dense"
    )(c)
    return seeded(keras.Model(inp, out, name="residual"), 14)


def _sequential_mlp() -> Any:
    return seeded(
        keras.Sequential(
            [
                keras.Input((16,)),
                Q.QActivation("quantized_bits(8,2,alpha=1)", name="quant_input"),
                Q.QDense(
                    32,
                    kernel_quantizer="quantized_bits(5,0,alpha=1)",
                    bias_quantizer="quantized_bits(5,0,alpha=1)",
                    name="fc1",
                ),
                keras.layers.ReLU(name="relu1"),
                Q.QActivation("quantized_bits(6,2,0,alpha=1)", name="act1"),
                Q.QDense(
                    5, kernel_quantizer="quantized_bits(5,0,alpha=1)", name="fc2", activation="quantized_relu(8,3)"
                ),
            ],
            name="sequential_mlp",
        ),
        15,
    )


NETWORKS: dict[str, Network] = {
    "jet_mlp_6bit": Network(
        _mlp("jet_mlp_6bit", _jet_separate(6, 0, "quantized_relu(6)"), _jet_out(6, 0), 1),
        "ap_fixed<10,4>",
        jet_features,
    ),
    "jet_mlp_fused_8bit": Network(
        _mlp("jet_mlp_fused_8bit", _jet_fused, _jet_out(8, 3, "quantized_bits(8,0,alpha='auto_po2')"), 2),
        "ap_fixed<8,3>",
        jet_features,
    ),
    "jet_mlp_4bit_bn": Network(
        _mlp("jet_mlp_4bit_bn", _jet_bn, _jet_out(4, 0), 3), "ap_fixed<10,4,AP_RND_CONV,AP_SAT>", jet_features
    ),
    "jet_mlp_signs": Network(
        _mlp("jet_mlp_signs", _jet_signs, _jet_out(6, 2), 4), "quantized_bits(8,2,alpha=1)", jet_features
    ),
    "cnn_bn": Network(_cnn_bn, "ap_ufixed<8,1>", images),
    "cnn_folded": Network(_cnn_folded, "ap_fixed<6,2>", images),
    "cnn_separable": Network(_cnn_separable, None, images),
    "residual": Network(_residual, "ap_ufixed<5,1>", images),
    "sequential_mlp": Network(_sequential_mlp, None, jet_features),
}
"""Every network the simulation is proven on (the bundled example besides)."""
