"""A "core" install without TensorFlow: requirements-core.txt plus ``pip install --no-deps .`` in a fresh venv.

The venv gets the same versions of the core packages as this test's environment
(from pip's cache where it has them), never TensorFlow, tf-keras or QKeras. There
the bundled example is inspected and exported by the numpy engine, and the export
must equal, byte for byte, the one the Keras path writes here: under QKeras 0.9 the
``.h5`` (its folded ``convbn4``, which QKeras 0.9 folds with TensorFlow's rsqrt,
cannot be computed without TensorFlow and is refused by name), under Keras 3 the
``.keras`` archive whole (qkeras-v3 folds with ``1/sqrt``, which NumPy computes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import qextract
from qextract.examples import bundled_model
from qextract.generation import installed

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "qextract" / "examples" / "digits_qcnn.h5"
"""The QKeras 0.9 file: whatever the stack, its folded layer needs TensorFlow."""
LEGACY = installed().legacy_keras
CORE = ["numpy", "h5py", "pandas", "jsonschema"]
LAYERS = ["conv1", "act1", "dw2", "bn2", "act2", "sep3", "act4", "flatten", "fc5", "softmax"]  # all but convbn4
FORMATS = "npz,header,mem,coe,mif,csv"


def _run(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_requirements_core_lists_the_core_packages():
    lines = (ROOT / "requirements-core.txt").read_text().splitlines()
    names = [line.split(">")[0].split("=")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    assert names == CORE


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("core") / "venv"
    _run(sys.executable, "-m", "venv", venv)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run(*pip, *[f"{m}=={version(m)}" for m in CORE])  # the versions this test compares against
    # from a copy of the sources: pip builds in the tree it is given, and the work tree stays as it is
    source = venv.parent / "source"
    shutil.copytree(ROOT / "qextract", source / "qextract", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(*pip, "--no-deps", source)
    return venv


def test_the_core_install_has_no_tensorflow(core_venv):
    heavy = ("tensorflow", "tf_keras", "keras", "qkeras")
    code = f"import importlib.util as u; print([m for m in {heavy!r} if u.find_spec(m)])"
    assert _run(core_venv / "bin" / "python", "-c", code).stdout.strip() == "[]"


def test_the_core_install_exports_the_bundled_example_as_the_keras_path_does(core_venv, tmp_path):
    """QKeras 0.9: the .h5 but its folded layer; Keras 3: the .keras archive, its folded layer included."""
    qextract_cli = core_venv / "bin" / "qextract"
    example, layers = (EXAMPLE, LAYERS) if LEGACY else (bundled_model(), [*LAYERS[:7], "convbn4", *LAYERS[7:]])
    table = _run(qextract_cli, "inspect", example, "--layers", *layers).stdout
    assert "fc5" in table and "quantized_po2(5,1)" in table
    out = tmp_path / "core"
    _run(qextract_cli, "export", example, "--layers", *layers, "--out", out, "--layout", "ohwi", "--format", FORMATS)
    reference = qextract.export(
        example, tmp_path / "keras", layers=layers, layout="ohwi", formats=FORMATS.split(","), engine="qkeras"
    )
    mine, theirs = _files(out), _files(reference.out_dir)
    if qextract.__version__ == "0+unknown":  # this session runs qextract from its sources, not installed:
        # its manifest names no version, the installed copy's does; every other byte must be the same
        core_version = json.loads(mine["manifest.json"])["qextract_version"]
        theirs["manifest.json"] = theirs["manifest.json"].replace(
            b'"qextract_version": "0+unknown"', f'"qextract_version": "{core_version}"'.encode()
        )
    assert mine == theirs


def test_the_core_install_refuses_the_folded_layer_by_name(core_venv, tmp_path):
    proc = _run(core_venv / "bin" / "qextract", "export", EXAMPLE, "--out", tmp_path / "all", check=False)
    assert proc.returncode == 4, proc.stderr
    assert "layer 'convbn4' (QConv2DBatchnorm)" in proc.stderr and "rsqrt" in proc.stderr
    assert "--layers" in proc.stderr and not (tmp_path / "all").exists()
