"""QONNX export of whole networks, proven by qonnx's own executor against QKeras's own predict.

The reference is never qextract: every network is run by Keras (``predict``
of the model and of its quantized intermediate layers), and the exported file
by ``qonnx.core.onnx_exec.execute_onnx``, on at least 1,000 inputs. Quantized
activation outputs must agree bit for bit; a float output (softmax) to float32
rounding. The inputs lie on a fixed-point grid, as a hardware input would, so
that every accumulation is exact in float32 in both frameworks.
"""

from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qextract

if not hasattr(qextract, "reference"):  # tests/zoo.py still imports the module by its old place (on this branch's base)
    import sys

    from qextract.verification import reference as _reference

    sys.modules["qextract.reference"] = _reference

from zoo import CASES, randomize

from qextract._keras import qkeras, tf
from qextract.errors import DataError, UnsupportedError
from qextract.exporting.qonnx import layer_outputs, run_qonnx, to_keras_order

Q = qkeras()
keras = tf().keras
H5 = Path(qextract.__file__).parent / "examples" / "digits_qcnn.h5"
N = 1000

needs_qonnx = pytest.mark.skipif(importlib.util.find_spec("qonnx") is None, reason="the qonnx extra is not installed")
pytestmark = needs_qonnx


def grid_inputs(shape: tuple[int, ...], seed: int, step: float = 1 / 16, limit: float = 2.0) -> np.ndarray:
    """Inputs on a fixed-point grid (step a power of two), as ap_fixed data would be."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-int(limit / step), int(limit / step), size=(N, *shape))
    return (codes * step).astype(np.float32)


# ---------------------------------------------------------------------------------------------- networks


def jet_mlp() -> Any:
    """The hls4ml jet-tagging MLP 16-64-32-32-5: QDense + quantized_relu, softmax output."""
    qb = "quantized_bits(6,0,alpha=1)"
    inp = keras.Input((16,), name="jets")
    x = inp
    for i, units in enumerate((64, 32, 32), start=1):
        x = Q.QDense(units, kernel_quantizer=qb, bias_quantizer=qb, name=f"fc{i}")(x)
        x = Q.QActivation("quantized_relu(6)", name=f"relu{i}")(x)
    x = Q.QDense(5, kernel_quantizer=qb, bias_quantizer=qb, name="output")(x)
    out = keras.layers.Activation("softmax", name="softmax")(x)
    return randomize(keras.Model(inp, out, name="jet_mlp"), seed=1)


def small_cnn() -> Any:
    """Same padding (asymmetric at stride 2), po2, auto_po2, binary, ternary weights, batch norm, pooling, Flatten."""
    inp = keras.Input((8, 8, 3), name="image")
    x = Q.QConv2D(6, 3, padding="same", kernel_quantizer="quantized_bits(6,0,alpha='auto_po2')",
                  bias_quantizer="quantized_bits(8,3)", name="conv1")(inp)  # fmt: skip
    x = Q.QActivation("quantized_relu(5,2)", name="relu1")(x)
    x = Q.QConv2D(8, 3, strides=2, padding="same", kernel_quantizer="quantized_po2(4,1)",
                  bias_quantizer="quantized_bits(8,3)", name="conv2")(x)  # fmt: skip  # 8x8 -> 4x4, pads (0, 1)
    x = Q.QBatchNormalization(gamma_quantizer="quantized_bits(6,2,1)", beta_quantizer="quantized_bits(8,3)",
                              mean_quantizer="quantized_bits(8,3)", variance_quantizer="quantized_relu(8,3)",
                              name="bn2")(x)  # fmt: skip
    x = Q.QActivation("quantized_bits(6,2,1)", name="act2")(x)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool2")(x)
    x = Q.QConv2D(4, 2, padding="same", kernel_quantizer="ternary(alpha='auto_po2')", use_bias=False,
                  activation="quantized_relu(4,1)", name="conv3")(x)  # fmt: skip  # even kernel: pads (0, 1)
    x = keras.layers.Flatten(name="flatten")(x)
    x = Q.QDense(10, kernel_quantizer="binary(alpha='auto_po2')", bias_quantizer="quantized_bits(8,3)",
                 name="fc4")(x)  # fmt: skip
    x = Q.QActivation("binary(alpha=1)", name="sign4")(x)
    x = Q.QDense(5, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(8,3)", name="fc5")(x)
    x = Q.QActivation("quantized_bits(8,3,1)", name="out")(x)
    model = randomize(keras.Model(inp, x, name="small_cnn"), seed=2)
    conv1 = model.get_layer("conv1")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel * 2.0 ** np.arange(-3, 3, dtype=np.float32), bias])  # a different po2 scale per channel
    return model


def branches() -> Any:
    """A functional model: depthwise, Add and Concatenate, QAveragePooling2D, separable, global pooling, alpha."""
    inp = keras.Input((8, 8, 2), name="image")
    x = Q.QDepthwiseConv2D(3, depth_multiplier=2, padding="same", depthwise_quantizer="quantized_bits(6,0,1)",
                           bias_quantizer="quantized_bits(8,3)", activation="quantized_relu(5,2)",
                           name="dw")(inp)  # fmt: skip
    a = Q.QConv2D(4, 3, padding="same", kernel_quantizer="quantized_bits(4,0,1,alpha=1)",
                  activation="quantized_relu(5,2)", name="a")(x)  # fmt: skip
    b = Q.QConv2D(4, 1, kernel_quantizer="quantized_bits(4,0,1,alpha=1)", activation="quantized_relu(5,2)", name="b")(x)
    s = keras.layers.Add(name="add")([a, b])
    s = Q.QActivation("quantized_relu(6,3)", name="sum_act")(s)
    c = keras.layers.Concatenate(name="cat")([s, x])
    p = Q.QAveragePooling2D(2, average_quantizer="quantized_bits(8,0,1)", name="avg")(c)
    p = Q.QActivation("quantized_relu(6,3)", name="avg_act")(p)
    y = Q.QSeparableConv2D(6, 3, strides=2, padding="same", depthwise_quantizer="quantized_bits(6,0,1)",
                           pointwise_quantizer="quantized_bits(6,0,1)", bias_quantizer="quantized_bits(8,3)",
                           activation="quantized_relu(6,3)", name="sep")(p)  # fmt: skip
    g = Q.QGlobalAveragePooling2D(average_quantizer="quantized_bits(8,0,1)", name="gap")(y)
    z = Q.QDense(5, kernel_quantizer="quantized_bits(4,0,1,alpha=0.5)", bias_quantizer="quantized_bits(8,3)",
                 name="fc")(g)  # fmt: skip
    out = Q.QActivation("quantized_bits(8,3,1,alpha=0.5)", name="out")(z)
    return randomize(keras.Model(inp, out, name="branches"), seed=3)


def flat_tail() -> Any:
    """Quantizers and a batch norm on flattened channels-first data, and a flat output (Keras's H,W,C order)."""
    inp = keras.Input((4, 5, 3), name="image")
    x = Q.QConv2D(4, 2, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(8,3)", name="c")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = Q.QBatchNormalization(gamma_quantizer="quantized_bits(6,2,1)", beta_quantizer="quantized_bits(8,3)",
                              mean_quantizer="quantized_bits(8,3)", variance_quantizer="quantized_relu(8,3)",
                              name="bn")(x)  # fmt: skip
    x = Q.QActivation("quantized_bits(6,2,1)", name="out")(x)
    return randomize(keras.Model(inp, x, name="flat_tail"), seed=4)


def digits() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_digits

    x = (load_digits().images.astype(np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    return qextract.load_model(H5), x


NETWORKS = {
    "digits": digits,
    "jet_mlp": lambda: (jet_mlp(), grid_inputs((16,), 11, 1 / 32, 4.0)),
    "small_cnn": lambda: (small_cnn(), grid_inputs((8, 8, 3), 12)),
    "branches": lambda: (branches(), grid_inputs((8, 8, 2), 13)),
    "flat_tail": lambda: (flat_tail(), grid_inputs((4, 5, 3), 14)),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def exported(request: Any, tmp_path_factory: Any) -> tuple[Any, np.ndarray, Any]:
    model, x = NETWORKS[request.param]()
    result = qextract.to_qonnx(model, tmp_path_factory.mktemp(request.param))
    return model, x, result


# ---------------------------------------------------------------------------------------------- the proof


def test_qonnx_executor_equals_qkeras_bit_for_bit(exported):
    model, x, result = exported
    assert len(x) >= 1000
    quantized = [o for o in layer_outputs(result.path) if o.quantized]
    assert quantized, "every network here has quantized activations to compare"
    taps = keras.Model(model.inputs, [model.get_layer(o.layer).output for o in quantized] + list(model.outputs))
    *expected, final = taps.predict(x, batch_size=500, verbose=0)
    got = run_qonnx(result.path, x, full_context=True)
    for o, want in zip(quantized, expected):
        have = to_keras_order(got[o.tensor], o)
        assert have.shape == want.shape, o
        mismatch = np.count_nonzero(have != want)
        assert mismatch == 0, f"{o.layer}: {mismatch} of {want.size} values differ from QKeras"
    out = got[result.output_names[0]]
    if model.layers[-1].name == "softmax":  # a float function: TensorFlow's and onnxruntime's exp may differ
        np.testing.assert_allclose(out, final, rtol=0, atol=1e-6)
        assert np.array_equal(out.argmax(1), final.argmax(1))
    else:
        assert np.array_equal(out, final)


def test_checker_cleanup_and_shape_inference(exported):
    onnx = pytest.importorskip("onnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    _, x, result = exported
    onnx.checker.check_model(onnx.load(str(result.path)))
    clean = cleanup_model(ModelWrapper(str(result.path)))
    clean = clean.transform(InferShapes()).transform(InferDataTypes())
    assert clean.check_all_tensor_shapes_specified()
    assert sum(n.op_type in ("Quant", "BipolarQuant") for n in clean.graph.node) >= 2  # the quant nodes survive cleanup
    new_name = clean.graph.input[0].name
    old = run_qonnx(result.path, x[:50])[result.output_names[0]]
    new = run_qonnx(clean, {new_name: x[:50]})[clean.graph.output[0].name]
    assert np.array_equal(old, new)


def test_hls4ml_preparation_keeps_it_equal(exported):
    """The qonnx transforms hls4ml's ONNX front end asks for first (its docs): clean, channels last, Gemm to MatMul."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    _, x, result = exported
    x = x[:200]
    prepared = cleanup_model(ModelWrapper(str(result.path)), override_inpsize=len(x))
    prepared = cleanup_model(prepared.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul()))
    assert "Gemm" not in {n.op_type for n in prepared.graph.node}
    want = run_qonnx(result.path, x)[result.output_names[0]]
    got = run_qonnx(prepared, {prepared.graph.input[0].name: x})[prepared.graph.output[0].name]
    assert np.array_equal(got, want)


def test_hls4ml_front_end_parses_it(tmp_path):
    """Where hls4ml is installed: its ONNX front end reads the prepared file (optional)."""
    hls4ml = pytest.importorskip("hls4ml")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    result = qextract.to_qonnx(H5, tmp_path / "digits.onnx")
    model = cleanup_model(ModelWrapper(str(result.path)))
    model = cleanup_model(model.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul()))
    config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis")
    hls_model = hls4ml.converters.convert_from_onnx_model(
        model, output_dir=str(tmp_path / "hls"), backend="Vitis", hls_config=config
    )
    assert len(hls_model.get_layers()) > 5


def test_renamed_input_is_caught_not_run_on_zeros(tmp_path):
    """qonnx's cleanup renames the graph input; qonnx's executor would run on zeros for the old name."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    model = jet_mlp()
    result = qextract.to_qonnx(model, tmp_path / "jet.onnx")
    x = grid_inputs((16,), 5)[:8]
    clean = cleanup_model(ModelWrapper(str(result.path)), override_inpsize=8)
    assert clean.graph.input[0].name != result.input_name  # renamed (global_in)
    with pytest.raises(DataError, match="renames graph inputs") as e:
        run_qonnx(clean, {result.input_name: x})
    assert clean.graph.input[0].name in str(e.value)
    # What the check prevents: qonnx's own executor takes the stale name without a word and runs on zeros.
    stale = execute_onnx(clean, {result.input_name: x})
    right = run_qonnx(clean, {clean.graph.input[0].name: x})
    out = clean.graph.output[0].name
    assert not np.array_equal(stale[out], right[out])
    assert np.allclose(stale[out], stale[out][0])  # every sample the same: the zero input


# ---------------------------------------------------------------------------------------------- the file


def _initializer(model: Any, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_weights_quant_nodes_layouts_and_pads(tmp_path):
    import onnx

    model = small_cnn()
    result = qextract.to_qonnx(model, tmp_path)
    assert result.path == tmp_path / "model.onnx"
    proto = onnx.load(str(result.path))
    nodes = {n.output[0]: n for n in proto.graph.node}
    ex = qextract.extract(model)

    def quant_of(tensor: str) -> Any:
        return next(n for n in proto.graph.node if n.input and n.input[0] == tensor)

    # conv1: OIHW values, per-output-channel power-of-two scale (O,1,1,1), 6 bits, signed, narrow (symmetric).
    k = ex["conv1"]["kernel"]
    assert np.array_equal(_initializer(proto, "conv1/kernel"), k.values.transpose(3, 2, 0, 1))
    q = quant_of("conv1/kernel")
    assert q.op_type == "Quant" and q.domain == "qonnx.custom_op.general"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in q.attribute}
    assert attrs["signed"] == 1 and attrs["narrow"] == 1 and attrs["rounding_mode"] == b"ROUND"
    assert _initializer(proto, q.input[1]).shape == (6, 1, 1, 1)
    assert np.array_equal(_initializer(proto, q.input[1]).ravel(), k.scale) and len(set(k.scale)) > 1
    assert float(_initializer(proto, q.input[2])) == 0.0 and float(_initializer(proto, q.input[3])) == 6.0
    # conv2: powers of two, every value +-2**e an integer on the grid 2**e_lo.
    q = quant_of("conv2/kernel")
    values, scale, bits = (_initializer(proto, n) for n in (q.input[0], q.input[1], q.input[3]))
    exponents = np.frexp(np.abs(values[values != 0]))[1] - 1
    assert float(scale) == 2.0 ** exponents.min() and float(bits) == exponents.max() - exponents.min() + 2
    # conv2 pads: 8x8, k=3, s=2 under TensorFlow's "same": total 1, the extra row/column at the bottom/right.
    conv2 = next(n for n in proto.graph.node if n.op_type == "Conv" and n.input[1] == q.output[0])
    pads = next(onnx.helper.get_attribute_value(a) for a in conv2.attribute if a.name == "pads")
    assert list(pads) == [0, 0, 1, 1]
    assert quant_of("fc4/kernel").op_type == "BipolarQuant"  # binary
    q = quant_of("conv3/kernel")  # ternary: 2-bit narrow signed
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in q.attribute}
    assert float(_initializer(proto, q.input[3])) == 2.0 and attrs["narrow"] == 1 and attrs["signed"] == 1
    # The input is NHWC as in Keras, transposed once to NCHW for the first convolution.
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 8, 8, 3]
    first = nodes[next(n.input[0] for n in proto.graph.node if n.op_type == "Conv")]
    assert first.op_type == "Transpose" and list(first.attribute[0].ints) == [0, 3, 1, 2]
    # Dense after Flatten of channels-first data: its rows in C,H,W order (the graph flattens NCHW).
    flatten_in = model.get_layer("flatten").input_shape[1:]
    kernel = ex["fc4"]["kernel"].values
    chw = kernel.reshape(*flatten_in, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
    assert np.array_equal(_initializer(proto, "fc4/kernel"), chw.T)
    assert "Transpose" not in {nodes[n.input[0]].op_type for n in proto.graph.node if n.op_type == "Gemm"}


def test_metadata(tmp_path):
    import onnx

    result = qextract.to_qonnx(H5, tmp_path / "digits.onnx")
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["qextract.version"] == qextract.__version__
    assert props["qextract.source_model"] == "digits_qcnn.h5"
    assert props["qextract.input_layout"].startswith("NHWC")
    assert "2**e_lo" in props["qextract.po2"] and "rsqrt" in props["qextract.batchnorm"]
    assert [o.layer for o in layer_outputs(result.path)][:2] == ["conv1", "act1"]


def test_float_weights_are_written_exactly_and_said(tmp_path):
    import onnx

    inp = keras.Input((6,))
    x = Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(4,0,1)", name="q")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="plain")(x))
    with pytest.warns(qextract.QExtractWarning, match="unquantized floats.*plain/kernel"):
        result = qextract.to_qonnx(model, tmp_path)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["qextract.float_tensors"] == '["plain/kernel", "plain/bias"]'
    x = grid_inputs((6,), 3)
    got = run_qonnx(result.path, x)[result.output_names[0]]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)  # a float sum's order may differ


def test_existing_file_is_replaced_only_with_force_and_only_if_qextract_wrote_it(tmp_path):
    model = jet_mlp()
    path = tmp_path / "m.onnx"
    qextract.to_qonnx(model, path)
    with pytest.raises(qextract.QExtractError, match="exists"):
        qextract.to_qonnx(model, path)
    qextract.to_qonnx(model, path, force=True)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not a model")
    with pytest.raises(qextract.QExtractError, match="not a QONNX file qextract wrote"):
        qextract.to_qonnx(model, other, force=True)
    assert other.read_bytes() == b"not a model"


# ---------------------------------------------------------------------------------------------- single layers


def test_layers_without_weights(tmp_path):
    """Padding, pooling ("same" windows that leave the padding out), merges across placements, reshapes, ReLU caps."""
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    x = L.ZeroPadding2D(((1, 0), (0, 2)))(inp)
    c = Q.QConv2D(3, 3, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_relu(4,2)")(x)
    a = L.AveragePooling2D(3, strides=2, padding="same")(c)  # windows of 9, 6 and 4 at the borders
    m = L.MaxPooling2D(2, padding="same")(c)
    merged = L.Concatenate()([L.Subtract()([a, m]), L.Maximum()([a, m]), L.Multiply()([a, m])])
    g = L.GlobalMaxPooling2D(keepdims=True)(merged)
    r = L.Reshape((9,))(g)
    k = L.ReLU(max_value=0.5)(L.Flatten()(c))
    both = L.Concatenate()([r, k])  # a flat channels-first tensor beside a Keras-order one
    out = L.Softmax()(L.Dense(5, activation="tanh")(both))
    model = randomize(keras.Model(inp, out), seed=9)
    x = grid_inputs((6, 6, 2), 31)[:200]
    result = qextract.to_qonnx(model, tmp_path)
    got = run_qonnx(result.path, x)[result.output_names[0]]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


ZOO_RECURRENT = {"simple_rnn", "lstm", "gru", "bidirectional"}


@pytest.mark.parametrize("case", sorted(set(CASES) - ZOO_RECURRENT))
def test_zoo_layers(case, tmp_path):
    """Each zoo layer alone: outputs as Keras computes them (float sums may round in another order)."""
    model = randomize(CASES[case].build(), seed=7)
    x = grid_inputs(CASES[case].input_shape, 21)[:64]
    result = qextract.to_qonnx(model, tmp_path)
    got = run_qonnx(result.path, x)[result.output_names[0]]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_zoo_recurrent_layers_refused_by_name(tmp_path):
    # One recurrent layer stands for all four (QSimpleRNN, QLSTM, QGRU, QBidirectional): the same refusal.
    with pytest.raises(UnsupportedError, match=r"layer 'q' \(QLSTM\) has no QONNX form"):
        qextract.to_qonnx(CASES["lstm"].build(), tmp_path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- refusals


def _one(layer: Any, shape: tuple[int, ...] = (6,)) -> Any:
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp))


REFUSED = {
    "tanh activation": (lambda: _one(Q.QActivation("quantized_tanh(4)", name="t")), "layer 't'.*quantized_tanh"),
    "po2 activation": (lambda: _one(Q.QActivation("quantized_relu_po2(4)", name="p")), "quantized_relu_po2"),
    "auto alpha activation": (
        lambda: _one(Q.QActivation(Q.quantized_bits(4, 0, 1, alpha="auto"), name="a")),
        "from the data",
    ),
    "leaky quantized relu": (
        lambda: _one(Q.QActivation("quantized_relu(4,1,negative_slope=0.25)", name="r")),
        "negative_slope",
    ),
    "ternary threshold": (lambda: _one(Q.QActivation("ternary()", name="t3")), r"ternary\(alpha=1, threshold=0.5\)"),
    "alpha not a power of two": (
        lambda: _one(Q.QActivation("ternary(alpha=0.6, threshold=0.3)", name="t6")),
        "layer 't6'.*-0.6000004|power-of-two alpha",
    ),
    "stochastic": (lambda: _one(Q.QActivation("stochastic_binary()", name="s")), "samples at random"),
    "plain batch norm": (
        lambda: _one(keras.layers.BatchNormalization(name="bn"), (4, 4, 3)),
        "layer 'bn'.*QBatchNormalization",
    ),
    "ulaw weights": (
        lambda: _one(Q.QDense(3, kernel_quantizer="quantized_ulaw(8,0)", name="u")),
        "layer 'u'.*no uniform grid",
    ),
    "upsampling": (lambda: _one(keras.layers.UpSampling2D(name="up"), (4, 4, 3)), "layer 'up'.*no QONNX form"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_by_layer_and_quantizer(name, tmp_path):
    build, message = REFUSED[name]
    with pytest.raises(UnsupportedError, match=message):
        qextract.to_qonnx(build(), tmp_path)


def test_shared_and_nested_layers_refused(tmp_path):
    inp = keras.Input((4,))
    shared = Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", name="shared")
    with pytest.raises(UnsupportedError, match="layer 'shared'.*shared"):
        qextract.to_qonnx(keras.Model(inp, shared(shared(inp))), tmp_path)
    inner = keras.Sequential([Q.QDense(3, kernel_quantizer="quantized_bits(4,0,1)")], name="inner")
    with pytest.raises(UnsupportedError, match="layer 'inner'"):
        qextract.to_qonnx(keras.Model(inp, inner(inp)), tmp_path)


# ---------------------------------------------------------------------------------------------- the quantizer nodes


def _qonnx_node(form: Any, x: np.ndarray) -> np.ndarray:
    """qonnx's own Quant / BipolarQuant functions, as its executor runs them."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant

    s = np.float32(form.scale)
    if form.op == "BipolarQuant":
        y = binary_quant(x, s)
    else:
        y = int_quant(x, s, np.float32(0), np.float32(form.bits), form.signed, form.narrow, form.rounding.qonnx)
    return y if form.alpha is None else (y * np.float32(form.alpha)).astype(np.float32)


ACTIVATIONS = [
    "quantized_bits(6,2,1)",
    "quantized_bits(6,2,0)",
    "quantized_bits(5,1,keep_negative=0)",
    "quantized_bits(4,0,1,alpha=0.5)",
    "quantized_bits(1,0,1)",
    "quantized_relu(6,2)",
    "quantized_relu(3)",
    "binary()",
    "binary(alpha=0.5)",
    "ternary(threshold=0.5)",
    "ternary(alpha=0.5, threshold=0.25)",
]


@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_declared_node_equals_qkeras_on_ties_and_clips(spec):
    """Each entry's QONNX node, run by qonnx's own functions, on every half-step tie and beyond the range."""
    from qkeras.quantizers import get_quantizer

    from qextract.quantizers import entry_for

    q = get_quantizer(spec)
    form = entry_for(q).qonnx(q)
    step = np.float32(form.scale)
    ticks = np.arange(-80, 81, dtype=np.float32) / np.float32(4.0)  # quarter steps: every tie and more
    x = np.concatenate([ticks * step, np.linspace(-20, 20, 401, dtype=np.float32), [0.3, -0.3, 0.33, -0.33]])
    x = x.astype(np.float32)
    want = q(tf().constant(x)).numpy()
    assert np.array_equal(_qonnx_node(form, x), want), spec


def test_every_quantizer_entry_has_a_node_or_a_reason():
    """A new registry entry must declare its node or refuse; the refusal names the quantizer."""
    from qkeras.quantizers import get_quantizer

    from qextract.quantizers import QUANTIZERS

    covered = {spec.split("(")[0] for spec in ACTIVATIONS}
    refused = {
        "quantized_tanh": "quantized_tanh(4)",
        "quantized_sigmoid": "quantized_sigmoid(4)",
        "quantized_ulaw": "quantized_ulaw(8,0)",
        "quantized_po2": "quantized_po2(4)",
        "quantized_relu_po2": "quantized_relu_po2(4)",
        "quantized_hswish": "quantized_hswish(8,3)",
        "stochastic_binary": "stochastic_binary()",
        "stochastic_ternary": "stochastic_ternary()",
        "bernoulli": "bernoulli()",
    }
    assert set(QUANTIZERS) == covered | set(refused)
    for name, spec in refused.items():
        q = get_quantizer(spec)
        with pytest.raises(UnsupportedError, match=name.split("_")[-1]):
            QUANTIZERS[name].qonnx(q)


# ---------------------------------------------------------------------------------------------- CLI and the extra


def test_cli_export_qonnx(tmp_path, capsys):
    from qextract.cli import main

    assert main(["export", str(H5), "--format", "qonnx", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.onnx").is_file()
    assert "QONNX" in capsys.readouterr().out
    assert main(["export", str(H5), "--format", "qonnx", "--out", str(tmp_path / "o2"), "--layers", "fc5"]) == 2
    assert "--layers" in capsys.readouterr().err


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("onnx", "qonnx"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: no_onnx(name))
    with pytest.raises(UnsupportedError, match=r"pip install 'qextract\[qonnx\]'"):
        qextract.to_qonnx(jet_mlp(), tmp_path)
    with pytest.raises(UnsupportedError, match=r"qextract\[qonnx\]"):
        run_qonnx(tmp_path / "x.onnx", np.zeros((1, 16), np.float32))
    from qextract.cli import main

    assert main(["export", str(H5), "--format", "qonnx", "--out", str(tmp_path / "o")]) == 4
    assert "qextract[qonnx]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
