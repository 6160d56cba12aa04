"""The qextract command: inspect, help, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import qextract
from qextract.cli import main

H5 = Path(qextract.__file__).parent / "examples" / "digits_qcnn.h5"


def test_help_does_not_import_tensorflow():
    code = "import sys\nfrom qextract.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('tensorflow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().endswith("False"), r.stderr
    assert "inspect" in r.stdout


def test_inspect_prints_a_row_per_tensor(capsys, tmp_path):
    out_csv = tmp_path / "t.csv"
    assert main(["inspect", str(H5), "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    table = pd.read_csv(out_csv)
    ex = qextract.extract(qextract.load_model(H5))
    n_tensors = sum(len(r) for r in ex)
    assert (table["tensor"].str.startswith("(") == False).sum() == n_tensors  # noqa: E712
    assert set(table.columns) >= {"layer", "class", "tensor", "shape", "quantizer", "bits", "format", "codes_used", "exact"}
    row = table[(table.layer == "conv1") & (table.tensor == "kernel")].iloc[0]
    assert row["shape"] == "3x3x1x8" and row["exact"] == "exact" and row["bits"] == 8
    assert "auto_po2" in row["quantizer"]
    assert "convbn4" in text and "po2<5" in text


def test_inspect_layers_filter_and_unknown_layer(capsys):
    assert main(["inspect", str(H5), "--layers", "fc5"]) == 0
    assert "conv1" not in capsys.readouterr().out
    assert main(["inspect", str(H5), "--layers", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no layer named 'nope'" in err and "fc5" in err


@pytest.mark.parametrize("args,code,message", [
    (["inspect", "/nonexistent/model.h5"], 3, "no such model file"),
    (["inspect", str(H5.parent / "digits_qcnn.json")], 3, "has no weights"),
])
def test_errors_are_one_line_with_exit_code(capsys, args, code, message):
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_usage_error_exits_2():
    r = subprocess.run([sys.executable, "-m", "qextract.cli", "inspect"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
