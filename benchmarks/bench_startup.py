"""Start-up: ``qextract --help`` as a user runs it, and proof that it imports no TensorFlow.

The command is timed as a subprocess, best of 5, next to a bare ``python -c pass``
(the interpreter's own start-up, the floor). A second fresh process imports
:mod:`qextract.cli`, builds the parser, runs ``main(["--help"])`` and lists
every TensorFlow/Keras/QKeras module then loaded: there must be none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._harness import ROOT, Contender, Row, best_of

HEAVY = ("tensorflow", "tf_keras", "keras", "qkeras")

_CHECK = f"""
import contextlib, io, json, sys
import qextract.cli as cli
cli.build_parser()
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main(["--help"])
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps(heavy))
"""


def _command() -> list[str]:
    """The installed ``qextract`` script beside this interpreter, else the same entry point via ``-c``."""
    script = Path(sys.executable).with_name("qextract")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("qextract")
    if found:
        return [found, "--help"]
    return [sys.executable, "-c", "import sys; from qextract.cli import main; sys.exit(main(['--help']))"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def run(repeats: int = 5) -> list[Row]:
    cmd = _command()
    times = best_of(
        {
            "help": Contender(lambda: _run(cmd)),
            "python": Contender(lambda: _run([sys.executable, "-c", "pass"])),
        },
        repeats,
    )
    heavy = json.loads(_run([sys.executable, "-c", _CHECK]).stdout.strip().splitlines()[-1])
    ours, floor = min(times["help"]), min(times["python"])
    shown = (
        " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
        if cmd[0] != sys.executable
        else "python -c main(['--help'])"
    )
    return [
        Row(
            "qextract --help (wall time)",
            ours,
            floor,
            target="< 0.5 s",
            met=ours < 0.5,
            note=f"`{shown}` in a subprocess, best of {repeats}; baseline: `python -c pass`",
            samples=times,
        ),
        Row(
            "TensorFlow imported by --help",
            "yes: " + ", ".join(heavy[:3]) if heavy else "no",
            None,
            unit="",
            target="no",
            met=not heavy,
            note="after import qextract.cli, build_parser() and main(['--help']) in a fresh process",
        ),
    ]
