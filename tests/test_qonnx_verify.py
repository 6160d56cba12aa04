"""``qextract verify`` of a QONNX export: the file is run by qonnx's executor and compared with the model.

The references are the two independent executors: qonnx's ``execute_onnx`` and the Keras model's own
``predict``. Tampering with the file (one weight) or verifying against another model must fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import qextract
from qextract.cli import main
from qextract.errors import NotAnExportError
from qextract.verification.qonnx_check import verify_qonnx

pytest.importorskip("qonnx")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

H5 = Path(qextract.__file__).parent / "examples" / "digits_qcnn.h5"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qonnx") / "out"
    assert main(["export", str(H5), "--format", "qonnx", "--out", str(out)]) == 0
    return out


def test_a_qonnx_export_verifies_bit_for_bit(exported, capsys):
    capsys.readouterr()
    assert main(["verify", str(exported), "--model", str(H5)]) == 0
    out = capsys.readouterr().out
    assert "bit for bit on 1000 inputs" in out and "act1" in out
    table = verify_qonnx(exported / "model.onnx", qextract.load_model(H5), samples=200)
    assert table["passed"].all() and table.attrs["samples"] == 200
    assert table["quantized"].any()
    assert (table.loc[table["quantized"], "max_abs_diff"] == 0).all()


def test_a_changed_weight_in_the_file_is_found(exported, tmp_path, capsys):
    changed = tmp_path / "changed.onnx"
    proto = onnx.load(str(exported / "model.onnx"))
    biggest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(biggest).copy()
    w.reshape(-1)[0] += np.float32(0.25)  # off by more than any LSB in the example
    biggest.CopyFrom(numpy_helper.from_array(w, biggest.name))
    onnx.save(proto, str(changed))
    capsys.readouterr()
    assert main(["verify", str(changed), "--model", str(H5), "--samples", "300"]) == 9
    err = capsys.readouterr().err
    assert "layer output(s) differ" in err


def test_another_model_does_not_verify(exported, tmp_path, capsys):
    other = qextract.load_model(H5)
    kernel = other.get_layer("conv1").kernel
    kernel.assign(kernel.numpy()[..., ::-1])  # the same values, channels swapped
    table = verify_qonnx(exported, other, samples=100)
    assert not table.set_index("layer").loc["act1", "passed"]


def test_files_qextract_did_not_write_are_not_exports(exported, tmp_path, capsys):
    proto = onnx.load(str(exported / "model.onnx"))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(NotAnExportError, match="qextract did not write"):
        verify_qonnx(foreign, qextract.load_model(H5))
    capsys.readouterr()
    assert main(["verify", str(foreign), "--model", str(H5)]) == 12
    # a folder holding model.onnx *and* a manifest is a weight export, verified as such
    both = tmp_path / "both"
    shutil.copytree(exported, both)
    (both / "manifest.json").write_text("{}")
    assert main(["verify", str(both), "--model", str(H5)]) == 12
