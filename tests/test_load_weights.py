"""load_weights: exports, TFLite files and PyTorch-style state dicts back into Keras models (issue 14).

References are independent of the loader: the exported model's own extraction,
TFLite's own converter and interpreter, and a NumPy PyTorch-style forward pass
(NCHW convolutions with symmetric padding, grouped depthwise, eval batch norm,
NCHW flatten, ``x @ W.T + b``, PyTorch's LSTM/GRU equations).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract import _keras
from qextract._keras import tf
from qextract.errors import ExactnessError, LayoutError, ModelLoadError, NotAnExportError, UnsupportedError, UsageError
from qextract.layouts import LAYOUTS, Layout

keras = _keras.keras()
L = keras.layers


def _randomize(model, seed: int):
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        a = rng.standard_normal(w.shape).astype(np.float32) * 0.5
        new.append(np.abs(a) + 0.5 if "variance" in w.name else a)
    model.set_weights(new)
    return model


def _weights_by_name(layer) -> dict[str, np.ndarray]:
    """A layer's variables by their short names (``forward/kernel`` inside a Bidirectional)."""
    out = {}
    for var in layer.weights:
        path = _keras.generation().variable_path(var)
        short = path.split("/")[-1].split(":")[0]
        direction = next((d for d in ("forward", "backward") if f"/{d}_" in path), None)
        out[f"{direction}/{short}" if direction else short] = var.numpy()
    return out


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --- exports: every zoo case in every layout --------------------------------------------------

# QKeras refits a float "auto" alpha (binary(alpha='auto')) to the values it is given: loading the
# quantized values back and quantizing them again may move that scale in its last bit.
REFITTED = {"dense_binary"}


@pytest.mark.parametrize("case", sorted(zoo.CASES))
def test_export_round_trip_is_byte_identical(tmp_path, case):
    b = zoo.randomize(zoo.CASES[case].build(), 0)
    ex = qextract.extract(b)  # then b gets other weights and loads the export back
    for i, layout in enumerate(LAYOUTS):
        zoo.randomize(b, i + 1)
        before = [w.copy() for w in b.get_weights()]
        qextract.export(ex, tmp_path / layout, layout=layout, formats=["npz"])
        if zoo.CASES[case].layer_class.endswith("Batchnorm"):
            with pytest.raises(UnsupportedError, match="folds a batch norm"):
                qextract.load_weights(b, tmp_path / layout)
            assert all(_same_bytes(x, y) for x, y in zip(before, b.get_weights()))  # nothing assigned
            continue
        report = qextract.load_weights(b, tmp_path / layout)
        weights = _weights_by_name(b.get_layer("q"))
        names = [t.name for t in ex["q"] if t.name != "average_multiplier"]  # derived from the pool size
        for name in names:
            assert _same_bytes(weights[name], ex["q"][name].values), (case, layout, name)
        assigned = report.table().query("status == 'assigned'")
        assert sorted(assigned["tensor"]) == sorted(names)
        assert set(assigned["values"]) <= {"codes x scale", "float32"} and set(assigned["source_layout"]) <= {layout}
    if zoo.CASES[case].layer_class.endswith("Batchnorm"):
        return
    # The loaded weights are the same bytes in every layout: quantizing them again once is enough.
    again = qextract.extract(b)["q"]
    for t in ex["q"]:
        if case in REFITTED:
            np.testing.assert_allclose(again[t.name].values, t.values, rtol=1e-6)
        else:
            assert _same_bytes(again[t.name].values, t.values), (case, t.name)


def _flatten_model(seed: int):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5, 4, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inp)
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(7, name="fc")(x)
    return _randomize(keras.Model(inp, out), seed)


