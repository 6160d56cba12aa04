"""The NumPy engine against the Keras path: the same extraction, the same export bytes, no TensorFlow.

The reference is never the NumPy engine itself: for files the installed stack writes, the Keras
path (``engine="qkeras"``: the model loaded by Keras, each layer's own QKeras quantizers); for
QKeras 0.9 files read under the Keras 3 stack, what QKeras 0.9 computed (``tests/fixtures/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
import qextract.engines as engines
from qextract._keras import tf
from qextract.cli import main
from qextract.engines import folding
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


@pytest.mark.parametrize("source", ["h5", "json"] if zoo.LEGACY else ["keras"])
def test_the_bundled_example_extracts_as_keras_does(source, asked):
    kw = {"weights": WEIGHTS} if source == "json" else {}
    path = {"json": JSON, "h5": H5, "keras": zoo.EXAMPLE}[source]
    a = qextract.extract(path, engine="numpy", **kw)
    b = qextract.extract(path, engine="qkeras", **kw)
    assert_same_extraction(a, b)
    # nothing is asked of QKeras: the folded conv-batchnorm is computed as the file's generation folds it
    # (QKeras 0.9: TensorFlow's rsqrt in QKeras 0.9's order; qkeras-v3: 1/sqrt, in NumPy)
    assert asked == []


@pytest.mark.parametrize("layout", ["hwio", "ohwi", "oihw"])
def test_the_bundled_example_exports_byte_for_byte_as_keras_does(tmp_path, layout):
    for dense_as_conv in (False, True):
        out = {}
        for engine in ("numpy", "qkeras"):
            out[engine] = tmp_path / f"{engine}-{dense_as_conv}"
            qextract.export(
                zoo.EXAMPLE, out[engine], layout=layout, formats=FORMATS, dense_as_conv=dense_as_conv, engine=engine
            )
        a, b = folder_bytes(out["numpy"]), folder_bytes(out["qkeras"])
        assert len(a) == 49 and a == b


def test_without_tensorflow_a_qkeras_09_fold_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    monkeypatch.setattr(folding, "tensorflow_installed", lambda: False)
    with pytest.raises(UnsupportedError, match=r"layer 'convbn4' \(QConv2DBatchnorm\).*'kernel'.*rsqrt") as e:
        qextract.extract(H5, engine="numpy")
    assert e.value.arguments == ("layers",)
    # everything else it proves alone, as QKeras 0.9 computed it
    keys = ["conv1", "act1", "dw2", "bn2", "act2", "sep3", "act4", "flatten", "fc5", "softmax"]
    got = qextract.extract(H5, engine="numpy", layers=keys)
    if zoo.LEGACY:
        assert_same_extraction(got, qextract.extract(H5, layers=keys))
    else:
        assert_as_qkeras_09_computed(got, "example", FIXTURE["example"])


@pytest.mark.skipif(zoo.LEGACY, reason="qkeras-v3 files: the Keras 3 stack")
def test_without_tensorflow_a_keras3_fold_is_computed_in_numpy(monkeypatch, asked):
    monkeypatch.setattr(folding, "tensorflow_installed", lambda: False)
    a = qextract.extract(zoo.EXAMPLE, engine="numpy")
    assert_same_extraction(a, qextract.extract(zoo.EXAMPLE, engine="qkeras"))
    assert asked == []


# --- QKeras 0.9 files, whatever the stack: as QKeras 0.9 computed them --------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = json.loads((FIXTURES / "qkeras09.json").read_text())
ARRAYS = np.load(FIXTURES / "qkeras09.npz")


def assert_as_qkeras_09_computed(got: qextract.Extraction, prefix: str, expected: dict) -> None:
    """Every tensor's raw input, values, codes and scale bit for bit, its format, quantizer and geometry."""
    for record in got:
        if not record.tensors and not record.activations:
            continue
        want = expected[record.name]
        assert dict(record.config) == want["geometry"], record.name
        assert [(a.name, a.quantizer_str, a.format.describe()) for a in record.activations] == [
            (a["name"], a["quantizer"], a["format"]) for a in want["activations"]
        ], record.name
        assert sorted(record.tensors) == sorted(want["tensors"]), record.name
        for t in record:
            key = f"{prefix}/{record.name}/{t.name}"
            for field in ("raw", "values", "codes", "scale"):
                if f"{key}/{field}" in ARRAYS.files:
                    ref = ARRAYS[f"{key}/{field}"]
                    mine = np.asarray(getattr(t, field))
                    assert mine.shape == ref.shape and mine.tobytes() == ref.astype(mine.dtype).tobytes(), (key, field)
            meta = want["tensors"][t.name]
            assert (t.format.describe(), t.quantizer_str, t.scale_axis, list(t.notes)) == (
                meta["format"], meta["quantizer"], meta["scale_axis"], meta["notes"],
            ), key  # fmt: skip


