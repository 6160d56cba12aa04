"""Export: the C header and ``.mem`` files against ``numpy.savetxt`` writing the same codes.

qextract: ``qextract.export(extraction, out, formats=["header", "mem"])``, which
also lays the tensors out, writes each file's comment header, the scales and
``#define``\\s, hashes every file and writes ``manifest.json``, atomically.

Baseline, the same information with ``numpy.savetxt``: per tensor a ``.txt`` of
decimal codes, 16 to a line as in the header, and a ``.mem`` of two's
complement hex words, one per line as in ours. Both start from the same
extraction; each timed call writes into an emptied folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import qextract

from ._harness import Contender, Row, best_of
from ._models import Context

PER_LINE = 16  # codes per line in the header (qextract.writers.header.PER_LINE)


def savetxt_baseline(ex: qextract.Extraction, out: Path) -> None:
    """Every tensor's codes as decimal text and as hex memory words, with ``numpy.savetxt``."""
    out.mkdir(parents=True, exist_ok=True)
    for t in ex.tensors():
        codes = np.asarray(t.codes).reshape(-1)
        stem = out / f"{t.layer}.{t.name}"
        with open(f"{stem}.txt", "w") as f:
            full = codes.size - codes.size % PER_LINE
            np.savetxt(f, codes[:full].reshape(-1, PER_LINE), fmt="%d", delimiter=", ")
            if full < codes.size:
                np.savetxt(f, codes[full:].reshape(1, -1), fmt="%d", delimiter=", ")
        bits = t.format.bits
        words = codes.astype(np.int64) & ((1 << bits) - 1)  # two's complement at the format's width
        np.savetxt(f"{stem}.mem", words, fmt=f"%0{-(-bits // 4)}x")


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _same_words(ours: Path, theirs: Path) -> bool:
    """Our ``.mem`` words (comment lines dropped) equal the baseline's, for one tensor."""
    mine = [line for line in ours.read_text().splitlines() if line and not line.startswith("//")]
    return mine == theirs.read_text().splitlines()


def run(ctx: Context) -> list[Row]:
    ex = ctx.extraction
    scratch = Path(tempfile.mkdtemp(prefix="qextract-bench-export-"))
    ours_dir, base_dir = scratch / "qextract", scratch / "savetxt"

    def clean(path: Path):
        return lambda: shutil.rmtree(path, ignore_errors=True)

    try:
        times = best_of(
            {
                "export": Contender(
                    lambda: qextract.export(ex, ours_dir, formats=["header", "mem"], force=True), setup=clean(ours_dir)
                ),
                # tens of seconds at full size: no untimed warm-up call
                "savetxt": Contender(lambda: savetxt_baseline(ex, base_dir), setup=clean(base_dir), warmup=False),
            },
            ctx.sizes.repeats,
            ctx.sizes.warmup,
        )
        ours_bytes, base_bytes = _folder_bytes(ours_dir), _folder_bytes(base_dir)
        kernel = next(t for t in ex.tensors() if t.name == "kernel")
        same = _same_words(ours_dir / f"{kernel.layer}.kernel.mem", base_dir / f"{kernel.layer}.kernel.mem")
        files = sum(1 for _ in ours_dir.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours, theirs = min(times["export"]), min(times["savetxt"])
    mb = 1e6
    return [
        Row(
            "export header+mem vs numpy.savetxt",
            ours,
            theirs,
            target="<= 0.20x (>= 5x faster)",
            met=theirs >= 5 * ours,
            note=(
                f"{theirs / ours:.1f}x faster; qextract {ours_bytes / mb:.0f} MB in {files} files at "
                f"{ours_bytes / mb / ours:.0f} MB/s, "
                f"savetxt {base_bytes / mb:.0f} MB at {base_bytes / mb / theirs:.1f} MB/s; "
                f"same .mem words: {'yes' if same else 'NO'}"
            ),
            samples=times,
        )
    ]
