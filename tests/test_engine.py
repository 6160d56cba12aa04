"""The NumPy engine against the Keras path: the same extraction, the same export bytes, no TensorFlow.

The reference is always the Keras path (``engine="qkeras"``: the model loaded by
Keras, each layer's own QKeras quantizers), never the NumPy engine itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import zoo

import qextract
import qextract.engines as engines
from qextract._keras import tf
from qextract.cli import main
from qextract.errors import NeedsQKeras, UnsupportedError, UsageError

EXAMPLES = Path(qextract.__file__).parent / "examples"
H5, JSON, WEIGHTS = EXAMPLES / "digits_qcnn.h5", EXAMPLES / "digits_qcnn.json", EXAMPLES / "digits_qcnn_weights.h5"
FORMATS = ["npz", "header", "mem", "coe", "mif", "csv"]
HEAVY = ("tensorflow", "keras", "tf_keras", "qkeras")


def assert_same_extraction(a: qextract.Extraction, b: qextract.Extraction) -> None:
    """Field by field, arrays by bytes and dtype; Keras variable names (``variables``, ``state``), which a
    session makes unique with suffixes and the file keeps as saved, by their last part only."""
    assert a.model_name == b.model_name and a.names == b.names
    for ra, rb in zip(a, b):
        assert (ra.class_name, ra.kind) == (rb.class_name, rb.kind), ra.name
        assert [v.split("/")[-1] for v in ra.state] == [v.split("/")[-1] for v in rb.state], ra.name
        assert dict(ra.config) == dict(rb.config), ra.name
        assert [(x.name, x.quantizer_str, x.format, x.notes) for x in ra.activations] == [
            (x.name, x.quantizer_str, x.format, x.notes) for x in rb.activations
        ], ra.name
        assert list(ra.tensors) == list(rb.tensors), ra.name
        for ta, tb in zip(ra, rb):
            for field in ("raw", "values", "codes", "scale", "signs"):
                x, y = getattr(ta, field), getattr(tb, field)
                assert (x is None) == (y is None), (ra.name, ta.name, field)
                if x is not None:
                    assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), (ra.name, ta.name, field)
            for field in ("format", "scale_axis", "quantizer_str", "ste_rounded", "notes"):
                assert getattr(ta, field) == getattr(tb, field), (ra.name, ta.name, field)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def asked(monkeypatch):
    """The layers the NumPy engine asks QKeras for, with why."""
    calls: list[tuple[str, str]] = []
    real = engines.ask_qkeras

    def spy(place, why):
        calls.append((place.key, str(why)))
        return real(place, why)

    monkeypatch.setattr(engines, "ask_qkeras", spy)
    return calls


# --- the bundled example --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["h5", "json"])
def test_the_bundled_example_extracts_as_keras_does(source, asked):
    kw = {"weights": WEIGHTS} if source == "json" else {}
    path = JSON if source == "json" else H5
    a = qextract.extract(path, engine="numpy", **kw)
    b = qextract.extract(path, engine="qkeras", **kw)
    assert_same_extraction(a, b)
    # only the folded conv-batchnorm is asked of QKeras: TensorFlow folds it with a CPU-specific rsqrt
    assert [key for key, _ in asked] == ["convbn4"] and "rsqrt" in asked[0][1]


@pytest.mark.parametrize("layout", ["hwio", "ohwi", "oihw"])
def test_the_bundled_example_exports_byte_for_byte_as_keras_does(tmp_path, layout):
    for dense_as_conv in (False, True):
        out = {}
        for engine in ("numpy", "qkeras"):
            out[engine] = tmp_path / f"{engine}-{dense_as_conv}"
            qextract.export(H5, out[engine], layout=layout, formats=FORMATS, dense_as_conv=dense_as_conv, engine=engine)
        a, b = folder_bytes(out["numpy"]), folder_bytes(out["qkeras"])
        assert len(a) == 49 and a == b


def test_without_qkeras_a_layer_it_cannot_prove_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    with pytest.raises(UnsupportedError, match=r"layer 'convbn4' \(QConv2DBatchnorm\).*rsqrt.*not installed") as e:
        qextract.extract(H5, engine="numpy")
    assert e.value.arguments == ("layers",)
    # everything else it proves alone
    keys = ["conv1", "act1", "dw2", "bn2", "act2", "sep3", "act4", "flatten", "fc5", "softmax"]
    assert_same_extraction(qextract.extract(H5, engine="numpy", layers=keys), qextract.extract(H5, layers=keys))


def test_a_tensor_it_cannot_prove_is_named_with_its_layer(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    model = zoo.CASES["dense_binary"].build()  # binary(alpha="auto"): a float32 mean used as it is
    model.save(tmp_path / "b.h5")
    with pytest.raises(UnsupportedError, match=r"layer 'q' \(QDense\).*tensor 'kernel': alpha='auto'"):
        qextract.extract(tmp_path / "b.h5", engine="numpy")


# --- the test zoo, saved in this session ------------------------------------------------------------------------

ASKED = {"dense_binary", "conv2d_batchnorm", "depthwise_batchnorm"}  # binary(alpha="auto"), folded batch norms
NOT_PLACED = {"simple_rnn", "lstm", "gru", "bidirectional"}  # recurrent layers: the NumPy engine does not read them


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    files = {}
    for name, case in zoo.CASES.items():
        files[name] = root / f"{name}.h5"
        case.build().save(files[name])
    return files


@pytest.mark.parametrize("name", sorted(zoo.CASES))
def test_every_zoo_model_extracts_as_keras_does(zoo_files, name, asked):
    path = zoo_files[name]
    reference = qextract.extract(path, engine="qkeras")
    if name in NOT_PLACED:  # refused by name by the NumPy engine; auto takes the Keras path
        with pytest.raises(UnsupportedError, match="NumPy engine cannot read this model.*Fix: engine='qkeras'"):
            qextract.extract(path, engine="numpy")
        assert_same_extraction(qextract.extract(path), reference)
        return
    assert_same_extraction(qextract.extract(path, engine="numpy"), reference)
    assert [key for key, _ in asked] == (["q"] if name in ASKED else [])


def test_layers_selects_as_keras_does(zoo_files):
    path = zoo_files["separable2d"]
    assert_same_extraction(qextract.extract(path, engine="numpy", layers=["q"]), qextract.extract(path, layers=["q"]))
    with pytest.raises(UsageError, match="no layer named 'nope'"):
        qextract.extract(path, engine="numpy", layers=["nope"])


def test_a_sequential_model_with_pooling_flatten_and_plain_keras_layers(tmp_path):
    keras = tf().keras
    model = zoo.randomize(
        keras.Sequential(
            [
                keras.Input((9, 9, 2)),
                zoo.Q.QConv2D(4, 3, padding="same", kernel_quantizer="quantized_bits(6,0,1)", name="c"),
                keras.layers.MaxPooling2D(2, name="p"),
                keras.layers.BatchNormalization(name="bn"),
                zoo.Q.QActivation("quantized_relu(4,1)", name="a"),
                keras.layers.ZeroPadding2D(1, name="z"),
                keras.layers.Conv2D(3, 2, strides=2, activation="relu", name="plain"),
                keras.layers.Flatten(name="f"),
                keras.layers.Dropout(0.1, name="drop"),
                zoo.Q.QDense(
                    5, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(6,2)", name="d"
                ),
                keras.layers.Activation("silu", name="act"),
            ],
            name="seq",
        )
    )
    model.save(tmp_path / "seq.h5")
    got = qextract.extract(tmp_path / "seq.h5", engine="numpy")
    assert_same_extraction(got, qextract.extract(tmp_path / "seq.h5", engine="qkeras"))
    assert got["d"].config["flatten_input_shape"] == [3, 3, 3]
    assert got["c"]["kernel"].quantizer_str == "quantized_bits(6,0,1,alpha='auto_po2')"  # QKeras's own default


def test_quantizers_written_as_strings_parse_as_qkeras_parses_them(tmp_path):
    keras = tf().keras
    inp = keras.Input((6,))
    x = zoo.Q.QDense(4, kernel_quantizer="quantized_bits(5, 1, alpha=1)", name="d1")(inp)
    x = zoo.Q.QActivation("quantized_relu(3, 1, negative_slope=0.5)", name="a1")(x)
    x = zoo.Q.QDense(
        3, kernel_quantizer="ternary(alpha=0.5,threshold=0.2)", bias_quantizer="quantized_po2(4)", name="d2"
    )(x)
    x = zoo.Q.QActivation("quantized_bits(4, 2, symmetric=True)", name="a2")(x)
    model = zoo.randomize(keras.Model(inp, x, name="strings"))
    model.save(tmp_path / "s.h5")
    got = qextract.extract(tmp_path / "s.h5", engine="numpy")
    assert_same_extraction(got, qextract.extract(tmp_path / "s.h5", engine="qkeras"))
    assert got["a2"].activations[0].quantizer_str == "quantized_bits(4,2,1)"


# --- engine choice ---------------------------------------------------------------------------------------------


def test_engine_arguments_are_checked(tmp_path):
    model = qextract.load_model(H5)
    with pytest.raises(UsageError, match="engine='numpy' and weights=... are for a model file"):
        qextract.extract(model, engine="numpy")
    with pytest.raises(UsageError, match="engine must be one of"):
        qextract.extract(H5, engine="torch")
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedError, match=r"NumPy engine cannot read this model.*Fix: engine='qkeras'"):
        qextract.extract(tmp_path / "m.keras", engine="numpy")
    assert_same_extraction(qextract.extract(tmp_path / "m.keras"), qextract.extract(model))  # auto: Keras


def test_cli_engines_print_and_write_the_same(tmp_path, capsys):
    outputs = {}
    for engine in ("numpy", "qkeras"):
        assert main(["inspect", str(H5), "--engine", engine]) == 0
        out = tmp_path / engine
        assert main(["export", str(H5), "--engine", engine, "--out", str(out), "--format", "npz,header,csv"]) == 0
        outputs[engine] = (capsys.readouterr().out.replace(str(out), "OUT"), folder_bytes(out))
    assert outputs["numpy"] == outputs["qkeras"]


# --- no TensorFlow ---------------------------------------------------------------------------------------------


def test_the_numpy_engine_imports_no_tensorflow(zoo_files, tmp_path):
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); import qextract; "
        f"ex = qextract.extract({str(zoo_files['separable2d'])!r}, engine='numpy'); "
        f"qextract.export({str(zoo_files['batchnorm'])!r}, {str(tmp_path / 'out')!r}, formats={FORMATS!r}); "
        f"from qextract.cli import main; main(['inspect', {str(zoo_files['dense_po2'])!r}]); "
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(qextract.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    reference = qextract.export(zoo_files["batchnorm"], tmp_path / "ref", formats=FORMATS, engine="qkeras")
    assert folder_bytes(tmp_path / "out") == folder_bytes(reference.out_dir)


def test_needs_qkeras_never_escapes(zoo_files, monkeypatch):
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    for name in ("conv2d_batchnorm", "lstm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(UnsupportedError) as e:
                qextract.extract(zoo_files[name])
        assert not isinstance(e.value, NeedsQKeras)


# --- damaged or mismatched files: refused by name, never read as something else ------------------------------


def test_files_the_numpy_engine_cannot_trust_are_refused(tmp_path, monkeypatch):
    import shutil

    import h5py

    from qextract.errors import ModelLoadError

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(H5.read_bytes()[:20000])
    with pytest.raises(ModelLoadError, match="not a readable HDF5 file"):
        qextract.extract(truncated, engine="numpy")
    keras = tf().keras
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="elsewhere")])
    other.save_weights(tmp_path / "other.h5")  # Keras would pair its layers by position
    with pytest.raises(UnsupportedError, match=r"not the architecture's by name.*Fix: engine='qkeras'"):
        qextract.extract(JSON, weights=tmp_path / "other.h5", engine="numpy")
    cut = tmp_path / "cut.h5"
    shutil.copy(H5, cut)
    with h5py.File(cut, "r+") as f:  # conv1 without its bias, consistently: the file is readable, the layer is not
        group = f["model_weights/conv1"]
        del group["conv1/bias:0"]
        group.attrs["weight_names"] = [b"conv1/kernel:0"]
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    with pytest.raises(UnsupportedError, match=r"layer 'conv1' \(QConv2D\).*holds no bias"):
        qextract.extract(cut, engine="numpy")
