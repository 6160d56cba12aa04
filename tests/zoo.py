"""Small QKeras models, one per supported layer class, with a NumPy recomputation each.

``CASES`` maps a case name to (layer class, builder, reference). The builder
returns a model whose layer named "q" is the layer under test, with weights
set to deterministic non-trivial values; the reference recomputes that
layer's output in NumPy from an :class:`~qextract.LayerRecord` and the
layer's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qextract  # (arranges Keras before TensorFlow)
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.examples import bundled_model
from qextract.verification import reference as R

tf()
Q = qkeras()
keras = _keras.keras()

LEGACY = _keras.generation().legacy_keras
"""True under QKeras 0.9 on tf-keras, False under qkeras-v3 on Keras 3."""
EXAMPLES = Path(qextract.__file__).parent / "examples"
EXAMPLE = bundled_model()
"""The bundled example model as the installed stack reads it (both files hold the same model and weights)."""
legacy_only = pytest.mark.skipif(
    not LEGACY, reason="a QKeras 0.9 / tf-keras file or behaviour; the Keras 3 stack has its own tests"
)

# What qkeras-v3 1.2.1 cannot run at all (QKeras 0.9 runs each): a test of one expects that failure under Keras 3
# (strict: when qkeras-v3 fixes it, the test says so). Listed in the README's differences between the generations.
V3_CANNOT_RUN: dict[str, str] = {
    "array alpha": "quantized_bits with an array alpha fails on every call (it tests alpha != 'auto_po2' as a bool)",
    "causal conv1d": "QConv1D with padding='causal' fails (TensorFlow's convolution is given 'CAUSAL')",
    "channels_first conv1d": "QConv1D with data_format='channels_first' fails (its bias is added channels-last)",
}


def v3_cannot_run(what: str, raises: Any = Exception) -> Any:
    """A mark: under qkeras-v3 the test fails, as :data:`V3_CANNOT_RUN` says it must."""
    return pytest.mark.xfail(not LEGACY, reason=f"qkeras-v3 1.2.1: {V3_CANNOT_RUN[what]}", raises=raises, strict=True)


def quantizer_param(spec: str, *values: Any, **kw: Any) -> Any:
    """A pytest parameter for quantizer ``spec``, expected to fail under qkeras-v3 where it cannot run there."""
    marks = [v3_cannot_run("array alpha")] if "alpha=np." in spec.replace(" ", "") else []
    return pytest.param(*values, marks=marks, **kw) if values else pytest.param(spec, marks=marks, **kw)


def randomize(model: Any, seed: int = 0) -> Any:
    """Overwrite every weight with seeded values of a realistic spread (variances positive)."""
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        name = w.name
        a = rng.standard_normal(w.shape).astype(np.float32) * 0.4
        if "variance" in name:
            a = np.abs(a) + 0.5
        if "gamma" in name:
            a = 1.0 + a * 0.5
        new.append(a)
    model.set_weights(new)
    return model


def named(layer: Any, name: str) -> Any:
    """``layer`` named ``name``: qkeras-v3's recurrent layers hand ``name=`` to their cell and keep a default name."""
    if layer.name != name and getattr(getattr(layer, "cell", None), "name", None) == name:
        layer.name = name
    return layer


def _model(input_shape: tuple[int, ...], layer: Any) -> Any:
    inp = keras.Input(input_shape)
    return keras.Model(inp, named(layer, "q")(inp))


@dataclass(frozen=True)
class Case:
    layer_class: str
    input_shape: tuple[int, ...]
    build: Callable[[], Any]
    reference: Callable[[Any, np.ndarray, Any], np.ndarray]
    # QKeras 0.9.0's own call of a few layers fails on TensorFlow 2.21 (removed TF internals:
    # array_ops.stack, nest.is_sequence). For those the forward pass to compare against is the
    # plain Keras layer of the same configuration, given the extracted values as its weights.
    keras_twin: Callable[[], Any] | None = None


def _t(record: Any, name: str) -> np.ndarray | None:
    return record.tensors[name].values if name in record.tensors else None


def _conv_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    return R.conv(x, _t(rec, "kernel"), _t(rec, "bias"), layer.strides, layer.padding, layer.dilation_rate)


