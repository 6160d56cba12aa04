"""Trust in outputs: nothing the user had is lost, and usage mistakes are usage errors (exit 2).

Each case runs the real command line (``main([...])``) and checks the exit
code, the one-line message and what is on disk afterwards; SIGTERM runs a real
``python -m qextract.cli export`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zoo

import qextract
from qextract import errors
from qextract._keras import KerasEnvironmentError
from qextract.cli import build_parser, main
from qextract.errors import ExportError, UsageError
from qextract.layouts import Layout

H5 = zoo.EXAMPLE
WEIGHTED = ["conv1", "dw2", "bn2", "sep3", "convbn4", "fc5"]  # the digits model's layers with weights


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def usage_exit(capsys, *args: object) -> str:
    """Run a command argparse must refuse; its stderr (exit code 2 asserted)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    assert info.value.code == 2
    return capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("qextract: error")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith((".partial", ".old", ".tmp"))]


@pytest.fixture(scope="module")
def digits():
    return qextract.load_model(H5)


@pytest.fixture(scope="module")
def extraction(digits):
    return qextract.extract(digits)


@pytest.fixture
def model_in(tmp_path):
    """A folder A holding a copy of the model, as a user keeps it."""
    folder = tmp_path / "A"
    folder.mkdir()
    shutil.copy(H5, folder / "model.h5")
    return folder


# --- 2. nothing lost: --force -----------------------------------------------------------


def test_force_never_deletes_the_folder_holding_the_model(capsys, model_in):
    (model_in / "notes.txt").write_text("mine")
    before, files = sha(model_in / "model.h5"), listing(model_in)
    code, _, err = run(capsys, "export", model_in / "model.h5", "--out", model_in, "--force")
    assert code == 8 and "holds the input" in one_line(err) and "model.h5" in one_line(err)
    assert listing(model_in) == files and sha(model_in / "model.h5") == before
    assert leftovers(model_in.parent) == []


def test_force_never_deletes_a_previous_export_holding_the_model_or_a_link_to_it(capsys, tmp_path, extraction):
    out = tmp_path / "E"
    qextract.export(extraction, out)
    shutil.copy(H5, out / "model.h5")  # the model kept inside a previous export
    code, _, err = run(capsys, "export", out / "model.h5", "--out", out, "--force")
    assert code == 8 and "holds the input" in one_line(err)
    link = tmp_path / "link.h5"  # given through a symlink that points into the folder
    link.symlink_to(out / "model.h5")
    code, _, err = run(capsys, "export", link, "--out", out, "--force")
    assert code == 8 and "holds the input" in one_line(err)
    assert sha(out / "model.h5") == sha(H5)


