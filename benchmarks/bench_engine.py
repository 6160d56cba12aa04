"""The NumPy engine: ``qextract inspect`` / ``export`` of the bundled example against reading the file with h5py.

Whole processes, as a user (or a CI job of an FPGA repository) runs them: each
command is a fresh ``python`` process, timed alternately with the baseline, a
fresh process that imports h5py and reads the model's architecture and every
weight array (what any tool must do at least). Best of ``startup_repeats``.

The bundled example's ``convbn4`` (QConv2DBatchnorm) is asked of QKeras: TensorFlow
folds its batch norm with a CPU-specific ``rsqrt`` that NumPy cannot reproduce, so
the NumPy rows leave that one layer out (``--layers``), and a separate row shows the
whole example with ``--engine auto``, which imports TensorFlow for it. A fresh
process also checks that the NumPy rows import no TensorFlow, Keras or QKeras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ._harness import ROOT, Contender, Row, best_of

EXAMPLE = ROOT / "qextract" / "examples" / "digits_qcnn.h5"
FOLDED = "convbn4"
LAYERS = ["conv1", "act1", "dw2", "bn2", "act2", "sep3", "act4", "flatten", "fc5", "softmax"]
HEAVY = ("tensorflow", "tf_keras", "keras", "qkeras")

_READ = """
import sys, h5py, numpy as np
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        np.asarray(obj)
with h5py.File(sys.argv[1], "r") as f:
    f.attrs["model_config"]
    f.visititems(visit)
"""
_CLI = "import sys; from qextract.cli import main; sys.exit(main(sys.argv[1:]))"
_CHECK = f"""
import contextlib, io, json, sys
from qextract.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main(a) for a in json.loads(sys.argv[1])]
print(json.dumps([codes, sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})]))
"""


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def run(repeats: int = 5, whole: bool = True) -> list[Row]:
    """The rows; ``whole``: also the whole example through the auto and qkeras engines (TensorFlow: slow)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        inspect = ["inspect", str(EXAMPLE), "--engine", "numpy", "--layers", *LAYERS]
        export = ["export", str(EXAMPLE), "--engine", "numpy", "--layers", *LAYERS, "--out", out, "--force"]
        everything = ["inspect", str(EXAMPLE)]
        keras = ["inspect", str(EXAMPLE), "--engine", "qkeras"]
        times = best_of(
            {
                "h5py": Contender(lambda: _run(["-c", _READ, str(EXAMPLE)])),
                "inspect": Contender(lambda: _run(["-c", _CLI, *inspect])),
                "export": Contender(lambda: _run(["-c", _CLI, *export])),
            },
            repeats,
        )
        slow = {}
        if whole:
            slow = best_of(
                {
                    "auto": Contender(lambda: _run(["-c", _CLI, *everything])),
                    "qkeras": Contender(lambda: _run(["-c", _CLI, *keras])),
                },
                min(repeats, 3),
                warmup=False,
            )
        codes, heavy = json.loads(_run(["-c", _CHECK, json.dumps([inspect, export])]).stdout.strip().splitlines()[-1])
    base = min(times["h5py"])
    note = (
        f"bundled example without {FOLDED} (QConv2DBatchnorm: asked of QKeras), fresh process, best of {repeats}; "
        "baseline: a fresh process reading the .h5's architecture and every weight array with h5py"
    )
    rows = [
        Row(
            "qextract inspect, numpy engine vs h5py read",
            min(times["inspect"]),
            base,
            target="<= 3.00x",
            met=min(times["inspect"]) <= 3 * base,
            note=note,
            samples={k: times[k] for k in ("inspect", "h5py")},
        ),
        Row(
            "qextract export npz+header+mem, numpy engine vs h5py read",
            min(times["export"]),
            base,
            target="<= 3.00x",
            met=min(times["export"]) <= 3 * base,
            note=note,
            samples={k: times[k] for k in ("export", "h5py")},
        ),
        Row(
            "TensorFlow imported by the numpy engine",
            "yes: " + ", ".join(heavy[:3]) if heavy else "no",
            None,
            unit="",
            target="no",
            met=not heavy and codes == [0, 0],
            note="the inspect and export above, in one fresh process",
        ),
    ]
    if not whole:
        return rows
    return [
        *rows,
        Row(
            "qextract inspect, whole example, auto engine vs h5py read",
            min(slow["auto"]),
            base,
            target="-",
            note=f"{FOLDED} asked of QKeras, so TensorFlow is imported; qkeras engine: {min(slow['qkeras']):.2f} s",
            samples=slow,
        ),
    ]
