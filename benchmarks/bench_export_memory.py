"""Export memory: peak RSS of ``qextract.export`` beyond the loaded model, for QDense stacks of growing size.

Each measurement is a fresh process (:mod:`benchmarks._export_probe`): it builds a stack of 2048-unit QDense
layers (4.2 M weights, 16.0 MB of float32, each), warms up on a small model, resets the peak and exports
``npz,header,mem``. Reported: the peak beyond the RSS before the export, as a multiple of the largest layer's
float weights, and the export's time.

With ``--baseline REV`` the same probes run on that revision's code too (``git archive REV`` into a temporary
folder, put first on ``PYTHONPATH``), alternating with this tree's, each size back to back; the rows then
compare the two in the same run. Without it there is no baseline, only the figures and the target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._harness import ROOT, Row, run_probe
from ._models import Context

FORMATS = "npz,header,mem"
PROBE = Path(__file__).resolve().parent / "_export_probe.py"


def probe(layers: int, units: int, code: Path, formats: str = FORMATS) -> dict[str, Any]:
    """One fresh process exporting a ``layers`` x ``units`` stack with the qextract found in ``code``.

    The probe runs as a script (not ``-m``) so that the folder it is started from does not decide which
    qextract is imported: ``code`` comes first on ``PYTHONPATH``.
    """
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1")
    argv = [str(PROBE), "--layers", str(layers), "--units", str(units), "--formats", formats]
    what = f"export probe ({layers}x{units}, {code})"
    result = run_probe(argv, what, timeout=1800, cwd=tempfile.gettempdir(), env=env)
    if Path(result["code"]).resolve() != code.resolve():
        raise RuntimeError(f"the probe imported qextract from {result['code']}, not {code}")
    return result


@contextmanager
def revision_tree(rev: str) -> Iterator[Path]:
    """The files of git revision ``rev`` of this repository in a temporary folder (no git state is changed)."""
    folder = Path(tempfile.mkdtemp(prefix="qextract-baseline-"))
    try:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, timeout=120, check=True)
        tar = folder / "tree.tar"
        tar.write_bytes(archive.stdout)
        with tarfile.open(tar) as t:
            t.extractall(folder / "tree", filter="data")
        yield folder / "tree"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _git_short(rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or rev


def run(ctx: Context, baseline: str | None = None) -> list[Row]:
    sizes = ctx.sizes.export_stacks
    units = ctx.sizes.export_units
    repeats = 1 if ctx.sizes.repeats == 1 else 2
    if baseline is None:
        return _rows({n: [probe(n, units, ROOT) for _ in range(repeats)] for n in sizes}, None, None)
    with revision_tree(baseline) as tree:
        ours: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        theirs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        for n in sizes:
            for _ in range(repeats):  # alternating, back to back
                ours[n].append(probe(n, units, ROOT))
                theirs[n].append(probe(n, units, tree))
    return _rows(ours, theirs, _git_short(baseline))


def _rows(
    ours: dict[int, list[dict[str, Any]]], theirs: dict[int, list[dict[str, Any]]] | None, rev: str | None
) -> list[Row]:
    rows = []
    for n, runs in ours.items():
        first = runs[0]
        layer = first["largest_layer_mb"]
        weights = f"{first['weights'] / 1e6:.1f} M weights ({n} x {first['largest_layer_weights'] / 1e6:.1f} M)"
        beyond = min(r["beyond_mb"] for r in runs)
        rows.append(
            Row(
                f"export {FORMATS} peak RSS beyond loading, {weights}, vs largest layer",
                beyond,
                layer,
                unit="MB",
                target="<= 2.00x",
                met=beyond <= 2 * layer,
                note=f"baseline: the largest layer's float32 weights; fresh process each, peak (VmHWM) reset after "
                f"a warm-up export; runs {', '.join(f'{mb:.0f}' for mb in (r['beyond_mb'] for r in runs))} MB",
                samples={"beyond_mb": [r["beyond_mb"] for r in runs]},
            )
        )
        if theirs is None:
            continue
        before = min(r["beyond_mb"] for r in theirs[n])
        rows.append(
            Row(
                f"export {FORMATS} peak RSS beyond loading, {weights}, vs {rev}",
                beyond,
                before,
                unit="MB",
                target="-",
                note=f"{rev}: {before / layer:.1f}x the largest layer; the same probes, alternating",
                samples={"beyond_mb": [r["beyond_mb"] for r in runs], "baseline": [r["beyond_mb"] for r in theirs[n]]},
            )
        )
        seconds, before_s = min(r["seconds"] for r in runs), min(r["seconds"] for r in theirs[n])
        rows.append(
            Row(
                f"export {FORMATS} time, {weights}, vs {rev}",
                seconds,
                before_s,
                target="<= 1.00x",
                met=seconds <= before_s,
                note=f"the same probes; {first['bytes_written'] / 1e6:.0f} MB written",
                samples={"seconds": [r["seconds"] for r in runs], "baseline": [r["seconds"] for r in theirs[n]]},
            )
        )
    return rows