def test_force_replaces_only_a_qextract_export(capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.bin").write_bytes(b"keep")
    code, _, err = run(capsys, "export", H5, "--out", mine, "--force")
    assert (
        code == 8
        and "is not a qextract export" in one_line(err)
        and "force=True only replaces a previous export" in err
    )
    (mine / "manifest.json").write_text(json.dumps({"files": [], "model": "someone else's"}))
    code, _, err = run(capsys, "export", H5, "--out", mine, "--force")
    assert code == 8 and "is not a qextract export" in one_line(err)
    assert (mine / "data.bin").read_bytes() == b"keep"


def test_force_keeps_files_added_to_a_previous_export(capsys, tmp_path, extraction):
    out = tmp_path / "E"
    qextract.export(extraction, out)
    (out / "my_notes.txt").write_text("mine")
    code, _, err = run(capsys, "export", H5, "--out", out, "--force")
    assert code == 8 and "my_notes.txt" in one_line(err)
    assert (out / "my_notes.txt").read_text() == "mine"


def test_force_replaces_a_previous_export_and_leaves_nothing_beside_it(capsys, tmp_path, extraction):
    out = tmp_path / "E"
    qextract.export(extraction, out, formats=["npz", "mem"])
    code, _, err = run(capsys, "export", H5, "--out", out, "--force", "--layout", "oihw", "--format", "npz,csv")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "oihw" and not list(out.glob("*.mem"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E"]


def test_api_export_protects_inputs_and_foreign_folders(tmp_path, extraction):
    out = tmp_path / "E"
    qextract.export(extraction, out)
    with pytest.raises(ExportError, match="holds the input"):
        qextract.export(extraction, out, force=True, protect=[out / "weights.npz"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x").write_text("keep")
    with pytest.raises(ExportError, match="is not a qextract export.*force=True only replaces a previous export"):
        qextract.export(extraction, mine, force=True)
    assert (mine / "x").read_text() == "keep"
    qextract.export(extraction, out, force=True)  # a previous export, nothing else in it: replaced


@pytest.mark.parametrize("out", [".", ".."])
def test_out_is_the_current_folder_or_holds_it(capsys, tmp_path, monkeypatch, out):
    here = tmp_path / "work"
    here.mkdir()
    (here / "mine.txt").write_text("keep")
    monkeypatch.chdir(here)
    for force in ([], ["--force"]):
        code, _, err = run(capsys, "export", H5, "--out", out, *force)
        assert code == 8 and "is the current folder or contains it" in one_line(err)
    assert listing(tmp_path) == ["work", "work/mine.txt"]  # no ..*.old, no .partial


# --- 2. nothing lost: single-file outputs ------------------------------------------------


@pytest.fixture
def inputs(tmp_path):
    shutil.copy(H5, tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, 8, 8, 1)).astype(np.float32))
    (tmp_path / "link.csv").symlink_to(tmp_path / "m.h5")
    return tmp_path


OVERWRITES = {
    "inspect --csv the model": (["inspect", "m.h5", "--csv", "m.h5"], "--csv"),
    "inspect --csv a symlink to the model": (["inspect", "m.h5", "--csv", "link.csv"], "--csv"),
    "report --csv the model": (["report", "m.h5", "--data", "x.npy", "--csv", "m.h5"], "--csv"),
    "report --weights-csv the data": (
        ["report", "m.h5", "--data", "x.npy", "--csv", "r.csv", "--weights-csv", "x.npy"],
        "--weights-csv",
    ),
    "report --plot the model": (["report", "m.h5", "--data", "x.npy", "--csv", "r.csv", "--plot", "m.h5"], "--plot"),
    "inspect --csv a folder": (["inspect", "m.h5", "--csv", "."], "is a folder"),
    "report two outputs the same": (
        ["report", "m.h5", "--data", "x.npy", "--csv", "r.csv", "--plot", "./r.csv"],
        "are the same file",
    ),
}


@pytest.mark.parametrize("name", list(OVERWRITES))
def test_single_file_outputs_never_replace_an_input(capsys, inputs, monkeypatch, name):
    args, message = OVERWRITES[name]
    monkeypatch.chdir(inputs)
    before = {p.name: sha(p) for p in inputs.iterdir()}
    code, _, err = run(capsys, *args)
    assert code == 8 and message in one_line(err), err
    assert {p.name: sha(p) for p in inputs.iterdir()} == before  # nothing changed, nothing added


# --- 2. nothing lost: SIGTERM ------------------------------------------------------------


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A model whose export takes seconds, so that a signal can arrive in the middle of the writing."""
    Q = zoo.Q
    inp = zoo.keras.Input((1024,))
    layer = Q.QDense(
        1024, kernel_quantizer=Q.quantized_bits(8, 0, 1), bias_quantizer=Q.quantized_bits(8, 0, 1), name="big"
    )
    path = tmp_path_factory.mktemp("big") / "big.h5"
    zoo.randomize(zoo.keras.Model(inp, layer(inp))).save(path)
    return path


def test_sigterm_during_export_cleans_up_like_sigint(tmp_path, big_model):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "qextract.cli",
        "export",
        str(big_model),
        "--out",
        str(out),
        "--format",
        "npz,header,mem,coe,mif,csv",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "qextract: terminated; no output was left behind" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no out, no .partial, no .old


# --- 2. nothing lost: file modes ---------------------------------------------------------


def test_outputs_get_the_modes_the_umask_gives_and_report_layers_filters_every_table(capsys, tmp_path, digits):
    umask = 0o027  # not the usual 0o022, and not what tempfile gives (folders 0o700, files 0o600)
    data = np.random.default_rng(1).random((64, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    previous = os.umask(umask)
    try:
        qextract.export(digits, tmp_path / "E", formats=["npz", "mem", "csv"])
        assert run(capsys, "inspect", H5, "--layers", "fc5", "--csv", tmp_path / "t.csv")[0] == 0
        reports = [tmp_path / n for n in ("layers.csv", "weights.csv", "r.png")]
        code, _, err = run(capsys, "report", H5, "--data", tmp_path / "x.npy", "--csv", reports[0],
                           "--weights-csv", reports[1], "--plot", reports[2], "--layers", "act1", "fc5")  # fmt: skip
        assert code == 0, err
    finally:
        os.umask(previous)
    files = [tmp_path / "t.csv", *reports, *(tmp_path / "E").iterdir()]
    assert oct((tmp_path / "E").stat().st_mode & 0o777) == oct(0o750)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o640)}
    # --layers keeps only those layers' rows in the layer table too, with the values of the full report
    table, weights = pd.read_csv(reports[0]), pd.read_csv(reports[1])
    full = qextract.error_report(digits, data, quiet=True)
    wanted = full[full["layer"].isin(["act1", "fc5"])].reset_index(drop=True)
    assert list(table["layer"]) == list(wanted["layer"]) and set(table["layer"]) == {"act1", "fc5"}
    np.testing.assert_allclose(table["snr_db"].to_numpy(), wanted["snr_db"].to_numpy(), rtol=1e-9)
    assert set(weights["layer"]) == {"fc5"}


def test_a_replaced_file_keeps_its_mode(capsys, tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    target.chmod(0o640)
    assert run(capsys, "inspect", H5, "--layers", "fc5", "--csv", target)[0] == 0
    assert target.stat().st_mode & 0o777 == 0o640 and "fc5" in target.read_text()


# --- 8. usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", H5],
        ["export", H5, "--out", "{tmp}/E"],
        ["report", H5, "--data", "digits", "--csv", "{tmp}/r.csv"],
    ],
)
def test_unknown_layer_names_are_usage_errors(capsys, tmp_path, command):
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in command]
    code, _, err = run(capsys, *args, "--layers", "fc5", "nope")
    line = one_line(err)
    assert code == 2 and "no layer named 'nope'" in line and all(n in line for n in WEIGHTED), line
    assert list(tmp_path.iterdir()) == []


def test_unknown_layer_names_raise_usage_error_in_the_api(digits, extraction, tmp_path):
    with pytest.raises(UsageError, match="no layer named 'nope'.*fc5"):
        qextract.extract(digits, layers=["nope"])
    with pytest.raises(UsageError, match="no layer named 'nope'.*conv1"):
        qextract.export(extraction, tmp_path / "E", layers=["fc5", "nope"])
    with pytest.raises(UsageError, match="no layer named 'nope'"):
        qextract.error_report(digits, "digits", layers=["nope"], quiet=True)
    assert issubclass(UsageError, ValueError) and UsageError.exit_code == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["verify", "{tmp}", "--model", H5, "--samples", "0"],
            "argument --samples: must be a whole number of at least 1, not 0",
        ),
        (["verify", "{tmp}", "--model", H5, "--samples", "-3"], "at least 1"),
        (
            ["export", H5, "--out", "{tmp}/E", "--word-bits", "0"],
            "argument --word-bits: must be a whole number from 1 to 64, not '0'",
        ),
        (["export", H5, "--out", "{tmp}/E", "--word-bits", "70000"], "from 1 to 64, not '70000'"),
        (["export", H5, "--out", "{tmp}/E", "--word-bits", "eight"], "from 1 to 64"),
        (
            ["export", H5, "--out", "{tmp}/E", "--layout", "nhwc"],
            "unknown layout 'nhwc'; choose one of hwio, ohwi, oihw (aliases: ",
        ),
    ],
)
def test_out_of_range_arguments_exit_2_naming_the_choices(capsys, tmp_path, args, message):
    err = usage_exit(capsys, *[str(a).replace("{tmp}", str(tmp_path)) for a in args])
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


def test_word_bits_without_a_memory_format_is_a_usage_error(capsys, tmp_path, extraction):
    code, _, err = run(capsys, "export", H5, "--out", tmp_path / "E", "--format", "npz,csv", "--word-bits", "16")
    line = one_line(err)
    assert code == 2 and "--word-bits" in line and all(f in line for f in ("header", "mem", "coe", "mif")), line
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="word_bits=16 changes only.*header, mem, coe, mif"):
        qextract.export(extraction, tmp_path / "E", formats=["npz"], word_bits=16)
    for bad in (0, 65, 70000, True, 8.0):
        with pytest.raises(UsageError, match="from 1 to 64"):
            qextract.export(extraction, tmp_path / "E", formats=["mem"], word_bits=bad)
    with pytest.raises(UsageError, match="unknown format"):
        qextract.export(extraction, tmp_path / "E", formats=["npz", "bogus"])
    assert list(tmp_path.iterdir()) == []


LAYOUT_SPECS = [
    "hwio",
    "OHWI",
    "Oihw",
    "tflite",
    "TFLite",
    "pytorch",
    "torch",
    "onnx",
    "caffe",
    "keras",
    "tf",
    "native",
    "HWIO->OHWI",
    "keras->oihw",
    "nhwc",
    "ohwi->hwio",
    "",
    "hwio->",
]


@pytest.mark.parametrize("spec", LAYOUT_SPECS)
def test_cli_accepts_exactly_the_layouts_the_api_accepts(capsys, spec):
    try:
        expected, refusal = Layout.parse(spec), None
    except qextract.QExtractError as e:
        expected, refusal = None, str(e)
    argv = ["export", str(H5), "--out", "x", f"--layout={spec}"]
    if expected is None:
        err = usage_exit(capsys, *argv)
        assert f"argument --layout: {refusal}" in err
    else:
        assert build_parser().parse_args(argv).layout == expected


def test_export_with_a_layout_alias(capsys, tmp_path):
    code, out, err = run(capsys, "export", H5, "--out", tmp_path / "E", "--layout", "TFLite", "--format", "npz")
    assert code == 0, err
    assert json.loads((tmp_path / "E" / "manifest.json").read_text())["layout"] == "ohwi" and "layout ohwi" in out


def test_an_export_of_zero_tensors_is_refused(capsys, tmp_path, extraction):
    code, _, err = run(capsys, "export", H5, "--out", tmp_path / "E", "--layers", "act1", "flatten")
    line = one_line(err)
    assert (
        code == 2 and "'act1', 'flatten'" in line and "no weight tensors" in line and all(n in line for n in WEIGHTED)
    ), line
    assert list(tmp_path.iterdir()) == []
    only_activations = qextract.Extraction(tuple(r for r in extraction if not len(r)), model_name="acts")
    with pytest.raises(UsageError, match="model 'acts' has no layer with weight tensors"):
        qextract.export(only_activations, tmp_path / "E")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d, "not a qextract export (no manifest.json)"),
        (lambda d: d / "missing", "no such folder"),
        (lambda d: (d / "manifest.json").write_text(json.dumps({"files": []})) and d, "not written by qextract"),
        (lambda d: (d / "manifest.json").write_text("{not json") and d, "not a readable manifest"),
    ],
)
def test_verify_on_a_folder_that_is_not_an_export_exits_12(capsys, tmp_path, make, message):
    folder = make(tmp_path)
    code, _, err = run(capsys, "verify", folder, "--model", H5)
    assert code == 12 and message in one_line(err) and "qextract export" in err
    with pytest.raises(errors.NotAnExportError, match=re.escape(message)):
        qextract.verify(folder, None)


def test_the_epilog_lists_every_exit_code():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    codes = {c.exit_code for c in subclasses(errors.QExtractError)} | {KerasEnvironmentError.exit_code, 0, 1, 130, 143}
    epilog = build_parser().epilog
    listed = {int(word) for word in epilog.replace(",", " ").split() if word.isdigit()}
    assert listed == codes and {12, 143} <= listed, epilog
