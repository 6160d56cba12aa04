"""The qextract command: inspect, help, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zoo

import qextract
from qextract.cli import main

H5 = zoo.EXAMPLE


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\nfrom qextract.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules)"
    )
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
    assert set(table.columns) >= {
        "layer",
        "class",
        "tensor",
        "shape",
        "quantizer",
        "bits",
        "format",
        "codes_used",
        "exact",
    }
    row = table[(table.layer == "conv1") & (table.tensor == "kernel")].iloc[0]
    assert row["shape"] == "3x3x1x8" and row["exact"] == "exact" and row["bits"] == 8
    assert "auto_po2" in row["quantizer"]
    assert "convbn4" in text and "po2<5" in text


def test_inspect_layers_filter_and_unknown_layer(capsys):
    assert main(["inspect", str(H5), "--layers", "fc5"]) == 0
    assert "conv1" not in capsys.readouterr().out
    assert main(["inspect", str(H5), "--layers", "nope"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "no layer named 'nope'" in err and "fc5" in err


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["inspect", "/nonexistent/model.h5"], 3, "no such model file"),
        (["inspect", str(H5.parent / "digits_qcnn.json")], 3, "has no weights"),
    ],
)
def test_errors_are_one_line_with_exit_code(capsys, args, code, message):
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_usage_error_exits_2():
    r = subprocess.run([sys.executable, "-m", "qextract.cli", "inspect"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_report_writes_both_csvs_and_the_plot(capsys, tmp_path):
    layers, weights, png = tmp_path / "layers.csv", tmp_path / "weights.csv", tmp_path / "report.png"
    args = [
        "report",
        str(H5),
        "--data",
        "digits",
        "--csv",
        str(layers),
        "--weights-csv",
        str(weights),
        "--plot",
        str(png),
        "--mode",
        "isolated",
        "--batch-size",
        "500",
    ]
    assert main(args) == 0
    table = pd.read_csv(layers)
    model = qextract.load_model(H5)
    api = qextract.error_report(model, "digits", mode="isolated", batch_size=500, quiet=True)
    assert list(table["layer"]) == list(api["layer"])
    np.testing.assert_allclose(table["snr_db"].to_numpy(), api["snr_db"].to_numpy(), rtol=1e-9)
    w = pd.read_csv(weights)
    assert len(w) == sum(len(r) for r in qextract.extract(model))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_global_options_after_the_command_and_new_output_folders(capsys, tmp_path):
    out_csv = tmp_path / "new" / "deeper" / "t.csv"
    assert main(["inspect", str(H5), "--layers", "fc5", "--csv", str(out_csv), "--quiet"]) == 0
    assert out_csv.exists() and not [p for p in out_csv.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(qextract.QExtractError):  # --debug after the command: the error is re-raised
        main(["inspect", "/nonexistent.h5", "--debug"])
