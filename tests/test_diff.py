"""``qextract.diff``: two exports compared tensor by tensor, whatever their layouts.

The expected differences are made by hand in the test (one weight moved by a known number of
LSBs, a layer left out, a quantizer narrowed), so the reference is the edit itself, not qextract.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import qextract
from qextract import _keras
from qextract._keras import qkeras
from qextract.errors import NotAnExportError, VerificationError

KQ = "quantized_bits(8,0,alpha=1)"  # LSB 2**-7, codes -128..127 (not narrow)
LSB = 2.0**-7


def _model(kernel_quantizer: str = KQ, seed: int = 0) -> object:
    q = qkeras()
    keras = _keras.keras()
    inp = keras.Input((6, 6, 2))
    x = q.QConv2D(3, 3, padding="same", kernel_quantizer=kernel_quantizer, bias_quantizer=KQ, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    out = q.QDense(4, kernel_quantizer=kernel_quantizer, bias_quantizer=KQ, name="fc")(x)
    model = keras.Model(inp, out, name="small")
    rng = np.random.default_rng(seed)
    for w in model.weights:  # values on the 8-bit grid, away from the clip: quantization keeps them
        w.assign(rng.integers(-60, 60, w.shape).astype(np.float32) * LSB)
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff")
    base = _model()
    moved = _model()
    kernel = moved.get_layer("conv").kernel
    k = kernel.numpy()
    k[1, 2, 0, 1] += 3 * LSB  # one code moved by +3
    kernel.assign(k)
    out = {
        "hwio": root / "hwio",
        "oihw": root / "oihw",
        "moved": root / "moved",
        "fc_only": root / "fc_only",
        "narrow": root / "narrow",
    }
    qextract.export(base, out["hwio"], formats=["npz", "mem"])
    qextract.export(base, out["oihw"], layout="oihw", formats=["npz", "header"])
    qextract.export(moved, out["moved"], layout="ohwi")
    qextract.export(base, out["fc_only"], layers=["fc"])
    qextract.export(_model("quantized_bits(6,0,alpha=1)"), out["narrow"])
    return out


def test_the_same_weights_in_two_layouts_are_the_same(exports):
    d = qextract.diff(exports["hwio"], exports["oihw"])
    assert not d.differs, d.differences
    assert set(d.table["tensor"]) == {"conv/kernel", "conv/bias", "fc/kernel", "fc/bias"}
    assert (d.table["codes_differ"] == 0).all() and (d.table["values_differ"] == 0).all()
    assert any(h.startswith("layout: hwio vs oihw") for h in d.header)
    assert any(h.startswith("formats: ") for h in d.header)


def test_one_moved_code_is_found_with_its_native_index_and_size(exports):
    d = qextract.diff(exports["hwio"], exports["moved"])  # hwio against ohwi: compared in native order
    assert d.differs
    rows = d.differences
    assert list(rows["tensor"]) == ["conv/kernel"]
    row = rows.iloc[0]
    assert row["differs_in"] == "codes,values"
    assert row["codes_differ"] == 1 and row["max_code_delta"] == 3
    assert row["values_differ"] == 1 and row["max_value_delta"] == pytest.approx(3 * LSB)
    assert row["first_index"] == (1, 2, 0, 1)
    assert row["elements"] == 3 * 3 * 2 * 3


def test_tensors_in_one_export_only(exports):
    d = qextract.diff(exports["fc_only"], exports["hwio"])
    status = dict(zip(d.table["tensor"], d.table["status"]))
    assert status == {"fc/kernel": "same", "fc/bias": "same", "conv/kernel": "only in B", "conv/bias": "only in B"}
    assert qextract.diff(exports["hwio"], exports["fc_only"]).table.set_index("tensor").loc["conv/bias", "status"] == (
        "only in A"
    )


def test_a_different_number_format_is_named_and_values_still_compared(exports):
    d = qextract.diff(exports["hwio"], exports["narrow"])
    kernels = d.table.set_index("tensor").loc[["conv/kernel", "fc/kernel"]]
    assert (kernels["status"] == "differs").all()
    assert all(w.startswith("format,scale") for w in kernels["differs_in"])
    assert kernels["codes_differ"].isna().all()  # codes of two formats are not comparable; values are
    # 6-bit alpha=1: LSB 2**-5 and clip at +-1: every weight that is not a multiple of 4 LSBs changes
    assert (kernels["values_differ"] > 0).all()
    biases = d.table.set_index("tensor").loc[["conv/bias", "fc/bias"]]
    assert (biases["status"] == "same").all()


def test_a_folder_that_is_not_an_export_or_was_changed_is_refused_by_name(exports, tmp_path):
    with pytest.raises(NotAnExportError):
        qextract.diff(exports["hwio"], tmp_path)
    changed = tmp_path / "changed"
    shutil.copytree(exports["hwio"], changed)
    mem = next(changed.glob("*.mem"))
    mem.write_text(mem.read_text().replace("0", "1", 1))
    with pytest.raises(VerificationError, match=mem.name):
        qextract.diff(changed, exports["hwio"])


def test_cli_prints_the_differences_and_exits_13_when_exports_differ(exports, capsys):
    from qextract.cli import main

    assert main(["diff", str(exports["hwio"]), str(exports["oihw"])]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "layout: hwio vs oihw" in out
    assert main(["diff", str(exports["hwio"]), str(exports["moved"])]) == 13
    out = capsys.readouterr().out
    assert "conv/kernel" in out and "codes,values" in out and "1 of 4 tensors differ" in out