@pytest.mark.parametrize("dense_as_conv", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_export_with_dense_after_flatten_loads_back(tmp_path, layout, dense_as_conv):
    a, b = _flatten_model(0), _flatten_model(1)
    qextract.export(a, tmp_path / "e", layout=layout, formats=["npz"], dense_as_conv=dense_as_conv)
    report = qextract.load_weights(b, tmp_path / "e")
    assert all(_same_bytes(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert set(report.table()["values"]) == {"float32"}  # unquantized: the export holds the model's own floats


def _wrapped_model(seed: int):
    """Layers inside a nested model, a TimeDistributed and a Bidirectional: keys encoder/conv, td/fc, bi."""
    keras.utils.set_random_seed(seed)
    encoder = keras.Sequential([keras.Input((4, 5, 2)), L.Conv2D(3, 3, padding="same", name="conv")], name="encoder")
    inp = keras.Input((4, 5, 2))
    x = L.TimeDistributed(L.Dense(6, name="fc"), name="td")(L.Reshape((4, 15))(encoder(inp)))
    return _randomize(keras.Model(inp, L.Bidirectional(L.LSTM(3), name="bi")(x)), seed)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_export_of_nested_and_wrapped_layers_loads_back(tmp_path, layout):
    a, b = _wrapped_model(0), _wrapped_model(1)
    qextract.export(a, tmp_path / "e", layout=layout, formats=["npz"])
    report = qextract.load_weights(b, tmp_path / "e")
    assert all(_same_bytes(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert {"encoder/conv", "td/fc", "bi"} <= set(report.table()["layer"])


def test_export_raw_floats_are_preferred(tmp_path):
    a = zoo.randomize(zoo.CASES["dense"].build(), 0)
    b = zoo.randomize(zoo.CASES["dense"].build(), 1)
    out = tmp_path / "e"
    qextract.export(a, out, layout="ohwi", formats=["npz"])
    kernel, _ = a.get_layer("q").get_weights()
    with np.load(out / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["q/kernel:raw"] = np.ascontiguousarray(kernel.T)  # laid out like the values
    np.savez(out / "weights.npz", **arrays)
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "weights.npz").read_bytes()
    for f in manifest["files"]:
        if f["path"] == "weights.npz":
            f.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = qextract.load_weights(b, out)
    assert _same_bytes(b.get_layer("q").get_weights()[0], kernel)
    assert dict(zip(report.table()["tensor"], report.table()["values"])) == {"kernel": "raw", "bias": "codes x scale"}


def test_export_folder_errors(tmp_path):
    model = _flatten_model(0)
    with pytest.raises(NotAnExportError, match="no manifest.json"):
        qextract.load_weights(model, tmp_path)
    qextract.export(model, tmp_path / "e", layout="ohwi", formats=["npz"])
    with pytest.raises(LayoutError, match="layout ohwi"):
        qextract.load_weights(model, tmp_path / "e", layout="oihw")


# --- TFLite -------------------------------------------------------------------------------------


def _tflite_model(seed: int, prefix: str = ""):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((9, 9, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", name=prefix + "conv")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", name=prefix + "dw")(x)
    x = L.SeparableConv2D(5, 3, padding="same", name=prefix + "sep")(x)
    x = L.Conv2DTranspose(3, (3, 2), strides=2, padding="same", name=prefix + "tconv")(x)
    x = L.Conv2D(4, 3, activation="relu", name=prefix + "conv2")(x)
    x = L.Flatten(name=prefix + "flat")(x)
    x = L.Dense(7, activation="relu", name=prefix + "fc")(x)
    out = L.Dense(3, name=prefix + "fc2")(x)
    return _randomize(keras.Model(inp, out), seed)


def _convert(model, path: Path, optimize: bool = False) -> Path:
    converter = tf().lite.TFLiteConverter.from_keras_model(model)
    if optimize:
        converter.optimizations = [tf().lite.Optimize.DEFAULT]
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    a = _tflite_model(0)
    return a, _convert(a, tmp_path_factory.mktemp("tfl") / "m.tflite")


def _tflite_output(path: Path, x: np.ndarray) -> np.ndarray:
    interpreter = tf().lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("prefix", ["", "renamed_"])
def test_tflite_conversion_loads_back_exactly(tflite_file, prefix):
    """Same names: TFLite's tensor names decide; other names: graph order on this chain."""
    a, path = tflite_file
    b = _tflite_model(1, prefix)
    report = qextract.load_weights(b, path)
    assert all(_same_bytes(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert report.count("assigned") == len(b.weights) and set(report.table()["source_layout"]) == {"ohwi"}
    x = np.random.default_rng(3).standard_normal((1, 9, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(b(x).numpy(), a(x).numpy())
    np.testing.assert_allclose(b(x).numpy(), _tflite_output(path, x), rtol=1e-4, atol=1e-4)


def test_tflite_layer_without_a_matching_op_names_the_candidates(tflite_file):
    _, path = tflite_file
    inp = keras.Input((9, 9, 3))
    model = keras.Model(
        inp, L.Dense(5, name="fc")(L.Flatten()(L.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)))
    )
    scope = r"model\w*/fc" if zoo.LEGACY else r"functional\w*/fc_1"  # Keras 3's tracing adds _1 to each scope
    message = (
        r"nothing for 2 tensor\(s\) of the model: fc/kernel, fc/bias.*"
        r"layer 'fc' \(Dense\) \(kernel\): no FULLY_CONNECTED op with weights \(5, 100\); "
        rf"the file's FULLY_CONNECTED ops: op \d+ FULLY_CONNECTED '{scope}/MatMul' \(7, 256\)"
    )
    with pytest.raises(LayoutError, match=message):
        qextract.load_weights(model, path)
    with pytest.raises(UsageError, match="mapping pairs PyTorch modules"):
        qextract.load_weights(model, path, mapping={"fc": "fc"})
    report = qextract.load_weights(model, path, strict=False)
    assert report.count("assigned") == 2 and report.count("kept") == 2 and report.count("unused") == 7


def test_tflite_int8_weights_are_dequantized(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 8))
    out = L.Dense(64, activation="relu", name="fc")(L.Flatten()(inp))
    a = _randomize(keras.Model(inp, out), 0)
    path = _convert(a, tmp_path / "q.tflite", optimize=True)
    b = _randomize(keras.models.clone_model(a), 1)
    report = qextract.load_weights(b, path)
    row = report.table().set_index("tensor").loc["kernel"]
    assert "int8 dequantized (per-channel axis 0)" in row["values"]
    interpreter = tf().lite.Interpreter(model_path=str(path))
    scales = next(d for d in interpreter.get_tensor_details() if d["dtype"] == np.int8)["quantization_parameters"][
        "scales"
    ]
    error = np.abs(b.get_layer("fc").get_weights()[0] - a.get_layer("fc").get_weights()[0])
    assert np.all(error <= scales[None, :] / 2 * (1 + 1e-6)) and error.max() > 0


def test_tflite_folded_dense_bias_is_refused(tmp_path):
    def build(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((5,))
        x = L.Dense(6, name="fc1")(inp)
        return _randomize(keras.Model(inp, L.Dense(3, name="fc2")(x)), seed)

    a, b = build(0), build(1)
    before = b.get_weights()
    with pytest.raises(LayoutError, match=r"layer 'fc1' \(Dense\) has a bias.*W2·b1 \+ b2"):
        qextract.load_weights(b, _convert(a, tmp_path / "f.tflite"))
    assert all(_same_bytes(x, y) for x, y in zip(before, b.get_weights()))


def test_tflite_batchnorm_is_refused(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    out = L.BatchNormalization(name="bn")(L.Conv2D(3, 3, name="c")(inp))
    model = _randomize(keras.Model(inp, out), 0)
    with pytest.raises(UnsupportedError, match="layer 'bn' .*folds a batch norm"):
        qextract.load_weights(model, _convert(model, tmp_path / "bn.tflite"))


def test_tflite_parallel_branches_of_one_shape_are_ambiguous_without_names(tmp_path):
    def build(seed, a_name, b_name):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((6, 6, 2))
        left = L.Conv2D(4, 3, name=a_name)(inp)
        right = L.Conv2D(4, 3, name=b_name)(inp)
        return _randomize(keras.Model(inp, L.Add()([left, right])), seed)

    a = build(0, "left", "right")
    path = _convert(a, tmp_path / "branches.tflite")
    with pytest.raises(LayoutError, match=r"which CONV_2D op .*'x'.*'y'.*candidates: op \d+ CONV_2D .*op \d+ CONV_2D"):
        qextract.load_weights(build(1, "x", "y"), path)
    named = build(1, "left", "right")
    qextract.load_weights(named, path)
    assert _same_bytes(named.get_layer("left").get_weights()[0], a.get_layer("left").get_weights()[0])


# --- PyTorch-style state dicts -------------------------------------------------------------------


def torch_conv2d(x, w, b, stride=1, padding=0, groups=1):
    """PyTorch's Conv2d on NCHW input, OIHW weight, symmetric padding, in float64."""
    n, _, h, width = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xs, ws = x[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out + b[None, :, None, None]


def torch_batchnorm(x, sd, prefix, eps=1e-5):
    shape = (1, -1, 1, 1)
    mean, var = sd[prefix + "running_mean"].reshape(shape), sd[prefix + "running_var"].reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * sd[prefix + "weight"].reshape(shape) + sd[prefix + "bias"].reshape(shape)


def relu(x):
    return np.maximum(x, 0)


def torch_forward(sd, x_nchw, conv2_padding=1):
    f = "features."
    x = relu(torch_conv2d(x_nchw, sd[f + "0.weight"], sd[f + "0.bias"], padding=1))
    x = torch_conv2d(x, sd[f + "2.weight"], sd[f + "2.bias"], padding=1, groups=6)
    x = torch_batchnorm(x, sd, f + "3.")
    x = relu(torch_conv2d(x, sd[f + "5.weight"], sd[f + "5.bias"], stride=2, padding=conv2_padding))
    x = x.reshape(x.shape[0], -1)  # NCHW flatten: C, H, W
    x = relu(x @ sd["classifier.0.weight"].T + sd["classifier.0.bias"])
    return x @ sd["classifier.2.weight"].T + sd["classifier.2.bias"]


def keras_port(explicit_pad: bool = True, seed: int = 5):
    """The Keras twin of the PyTorch network above: padding explicit where "same" differs."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(epsilon=1e-5, name="bn")(x)
    if explicit_pad:
        x = L.ZeroPadding2D(1, name="pad")(x)
        x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu", name="conv2")(x)
    else:
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(10, activation="relu", name="fc1")(x)
    return _randomize(keras.Model(inp, L.Dense(4, name="fc2")(x)), seed)


def state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    return {
        "features.0.weight": r(6, 3, 3, 3), "features.0.bias": r(6),
        "features.2.weight": r(12, 1, 3, 3), "features.2.bias": r(12),
        "features.3.weight": 1 + r(12), "features.3.bias": r(12), "features.3.running_mean": r(12),
        "features.3.running_var": np.abs(r(12)) + 0.5, "features.3.num_batches_tracked": np.array(7),
        "features.5.weight": r(8, 12, 3, 3), "features.5.bias": r(8),
        "classifier.0.weight": r(10, 8 * 4 * 4), "classifier.0.bias": r(10),
        "classifier.2.weight": r(4, 10), "classifier.2.bias": r(4),
    }  # fmt: skip


@pytest.fixture(scope="module")
def torch_state(tmp_path_factory):
    sd = state_dict()
    path = tmp_path_factory.mktemp("sd") / "state.npz"
    np.savez(path, **sd)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)  # NCHW
    return sd, path, x


def _keras_out(model, x_nchw):
    return model(x_nchw.transpose(0, 2, 3, 1)).numpy()


def test_oihw_state_dict_matches_pytorch_style_inference(torch_state):
    sd, path, x = torch_state
    model = keras_port()
    report = qextract.load_weights(model, path, layout="oihw")
    np.testing.assert_allclose(_keras_out(model, x), torch_forward(sd, x), rtol=1e-4, atol=1e-4)
    table = report.table().set_index("source")
    assert table.loc["classifier.0.weight", "layer"] == "fc1"
    assert "C,HW flatten order" in table.loc["classifier.0.weight", "transform"].replace("C,H,W", "C,HW")
    assert table.loc["features.3.num_batches_tracked", "status"] == "ignored"
    assert table.loc["features.2.weight", "transform"] == "O1HW -> HWCM"
    assert set(report.padding_table()["status"]) == {"match"}  # conv1 and dw: "same" at stride 1 is symmetric


def test_reverse_arrow_layout_and_explicit_mapping(tmp_path, torch_state):
    sd, _, x = torch_state
    shuffled = dict(reversed(list(sd.items())))  # module order no longer model order
    path = tmp_path / "shuffled.npz"
    np.savez(path, **shuffled)
    with pytest.raises(LayoutError, match="mapping="):
        qextract.load_weights(keras_port(), path, layout="oihw")
    mapping = {
        "conv1": "features.0",
        "dw": "features.2",
        "bn": "features.3",
        "conv2": "features.5",
        "fc1": "classifier.0",
        "fc2": "classifier.2",
    }
    model = keras_port()
    qextract.load_weights(model, path, layout="OIHW->HWIO", mapping=mapping)
    np.testing.assert_allclose(_keras_out(model, x), torch_forward(sd, x), rtol=1e-4, atol=1e-4)
    assert Layout.parse("OHWI->HWIO") == Layout.parse("hwio->ohwi") == Layout("ohwi")


def test_symmetric_padding_mismatch_names_the_fix(torch_state):
    _, path, _ = torch_state
    model = keras_port(explicit_pad=False)
    before = model.get_weights()
    message = (
        r"layer 'conv2' \(Conv2D\): the source pads \(top, bottom, left, right\) = \(1, 1, 1, 1\) .*"
        r"pads \(0, 1, 0, 1\) on its 8x8 input with strides \(2, 2\).*"
        r"ZeroPadding2D\(\(\(1, 1\), \(1, 1\)\)\) before 'conv2' "
        r"and use padding='valid'.*pad_explicitly=True"
    )
    with pytest.raises(LayoutError, match=message):
        qextract.load_weights(model, path, layout="oihw")
    assert all(_same_bytes(a, b) for a, b in zip(before, model.get_weights()))


def test_pad_explicitly_builds_a_new_padded_model(torch_state):
    sd, path, x = torch_state
    model = keras_port(explicit_pad=False)
    before, names = model.get_weights(), [layer.name for layer in model.layers]
    report = qextract.load_weights(model, path, layout="oihw", pad_explicitly=True)
    new = report.model
    assert new is not model and [layer.name for layer in model.layers] == names
    assert all(_same_bytes(a, b) for a, b in zip(before, model.get_weights()))  # the user's model is untouched
    pad = new.get_layer("conv2_pad")
    assert (
        type(pad).__name__ == "ZeroPadding2D"
        and pad.padding == ((1, 1), (1, 1))
        and new.get_layer("conv2").padding == "valid"
    )
    np.testing.assert_allclose(_keras_out(new, x), torch_forward(sd, x), rtol=1e-4, atol=1e-4)
    assert report.padding_table().set_index("layer").loc["conv2", "status"] == "padded explicitly"


@pytest.mark.parametrize(
    "shape,kernel,strides,source_padding,ok",
    [
        ((7, 7, 2), 3, 2, None, True),  # odd input: TF's "same" pads (1, 1) too
        ((8, 8, 2), 3, 1, None, True),  # stride 1, odd kernel: symmetric
        ((8, 8, 2), 4, 1, None, False),  # even kernel: TF pads (1, 2), symmetric (1, 1)
        ((8, 8, 2), 3, 2, {"c": (0, 1, 0, 1)}, True),  # the source says it padded as TF does
        ((8, 8, 2), 3, 2, "tf", True),
        ((8, 8, 2), 3, 2, {"c": 1}, False),
    ],
)
def test_padding_cases(tmp_path, shape, kernel, strides, source_padding, ok):
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape)
    model = keras.Model(inp, L.Conv2D(3, kernel, strides=strides, padding="same", name="c")(inp))
    path = tmp_path / "c.npz"
    np.savez(
        path, **{"c.weight": np.ones((3, shape[-1], kernel, kernel), np.float32), "c.bias": np.zeros(3, np.float32)}
    )
    if ok:
        qextract.load_weights(model, path, layout="oihw", source_padding=source_padding)
    else:
        with pytest.raises(LayoutError, match="layer 'c' .*ZeroPadding2D"):
            qextract.load_weights(model, path, layout="oihw", source_padding=source_padding)


def test_separable_and_transposed_convolutions_from_a_state_dict(tmp_path):
    """PyTorch's depthwise + pointwise modules, and ConvTranspose2d's (I, O, H, W) weight."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 5, 2))
    x = L.SeparableConv2D(3, 3, depth_multiplier=2, padding="valid", name="sep")(inp)
    model = keras.Model(inp, L.Conv2DTranspose(4, 3, strides=2, padding="valid", name="up")(x))
    rng = np.random.default_rng(0)
    sd = {
        "dw.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "pw.weight": rng.standard_normal((3, 4, 1, 1)).astype(np.float32),
        "pw.bias": rng.standard_normal(3).astype(np.float32),
        "up.weight": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
        "up.bias": rng.standard_normal(4).astype(np.float32),
    }
    np.savez(tmp_path / "s.npz", **sd)
    qextract.load_weights(model, tmp_path / "s.npz", layout="oihw")
    xin = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = torch_conv2d(xin, sd["dw.weight"], np.zeros(4), groups=2)
    y = torch_conv2d(y, sd["pw.weight"], sd["pw.bias"])
    n, _, h, w = y.shape  # ConvTranspose2d(3, 4, 3, stride=2): scatter every input pixel
    up = np.zeros((n, 4, (h - 1) * 2 + 3, (w - 1) * 2 + 3))
    for i in range(h):
        for j in range(w):
            up[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum("nc,cohw->nohw", y[:, :, i, j], sd["up.weight"])
    expected = up + sd["up.bias"][None, :, None, None]
    np.testing.assert_allclose(_keras_out(model, xin).transpose(0, 3, 1, 2), expected, rtol=1e-4, atol=1e-4)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_lstm_and_gru_from_a_state_dict(tmp_path):
    """PyTorch's gate orders (LSTM i,f,g,o; GRU r,z,n) and its two biases, against its own equations."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 3))
    lstm = keras.Model(inp, L.LSTM(5, name="rnn")(inp))
    gru = keras.Model(inp, L.GRU(5, reset_after=True, name="rnn")(inp))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    for model, gates in ((lstm, 4), (gru, 3)):
        sd = {
            "rnn.weight_ih_l0": rng.standard_normal((gates * 5, 3)).astype(np.float32) * 0.5,
            "rnn.weight_hh_l0": rng.standard_normal((gates * 5, 5)).astype(np.float32) * 0.5,
            "rnn.bias_ih_l0": rng.standard_normal(gates * 5).astype(np.float32) * 0.5,
            "rnn.bias_hh_l0": rng.standard_normal(gates * 5).astype(np.float32) * 0.5,
        }
        np.savez(tmp_path / "r.npz", **sd)
        qextract.load_weights(model, tmp_path / "r.npz", layout="oihw")
        h, c = np.zeros((2, 5)), np.zeros((2, 5))
        for t in range(4):
            gi = x[:, t] @ sd["rnn.weight_ih_l0"].T + sd["rnn.bias_ih_l0"]
            gh = h @ sd["rnn.weight_hh_l0"].T + sd["rnn.bias_hh_l0"]
            if gates == 4:
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                h = _sigmoid(o) * np.tanh(c)
            else:
                (ri, zi, ni), (rh, zh, nh) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
                r, z = _sigmoid(ri + rh), _sigmoid(zi + zh)
                h = (1 - z) * np.tanh(ni + r * nh) + z * h
        np.testing.assert_allclose(model(x).numpy(), h, rtol=1e-4, atol=1e-5)


def test_keras_named_npz_in_ohwi(tmp_path):
    a, b = _flatten_model(0), _flatten_model(1)
    kernel, bias = a.get_layer("conv").get_weights()
    fc_kernel, fc_bias = a.get_layer("fc").get_weights()
    arrays = {
        "conv/kernel": kernel.transpose(3, 0, 1, 2),
        "conv/bias": bias,
        "fc/kernel": fc_kernel.T,
        "fc/bias": fc_bias,
    }
    np.savez(tmp_path / "k.npz", **arrays)
    report = qextract.load_weights(b, tmp_path / "k.npz", layout="tflite")
    assert all(_same_bytes(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert report.source_kind == "npz (Keras names)"


# --- strict, all or nothing, bad input --------------------------------------------------------------


def test_strict_names_missing_and_extra_tensors(tmp_path, torch_state):
    sd, _, _ = torch_state
    broken = {k: v for k, v in sd.items() if k != "classifier.2.bias"}
    broken["classifier.9.weight"] = np.zeros((2, 2), np.float32)
    np.savez(tmp_path / "b.npz", **broken)
    model = keras_port()
    before = model.get_weights()
    with pytest.raises(
        LayoutError,
        match=r"nothing for 1 tensor\(s\) of the model: fc2/bias.*"
        r"no place for 1 source tensor\(s\): classifier.9.weight",
    ):
        qextract.load_weights(model, tmp_path / "b.npz", layout="oihw")
    assert all(_same_bytes(a, b) for a, b in zip(before, model.get_weights()))
    report = qextract.load_weights(model, tmp_path / "b.npz", layout="oihw", strict=False)
    status = report.table().set_index(["layer", "tensor"])["status"]
    assert status["fc2", "bias"] == "kept" and report.count("unused") == 1
    assert _same_bytes(model.get_layer("fc2").get_weights()[1], before[-1])
    assert _same_bytes(model.get_layer("fc2").get_weights()[0], sd["classifier.2.weight"].T.copy())


def test_all_or_nothing_on_a_shape_error(tmp_path, torch_state):
    sd, _, _ = torch_state
    bad = dict(sd, **{"classifier.2.weight": np.zeros((4, 11), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    model = keras_port()
    before = model.get_weights()
    with pytest.raises(
        LayoutError, match=r"layer 'fc2' \(Dense\), tensor 'kernel' from classifier.2.weight.*\(4, 11\)"
    ):
        qextract.load_weights(model, tmp_path / "bad.npz", layout="oihw")
    assert all(_same_bytes(a, b) for a, b in zip(before, model.get_weights()))


def test_a_failed_assignment_restores_every_layer(torch_state, monkeypatch):
    _, path, _ = torch_state
    model = keras_port()
    before = model.get_weights()

    def broken(weights):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(model.get_layer("conv2"), "set_weights", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        qextract.load_weights(model, path, layout="oihw")
    assert all(_same_bytes(a, b) for a, b in zip(before, model.get_weights()))


def test_bad_sources(tmp_path, torch_state):
    sd, path, _ = torch_state
    model = keras_port()
    with pytest.raises(UsageError, match="does not say its layout.*layout='oihw'"):
        qextract.load_weights(model, path)
    with pytest.raises(ModelLoadError, match="no such weights source"):
        qextract.load_weights(model, tmp_path / "none.npz", layout="oihw")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(UsageError, match="unknown kind of weights source"):
        qextract.load_weights(model, tmp_path / "w.bin")
    np.savez(tmp_path / "nan.npz", **dict(sd, **{"features.0.bias": np.full(6, np.nan, np.float32)}))
    with pytest.raises(
        ExactnessError, match=r"layer 'conv1' \(Conv2D\), tensor 'bias' from features.0.bias: 6 value\(s\) are NaN"
    ):
        qextract.load_weights(model, tmp_path / "nan.npz", layout="oihw")
    with pytest.raises(UsageError, match="mapping names layer 'nope'"):
        qextract.load_weights(model, path, layout="oihw", mapping={"nope": "features.0"})


def test_pt_without_torch_says_what_to_do(tmp_path):
    pytest.importorskip("numpy")
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed")
    except ImportError:
        pass
    (tmp_path / "s.pt").write_bytes(b"not read")
    with pytest.raises(ModelLoadError, match=r"needs torch.*pip install torch.*np.savez"):
        qextract.load_weights(keras_port(), tmp_path / "s.pt")


# --- command line ---------------------------------------------------------------------------------------


def test_cli_import_writes_a_new_model_and_leaves_the_file(tmp_path, torch_state, capsys):
    from qextract.cli import main

    sd, path, x = torch_state
    model_file = tmp_path / "port.h5"
    keras_port().save(model_file)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert main(["import", str(model_file), str(path), "--layout", "oihw", "--out", str(tmp_path / "new.h5")]) == 0
    assert "classifier.0.weight" in capsys.readouterr().out
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == digest
    new = qextract.load_model(tmp_path / "new.h5")
    np.testing.assert_allclose(_keras_out(new, x), torch_forward(sd, x), rtol=1e-4, atol=1e-4)
    assert main(["import", str(model_file), str(path), "--layout", "oihw", "--out", str(tmp_path / "new.h5")]) == 8
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,code,message",
    [
        ([], 2, "does not say its layout"),
        (["--layout", "oihw", "--map", "nope=features.0"], 2, "mapping names layer 'nope'"),
    ],
)
def test_cli_import_errors(tmp_path, torch_state, capsys, extra, code, message):
    from qextract.cli import main

    _, path, _ = torch_state
    keras_port().save(tmp_path / "m.h5")
    assert main(["import", str(tmp_path / "m.h5"), str(path), "--out", str(tmp_path / "o.h5"), *extra]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "o.h5").exists()


def test_cli_import_never_replaces_its_inputs(tmp_path, torch_state, capsys):
    from qextract.cli import main

    _, path, _ = torch_state
    model_file = tmp_path / "m.h5"
    keras_port().save(model_file)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert main(["import", str(model_file), str(path), "--layout", "oihw", "--out", str(model_file), "--force"]) == 8
    assert "is the model; qextract never overwrites its input" in capsys.readouterr().err
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == digest
    other = "o.keras" if zoo.LEGACY else "o.txt"  # Keras 3 writes a .keras model too
    assert main(["import", str(model_file), str(path), "--layout", "oihw", "--out", str(tmp_path / other)]) == 2
    assert f"give a {'.h5' if zoo.LEGACY else '.keras'} file" in capsys.readouterr().err


def test_cli_import_padding_mismatch_exits_6_and_pad_explicitly_works(tmp_path, torch_state, capsys):
    from qextract.cli import main

    sd, path, x = torch_state
    keras_port(explicit_pad=False).save(tmp_path / "same.h5")
    args = ["import", str(tmp_path / "same.h5"), str(path), "--layout", "oihw", "--out", str(tmp_path / "o.h5")]
    assert main(args) == 6
    assert "ZeroPadding2D(((1, 1), (1, 1))) before 'conv2'" in capsys.readouterr().err
    assert main([*args, "--pad-explicitly"]) == 0
    new = qextract.load_model(tmp_path / "o.h5")
    np.testing.assert_allclose(_keras_out(new, x), torch_forward(sd, x), rtol=1e-4, atol=1e-4)
