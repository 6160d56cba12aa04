"""Loading every published model form, bad files, and the promise not to change anything."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract.errors import ModelLoadError

EXAMPLES = Path(qextract.__file__).parent / "examples"
LEGACY_H5 = EXAMPLES / "digits_qcnn.h5"
H5 = zoo.EXAMPLE  # the bundled model as the installed stack reads it (.h5, or .keras for qkeras-v3)
WEIGHTS = EXAMPLES / "digits_qcnn_weights.h5"


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.rglob("*")) if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def values(model):
    return [w.numpy().copy() for w in model.weights]


@pytest.fixture(scope="module")
def reference():
    m = qextract.load_model(H5)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return m, x, qextract.extract(m)


@pytest.fixture(scope="module")
def arch(reference, tmp_path_factory):
    """The bundled model as an architecture .json and a weights file: QKeras 0.9's published form, or written
    by Keras 3 from the reference model (Keras 3 names a weights file .weights.h5)."""
    if zoo.LEGACY:
        return EXAMPLES / "digits_qcnn.json", WEIGHTS
    d = tmp_path_factory.mktemp("arch")
    (d / "digits_qcnn.json").write_text(reference[0].to_json())
    reference[0].save_weights(d / "digits_qcnn.weights.h5")
    return d / "digits_qcnn.json", d / "digits_qcnn.weights.h5"


def _weights_file(d: Path) -> Path:
    return d / ("other.h5" if zoo.LEGACY else "other.weights.h5")


def _same_extraction(a, b):
    assert [r.name for r in a] == [r.name for r in b]
    for ta, tb in zip(a.tensors(), b.tensors()):
        assert ta.key == tb.key
        np.testing.assert_array_equal(ta.values, tb.values)
        np.testing.assert_array_equal(ta.codes, tb.codes)


def test_h5_and_json_plus_weights_give_the_same_extraction(reference, arch):
    _, _, ex = reference
    _same_extraction(ex, qextract.extract(qextract.load_model(arch[0], weights=arch[1])))


@pytest.mark.parametrize("form", [".keras", "savedmodel"])
def test_keras_and_savedmodel_forms(tmp_path, reference, form):
    model, x, ex = reference
    target = tmp_path / ("m.keras" if form == ".keras" else "saved")
    if form == "savedmodel" and not zoo.LEGACY:  # Keras 3 writes a SavedModel only by export, and cannot load one
        model.export(target, verbose=False)
        with pytest.raises(ModelLoadError, match="a SavedModel folder, which Keras 3 cannot load as a model"):
            qextract.load_model(target)
        return
    model.save(target, **({"save_format": "tf", "include_optimizer": False} if form == "savedmodel" else {}))
    loaded = qextract.load_model(target)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    _same_extraction(ex, qextract.extract(loaded))


def test_extraction_changes_nothing(tmp_path, reference):
    path = tmp_path / f"model{H5.suffix}"
    shutil.copy(H5, path)
    before_file = digest(path)
    model = qextract.load_model(path)
    x = reference[1]
    before = values(model)
    pred = model.predict(x, verbose=0)
    scales = {
        id(q): getattr(q, "scale", None)
        for layer in model.layers
        for q in getattr(layer, "quantizers", [])
        if q is not None
    }
    qextract.extract(model)
    for a, b in zip(before, values(model)):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(model.predict(x, verbose=0), pred)
    after = {
        id(q): getattr(q, "scale", None)
        for layer in model.layers
        for q in getattr(layer, "quantizers", [])
        if q is not None
    }
    assert all(after[k] is v for k, v in scales.items())
    assert digest(path) == before_file


@pytest.mark.parametrize("name", ["batchnorm_no_center", "conv2d_batchnorm", "lstm", "dense_binary"])
def test_extraction_changes_no_weight_of_zoo_models(name):
    model = zoo.randomize(zoo.CASES[name].build())
    before = values(model)
    qextract.extract(model)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, values(model)))


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda d: d / "missing.h5", "no such model file"),
        (lambda d: d, "not a SavedModel"),
        (lambda d: _bad(d, "random.h5", np.random.default_rng(0).bytes(4096)), "not a readable HDF5 file"),
        (lambda d: _bad(d, "trunc.h5", LEGACY_H5.read_bytes()[:5000]), "not a readable HDF5 file"),
        (lambda d: _bad(d, "notjson.json", b"{ this is not json"), "not a JSON model architecture"),
        (lambda d: _bad(d, "model.txt", b"hello"), "unknown model file type"),
        (lambda d: shutil.copy(WEIGHTS, d / "weights_only.h5") and d / "weights_only.h5", "holds weights only"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(ModelLoadError, match=pattern) as info:
        qextract.load_model(path)
    assert str(path) in str(info.value)


def test_json_without_weights_and_mismatched_weights(tmp_path, arch):
    with pytest.raises(ModelLoadError, match="has no weights"):
        qextract.load_model(arch[0])
    other = _weights_file(tmp_path)
    zoo.randomize(zoo.CASES["dense"].build()).save_weights(other)
    with pytest.raises(ModelLoadError, match="weights do not fit") as info:
        qextract.load_model(arch[0], weights=other)
    assert str(other) in str(info.value)


def test_unknown_layer_class_is_named(tmp_path, arch):
    spec = json.loads(arch[0].read_text())
    for layer in spec["config"]["layers"]:
        if layer["class_name"] == "QDense":
            layer.update(class_name="MyCustomDense", module=None, registered_name="MyCustomDense")
    changed = tmp_path / "arch.json"
    changed.write_text(json.dumps(spec))
    with pytest.raises(ModelLoadError, match="MyCustomDense"):
        qextract.load_model(changed, weights=arch[1])


@zoo.legacy_only
def test_keras3_already_imported_is_a_clear_error():
    code = "import tensorflow, qextract\nfrom qextract._keras import tf\ntf()"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert r.returncode != 0
    assert "Keras 3" in r.stderr and "import qextract before tensorflow, qkeras and tf_keras" in r.stderr


@zoo.legacy_only
def test_importing_qextract_selects_legacy_keras_lazily():
    code = (
        "import sys, os, qextract\nassert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
        "assert 'tensorflow' not in sys.modules\nprint('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr


def test_no_api_entry_point_changes_the_model(tmp_path):
    model = qextract.load_model(H5)
    before = values(model)
    x = np.random.default_rng(1).random((8, 8, 8, 1), dtype=np.float32)
    pred = model.predict(x, verbose=0)
    ex = qextract.extract(model)
    qextract.export(model, tmp_path / "e", formats=["npz", "header"], dense_as_conv=True)
    qextract.verify(tmp_path / "e", model)
    qextract.float_model(model)
    for mode in ("propagated", "isolated"):
        qextract.error_report(model, x, mode=mode, quiet=True)
    qextract.weight_report(ex)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, values(model)))
    np.testing.assert_array_equal(model.predict(x, verbose=0), pred)