def _dw_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    return R.depthwise(
        x, _t(rec, "depthwise_kernel"), _t(rec, "bias"), layer.strides, layer.padding, layer.dilation_rate
    )


def _sep_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    dw, pw = _t(rec, "depthwise_kernel"), _t(rec, "pointwise_kernel")
    return R.separable(x, dw, pw, _t(rec, "bias"), layer.strides, layer.padding, layer.dilation_rate)


def _bn_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    return R.batchnorm(
        x, _t(rec, "gamma"), _t(rec, "beta"), _t(rec, "moving_mean"), _t(rec, "moving_variance"), layer.epsilon
    )


def _rnn(fn: Callable[..., np.ndarray], prefix: str = "") -> Callable[[Any, np.ndarray, Any], np.ndarray]:
    def ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
        args = (_t(rec, prefix + "kernel"), _t(rec, prefix + "recurrent_kernel"), _t(rec, prefix + "bias"))
        return fn(x, *args)

    return ref


def _bidi_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    fwd = _rnn(R.lstm, "forward/")(rec, x, layer)
    bwd = _rnn(R.lstm, "backward/")(rec, x[:, ::-1], layer)
    return np.concatenate([fwd, bwd], axis=-1)


def _pool_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    mult = float(_t(rec, "average_multiplier"))
    n, h, w, c = x.shape
    x = np.asarray(x, np.float64)
    if type(layer).__name__ == "QGlobalAveragePooling2D":
        return x.sum(axis=(1, 2)) * mult
    p = layer.pool_size
    return x.reshape(n, h // p[0], p[0], w // p[1], p[1], c).sum(axis=(2, 4)) * mult


def _dense_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    return R.dense(x, _t(rec, "kernel"), _t(rec, "bias"))


def _tconv_ref(rec: Any, x: np.ndarray, layer: Any) -> np.ndarray:
    return R.conv_transpose(x, _t(rec, "kernel"), _t(rec, "bias"), layer.strides, layer.padding)


KQ = "quantized_bits(6,0,alpha='auto_po2')"
BQ = "quantized_bits(8,2)"

CASES: dict[str, Case] = {
    "dense": Case(
        "QDense",
        (12,),
        lambda: _model((12,), Q.QDense(7, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer=BQ, name="q")),
        _dense_ref,
    ),
    "dense_po2": Case(
        "QDense",
        (12,),
        lambda: _model(
            (12,), Q.QDense(5, kernel_quantizer="quantized_po2(5,1)", bias_quantizer="quantized_po2(6)", name="q")
        ),
        _dense_ref,
    ),
    "dense_ternary": Case(
        "QDense",
        (12,),
        lambda: _model((12,), Q.QDense(5, kernel_quantizer="ternary(alpha='auto_po2')", use_bias=False, name="q")),
        _dense_ref,
    ),
    "dense_binary": Case(
        "QDense",
        (12,),
        lambda: _model(
            (12,),
            Q.QDense(
                5, kernel_quantizer="binary(alpha='auto')", bias_quantizer="quantized_bits(8,2,alpha='auto')", name="q"
            ),
        ),
        _dense_ref,
    ),
    "conv1d": Case(
        "QConv1D",
        (11, 3),
        lambda: _model(
            (11, 3), Q.QConv1D(4, 3, strides=2, padding="same", kernel_quantizer=KQ, bias_quantizer=BQ, name="q")
        ),
        _conv_ref,
    ),
    "conv2d_same_s2_even": Case(
        "QConv2D",
        (8, 8, 3),
        lambda: _model(
            (8, 8, 3),
            Q.QConv2D(
                5,
                4,
                strides=2,
                padding="same",
                kernel_quantizer="quantized_bits(8,0,alpha='auto')",
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _conv_ref,
    ),
    "conv2d_same_s2_odd": Case(
        "QConv2D",
        (7, 9, 2),
        lambda: _model(
            (7, 9, 2),
            Q.QConv2D(
                4, 3, strides=2, padding="same", kernel_quantizer="quantized_bits(4,1,1)", bias_quantizer=BQ, name="q"
            ),
        ),
        _conv_ref,
    ),
    "conv2d_same_s2_k3_even": Case(
        "QConv2D",
        (8, 6, 2),
        lambda: _model(
            (8, 6, 2),
            Q.QConv2D(
                3, 3, strides=2, padding="same", kernel_quantizer="quantized_bits(6,2,1)", bias_quantizer=BQ, name="q"
            ),
        ),
        _conv_ref,
    ),
    "conv2d_dilated": Case(
        "QConv2D",
        (9, 9, 2),
        lambda: _model(
            (9, 9, 2), Q.QConv2D(3, 3, dilation_rate=2, padding="same", kernel_quantizer="quantized_po2(4)", name="q")
        ),
        _conv_ref,
    ),
    "conv2d_transpose": Case(
        "QConv2DTranspose",
        (5, 4, 3),
        lambda: _model(
            (5, 4, 3),
            Q.QConv2DTranspose(4, 3, strides=2, padding="same", kernel_quantizer=KQ, bias_quantizer=BQ, name="q"),
        ),
        _tconv_ref,
        lambda: keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
    ),
    "conv2d_transpose_valid": Case(
        "QConv2DTranspose",
        (4, 4, 2),
        lambda: _model(
            (4, 4, 2),
            Q.QConv2DTranspose(
                3, (2, 3), strides=(2, 1), padding="valid", kernel_quantizer="quantized_bits(6,1,1)", name="q"
            ),
        ),
        _tconv_ref,
        lambda: keras.layers.Conv2DTranspose(3, (2, 3), strides=(2, 1), padding="valid"),
    ),
    "depthwise": Case(
        "QDepthwiseConv2D",
        (7, 7, 3),
        lambda: _model(
            (7, 7, 3),
            Q.QDepthwiseConv2D(
                3, strides=2, depth_multiplier=2, padding="same", depthwise_quantizer=KQ, bias_quantizer=BQ, name="q"
            ),
        ),
        _dw_ref,
    ),
    "separable1d": Case(
        "QSeparableConv1D",
        (10, 3),
        lambda: _model(
            (10, 3),
            Q.QSeparableConv1D(
                4,
                3,
                depth_multiplier=2,
                padding="same",
                depthwise_quantizer="quantized_bits(6,0,1)",
                pointwise_quantizer=KQ,
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _sep_ref,
    ),
    "separable2d": Case(
        "QSeparableConv2D",
        (6, 6, 3),
        lambda: _model(
            (6, 6, 3),
            Q.QSeparableConv2D(
                5,
                3,
                strides=2,
                padding="same",
                depthwise_quantizer="quantized_bits(6,0,1)",
                pointwise_quantizer="quantized_bits(6,0,1)",
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _sep_ref,
    ),
    "batchnorm": Case(
        "QBatchNormalization",
        (4, 4, 6),
        lambda: _model(
            (4, 4, 6),
            Q.QBatchNormalization(
                gamma_quantizer="quantized_bits(6,2,1)",
                beta_quantizer=BQ,
                mean_quantizer=BQ,
                variance_quantizer="quantized_bits(8,3,keep_negative=0)",
                name="q",
            ),
        ),
        _bn_ref,
    ),
    "batchnorm_no_center": Case(
        "QBatchNormalization",
        (4, 4, 6),
        lambda: _model(
            (4, 4, 6),
            Q.QBatchNormalization(
                center=False,
                gamma_quantizer="quantized_bits(6,2,1)",
                beta_quantizer="quantized_bits(4,0,1)",
                mean_quantizer="quantized_bits(8,3)",
                variance_quantizer="quantized_bits(6,2,keep_negative=0)",
                name="q",
            ),
        ),
        _bn_ref,
    ),
    "batchnorm_no_scale": Case(
        "QBatchNormalization",
        (4, 4, 6),
        lambda: _model(
            (4, 4, 6),
            Q.QBatchNormalization(
                scale=False,
                gamma_quantizer="quantized_bits(4,0,1)",
                beta_quantizer=BQ,
                mean_quantizer="quantized_bits(8,3)",
                variance_quantizer="quantized_bits(6,2,keep_negative=0)",
                name="q",
            ),
        ),
        _bn_ref,
    ),
    "conv2d_batchnorm": Case(
        "QConv2DBatchnorm",
        (6, 6, 3),
        lambda: _model(
            (6, 6, 3),
            Q.QConv2DBatchnorm(
                4,
                3,
                padding="same",
                kernel_quantizer="quantized_bits(8,0,alpha='auto_po2')",
                bias_quantizer="quantized_bits(12,4)",
                name="q",
            ),
        ),
        _conv_ref,
    ),
    "depthwise_batchnorm": Case(
        "QDepthwiseConv2DBatchnorm",
        (6, 6, 3),
        lambda: _model(
            (6, 6, 3),
            Q.QDepthwiseConv2DBatchnorm(
                3,
                padding="same",
                depth_multiplier=2,
                depthwise_quantizer="quantized_bits(8,0,alpha='auto_po2')",
                bias_quantizer="quantized_bits(12,4)",
                name="q",
            ),
        ),
        _dw_ref,
    ),
    "simple_rnn": Case(
        "QSimpleRNN",
        (5, 3),
        lambda: _model(
            (5, 3),
            Q.QSimpleRNN(
                4,
                activation="tanh",
                kernel_quantizer="quantized_bits(6,0,1)",
                recurrent_quantizer="quantized_bits(6,0,1)",
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _rnn(R.simple_rnn),
        lambda: keras.layers.SimpleRNN(4, activation="tanh"),
    ),
    "lstm": Case(
        "QLSTM",
        (5, 3),
        lambda: _model(
            (5, 3),
            Q.QLSTM(
                4,
                activation="tanh",
                recurrent_activation="sigmoid",
                kernel_quantizer="quantized_bits(6,0,1)",
                recurrent_quantizer="quantized_bits(6,0,1)",
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _rnn(R.lstm),
    ),
    "gru": Case(
        "QGRU",
        (5, 3),
        lambda: _model(
            (5, 3),
            Q.QGRU(
                4,
                activation="tanh",
                recurrent_activation="sigmoid",
                reset_after=True,
                kernel_quantizer="quantized_bits(6,0,1)",
                recurrent_quantizer="quantized_bits(6,0,1)",
                bias_quantizer=BQ,
                name="q",
            ),
        ),
        _rnn(R.gru),
        lambda: keras.layers.GRU(4, activation="tanh", recurrent_activation="sigmoid", reset_after=True),
    ),
    "bidirectional": Case(
        "QBidirectional",
        (5, 3),
        lambda: _model(
            (5, 3),
            Q.QBidirectional(
                Q.QLSTM(
                    3,
                    activation="tanh",
                    recurrent_activation="sigmoid",
                    kernel_quantizer="quantized_bits(6,0,1)",
                    recurrent_quantizer="quantized_bits(6,0,1)",
                    bias_quantizer=BQ,
                ),
                name="q",
            ),
        ),
        _bidi_ref,
    ),
    "avg_pool": Case(
        "QAveragePooling2D",
        (6, 6, 2),
        lambda: _model(
            (6, 6, 2), Q.QAveragePooling2D(pool_size=(3, 3), average_quantizer="quantized_bits(8,0,1)", name="q")
        ),
        _pool_ref,
    ),
    "global_avg_pool": Case(
        "QGlobalAveragePooling2D",
        (5, 5, 3),
        lambda: _model((5, 5, 3), Q.QGlobalAveragePooling2D(average_quantizer="quantized_bits(6,0,1)", name="q")),
        _pool_ref,
    ),
}

# Layers without weights: the check is that the recorded activation format describes their output.
ACTIVATION_CASES: dict[str, tuple[str, Callable[[], Any]]] = {
    "qactivation_relu": ("QActivation", lambda: _model((20,), Q.QActivation("quantized_relu(4,2)", name="q"))),
    "qactivation_bits": ("QActivation", lambda: _model((20,), Q.QActivation("quantized_bits(6,2,1)", name="q"))),
    "qactivation_tanh": ("QActivation", lambda: _model((20,), Q.QActivation("quantized_tanh(5)", name="q"))),
    "qactivation_sigmoid": ("QActivation", lambda: _model((20,), Q.QActivation("quantized_sigmoid(5)", name="q"))),
    "qactivation_relu_po2": ("QActivation", lambda: _model((20,), Q.QActivation("quantized_relu_po2(5,4)", name="q"))),
    "qactivation_hswish": ("QActivation", lambda: _model((20,), Q.QActivation(Q.quantized_hswish(8, 3), name="q"))),
    "qadaptive": (
        "QAdaptiveActivation",
        lambda: _model((20,), Q.QAdaptiveActivation("quantized_bits", total_bits=6, name="q")),
    ),
}