@pytest.mark.parametrize("source", ["h5", "json"])
def test_the_bundled_qkeras_09_file_is_computed_as_qkeras_09_computed_it(source, asked):
    kw = {"weights": WEIGHTS} if source == "json" else {}
    got = qextract.extract(JSON if source == "json" else H5, engine="numpy", **kw)
    assert_as_qkeras_09_computed(got, "example", FIXTURE["example"])  # its folded convbn4 included, bit for bit
    assert asked == []


@pytest.fixture(scope="module")
def qkeras09_files(tmp_path_factory):
    """Zoo cases saved by QKeras 0.9 (``make_generation_fixtures.py --models``), with the fixture's weights."""
    import zipfile

    root = tmp_path_factory.mktemp("qkeras09")
    with zipfile.ZipFile(FIXTURES / "qkeras09_models.zip") as z:
        z.extractall(root)
    return {p.stem: p for p in root.glob("*.h5")}


QKERAS09_ASKED = {"dense_binary"}  # binary(alpha="auto"): a float32 mean used as the scale


@pytest.mark.parametrize("name", sorted(set(zoo.CASES) - {"simple_rnn", "lstm", "gru", "bidirectional"}))
def test_every_qkeras_09_zoo_file_is_computed_as_qkeras_09_computed_it(qkeras09_files, name, asked):
    path = qkeras09_files[name]
    if name in QKERAS09_ASKED and not zoo.LEGACY:  # never asked of qkeras-v3: refused, naming the fix
        with pytest.raises(UnsupportedError, match=r"layer 'q' \(QDense\).*tensor 'kernel'.*QKeras 0.9 stack"):
            qextract.extract(path, engine="numpy")
        assert asked == []
        return
    got = qextract.extract(path, engine="numpy")
    assert_as_qkeras_09_computed(got, f"case/{name}", FIXTURE["cases"][name])
    assert [key for key, _ in asked] == (["q"] if name in QKERAS09_ASKED else [])


