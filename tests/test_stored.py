"""The TensorFlow-free model file reader: what it reads equals what Keras loads, bit for bit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import zoo

import qextract
from qextract import _keras
from qextract.errors import ModelLoadError, UnsupportedError
from qextract.reading.stored import read_stored

EXAMPLES = Path(qextract.__file__).parent / "examples"


def _assert_same_as_keras(stored, model) -> None:
    keras_layers = {layer.name: layer for layer in model.layers}
    # a Sequential's file lists its InputLayer, which Sequential.layers leaves out
    stored_layers = [s for s in stored if s.name in keras_layers or s.class_name != "InputLayer"]
    assert [s.name for s in stored_layers] == [layer.name for layer in model.layers]
    for s in stored_layers:
        layer = keras_layers[s.name]
        assert s.class_name == type(layer).__name__
        path = _keras.generation().variable_path
        expected = [(path(w).split(":")[0][len(layer.name) + 1 :], w.numpy()) for w in layer.weights]
        got_weights = list(s.weights.items())
        if str(stored.keras_version).split(".")[0] != str(_keras.generation().keras_major):
            # a QKeras 0.9 file read beside the same model under Keras 3, whose folded layer lists its variables in
            # another order: compare them by name
            expected, got_weights = sorted(expected, key=lambda e: e[0]), sorted(got_weights)
        # Keras renames sub-layers loaded twice in a session (batch_normalization_1): compare the weight's own name
        assert [n.split("/")[-1] for n, _ in got_weights] == [n.split("/")[-1] for n, _ in expected], s.name
        for (name, value), (_, got) in zip(expected, got_weights):
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes() and got.shape == value.shape, name


@pytest.mark.parametrize("source", ["h5", "json"])
def test_the_bundled_example_reads_as_keras_loads_it(source):
    if source == "h5":
        stored = read_stored(EXAMPLES / "digits_qcnn.h5")
    else:
        stored = read_stored(EXAMPLES / "digits_qcnn.json", EXAMPLES / "digits_qcnn_weights.h5")
    model = qextract.load_model(zoo.EXAMPLE)  # under Keras 3 the same model and weights from the .keras file
    assert stored.name == model.name and stored.class_name == "Functional"
    _assert_same_as_keras(stored, model)
    assert stored["act1"].inbound == ("conv1",)
    assert stored["act1"].config["activation"] == "quantized_relu(6,2)"
    assert "batch_normalization/moving_variance" in stored["convbn4"].weights


@pytest.mark.parametrize("suffix", [".h5"] if zoo.LEGACY else [".h5", ".keras"])
def test_a_sequential_model_saved_in_this_session(tmp_path, suffix):
    model = zoo.randomize(
        _keras.keras().Sequential(
            [
                _keras.keras().Input((5, 5, 2)),
                zoo.Q.QConv2D(3, 3, kernel_quantizer=zoo.KQ, bias_quantizer=zoo.BQ, name="c"),
                zoo.Q.QBatchNormalization(name="bn"),
                _keras.keras().layers.Flatten(name="f"),
                zoo.Q.QDense(2, kernel_quantizer=zoo.KQ, name="d"),
            ],
            name="seq",
        )
    )
    path = tmp_path / f"seq{suffix}"
    model.save(path)
    stored = read_stored(path)
    assert stored.class_name == "Sequential" and stored.name == "seq"
    assert stored.generation is _keras.generation()  # read from the file
    _assert_same_as_keras(stored, model)


@pytest.mark.skipif(zoo.LEGACY, reason="Keras 3 files: the Keras 3 stack")
def test_the_keras3_example_archive_reads_as_keras_loads_it():
    stored = read_stored(zoo.EXAMPLE)
    model = qextract.load_model(zoo.EXAMPLE)
    assert stored.name == model.name and stored.generation is _keras.generation()
    _assert_same_as_keras(stored, model)
    assert stored["act1"].inbound == ("conv1",)
    assert "batch_normalization/moving_variance" in stored["convbn4"].weights


def test_reading_imports_no_tensorflow():
    code = (
        "import sys; from qextract.reading.stored import read_stored; "
        f"m = read_stored({str(EXAMPLES / 'digits_qcnn.h5')!r}); "
        "assert m['conv1'].weights['kernel'].shape == (3, 3, 1, 8); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'qkeras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_what_it_does_not_read_is_refused_by_name(tmp_path):
    keras = _keras.keras()
    inner = keras.Sequential([keras.Input((4,)), zoo.Q.QDense(3, kernel_quantizer=zoo.KQ, name="d")], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner], name="outer")
    outer.save(tmp_path / "nested.h5")
    with pytest.raises(UnsupportedError, match="layer 'inner' is a nested model"):
        read_stored(tmp_path / "nested.h5")
    wrapped = keras.Sequential(
        [keras.Input((2, 4)), keras.layers.TimeDistributed(zoo.Q.QDense(3, kernel_quantizer=zoo.KQ), name="td")]
    )
    wrapped.save(tmp_path / "wrapped.h5")
    with pytest.raises(UnsupportedError, match="layer 'td' is a TimeDistributed wrapper"):
        read_stored(tmp_path / "wrapped.h5")
    recurrent = keras.Sequential([keras.Input((2, 4)), zoo.Q.QLSTM(3, name="r")])
    recurrent.save(tmp_path / "m.keras")
    if zoo.LEGACY:  # tf-keras writes Keras 3's archive layout too; its variable orders are not proven here
        with pytest.raises(UnsupportedError, match="archive written by Keras 2"):
            read_stored(tmp_path / "m.keras")
    else:  # a class whose numbered variables qextract has no names for
        with pytest.raises(UnsupportedError, match=r"layer '\w+' \(QLSTM\) numbers its variables"):
            read_stored(tmp_path / "m.keras")


def test_broken_files_are_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no model architecture"):
        read_stored(EXAMPLES / "digits_qcnn_weights.h5")
    with pytest.raises(ModelLoadError, match="holds no weights"):
        read_stored(EXAMPLES / "digits_qcnn.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_stored(bad_json, EXAMPLES / "digits_qcnn_weights.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="not an HDF5 file"):
        read_stored(text)
    cut = tmp_path / "cut.h5"
    shutil.copy(EXAMPLES / "digits_qcnn.h5", cut)
    with h5py.File(cut, "r+") as f:
        del f["model_weights/conv1/conv1/kernel:0"]
    with pytest.raises(ModelLoadError, match="layer 'conv1' lists weight 'conv1/kernel:0'"):
        read_stored(cut)
    not_model = tmp_path / "layer.json"
    not_model.write_text(json.dumps({"class_name": "Dense", "config": {"units": 3}}))
    with pytest.raises(UnsupportedError, match="not a Sequential or functional model"):
        read_stored(not_model, EXAMPLES / "digits_qcnn_weights.h5")