def test_a_qkeras_09_fold_is_the_qkeras_09_layers_own_bit_for_bit():
    """TensorFlow's ops in QKeras 0.9's order, on many values, against QKeras 0.9's own get_folded_weights()
    (the 0.9 stack); under Keras 3, qkeras-v3's own fold against 1/sqrt in NumPy."""
    from qextract.engines.folding import StoredBatchnorm, fold
    from qextract.generation import KERAS3, LEGACY

    rng = np.random.default_rng(3)
    for cls, depthwise in (("QConv2DBatchnorm", False), ("QDepthwiseConv2DBatchnorm", True)):
        kw = {"depth_multiplier": 4} if depthwise else {"filters": 512}
        layer = getattr(zoo.Q, cls)(kernel_size=3, **kw, name="f")
        layer(zoo.keras.Input((8, 8, 128)))  # built as in a model (QKeras 0.9 builds its batch norm on a call)
        for w in layer.weights:
            a = rng.standard_normal(w.shape).astype(np.float32) * 0.5
            if "variance" in w.name:
                a = np.exp(rng.uniform(-12, 6, w.shape)).astype(np.float32)
            w.assign(a)
        bn = layer.batchnorm
        stored = StoredBatchnorm(True, True, bn.epsilon, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        kernel = layer.depthwise_kernel if depthwise else layer.kernel
        mine = fold(LEGACY if zoo.LEGACY else KERAS3, kernel, layer.bias, stored, depthwise)
        theirs = [np.asarray(t, np.float32) for t in layer.get_folded_weights()]
        for m, t in zip(mine, theirs):
            assert m.shape == t.shape and m.tobytes() == t.tobytes(), cls


def test_a_tensor_it_cannot_prove_is_named_with_its_layer(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "qkeras_installed", lambda: False)
    model = zoo.CASES["dense_binary"].build()  # binary(alpha="auto"): a float32 mean used as it is
    model.save(tmp_path / "b.h5")
    with pytest.raises(UnsupportedError, match=r"layer 'q' \(QDense\).*tensor 'kernel': alpha='auto'"):
        qextract.extract(tmp_path / "b.h5", engine="numpy")


# --- the test zoo, saved in this session ------------------------------------------------------------------------

ASKED = {"dense_binary"}  # binary(alpha="auto"): a float32 mean used as the scale
NOT_PLACED = {"simple_rnn", "lstm", "gru", "bidirectional"}  # recurrent layers: the NumPy engine does not read them
# the formats this stack writes: tf-keras .h5; Keras 3 .keras archives (numbered variables) and .h5
SUFFIXES = (".h5",) if zoo.LEGACY else (".keras", ".h5")
# qkeras-v3 1.2.1 writes a .keras it cannot load again (a folded depthwise layer's iteration saved twice)
V3_UNLOADABLE = {("depthwise_batchnorm", ".keras")}


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    files = {}
    for name, case in zoo.CASES.items():
        model = case.build()
        for suffix in SUFFIXES:
            files[name, suffix] = root / f"{name}{suffix}"
            model.save(files[name, suffix])
        files[name] = files[name, ".h5"]
    return files


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", sorted(zoo.CASES))
def test_every_zoo_model_extracts_as_keras_does(zoo_files, name, suffix, asked):
    path = zoo_files[name, suffix]
    if (name, suffix) in V3_UNLOADABLE:  # the reference is the same model's .h5 from this session
        assert_same_extraction(qextract.extract(path, engine="numpy"), qextract.extract(zoo_files[name]))
        return
    reference = qextract.extract(path, engine="qkeras")
    if name in NOT_PLACED:  # refused by name by the NumPy engine; auto takes the Keras path
        with pytest.raises(UnsupportedError, match="NumPy engine cannot read this model.*Fix: engine='qkeras'"):
            qextract.extract(path, engine="numpy")
        got = qextract.extract(path)
        if not zoo.LEGACY:  # qkeras-v3 gives a loaded recurrent layer a new default name on every load (its bug)
            got, reference = _default_names_alike(got), _default_names_alike(reference)
        assert_same_extraction(got, reference)
        return
    assert_same_extraction(qextract.extract(path, engine="numpy"), reference)
    assert [key for key, _ in asked] == (["q"] if name in ASKED else [])


def _default_names_alike(ex: qextract.Extraction) -> qextract.Extraction:
    """``ex`` with Keras's default-name counters cut (``qgru_2`` -> ``qgru``)."""
    import dataclasses
    import re

    records = tuple(dataclasses.replace(r, name=re.sub(r"_\d+$", "", r.name)) for r in ex)
    return qextract.Extraction(records, model_name=ex.model_name)


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


def test_engine_arguments_are_checked():
    model = qextract.load_model(zoo.EXAMPLE)
    with pytest.raises(UsageError, match="engine='numpy' and weights=... are for a model file"):
        qextract.extract(model, engine="numpy")
    with pytest.raises(UsageError, match="engine must be one of"):
        qextract.extract(H5, engine="torch")


@zoo.legacy_only
def test_a_tf_keras_keras_archive_goes_to_keras(tmp_path):
    model = qextract.load_model(H5)
    model.save(tmp_path / "m.keras")  # tf-keras's zip: its variables numbered in an order not proven here
    with pytest.raises(UnsupportedError, match=r"NumPy engine cannot read this model.*Fix: engine='qkeras'"):
        qextract.extract(tmp_path / "m.keras", engine="numpy")
    assert_same_extraction(qextract.extract(tmp_path / "m.keras"), qextract.extract(model))  # auto: Keras


@pytest.mark.skipif(zoo.LEGACY, reason="Keras 3 .keras archives: the Keras 3 stack")
def test_auto_reads_a_keras3_archive_with_the_numpy_engine(tmp_path, monkeypatch, zoo_files):
    def no_keras(*args):
        raise AssertionError("auto took the Keras path")

    reference = qextract.extract(zoo.EXAMPLE, engine="qkeras")
    monkeypatch.setattr(engines, "_qkeras_engine", no_keras)
    assert_same_extraction(qextract.extract(zoo.EXAMPLE), reference)
    path = zoo_files["separable2d", ".keras"]
    model_json = tmp_path / "m.json"  # an architecture .json with a Keras 3 .weights.h5
    model = qextract.load_model(path)
    model_json.write_text(model.to_json())
    model.save_weights(tmp_path / "m.weights.h5")
    got = qextract.extract(model_json, weights=tmp_path / "m.weights.h5")
    monkeypatch.undo()
    assert_same_extraction(got, qextract.extract(path, engine="qkeras"))


def test_cli_engines_print_and_write_the_same(tmp_path, capsys):
    outputs = {}
    for engine in ("numpy", "qkeras"):
        assert main(["inspect", str(zoo.EXAMPLE), "--engine", engine]) == 0
        out = tmp_path / engine
        cmd = ["export", str(zoo.EXAMPLE), "--engine", engine, "--out", str(out), "--format", "npz,header,csv"]
        assert main(cmd) == 0
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
    monkeypatch.setattr(folding, "tensorflow_installed", lambda: False)
    for name in ("conv2d_batchnorm", "dense_binary", "lstm") if zoo.LEGACY else ("dense_binary", "lstm"):
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
    if zoo.LEGACY:  # a tf-keras weights file (Keras 3 writes .weights.h5, whose layers are found by name)
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
