"""Timing, result rows, machine description and the table: shared by every benchmark.

Timing alternates the contenders inside each repetition (A, B, A, B, ...) and
keeps each one's best time, so that a burst of load from another tenant of
this shared machine hits both sides alike instead of one whole series.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table: qextract against its baseline, with the target verdict.

    ``ratio`` is always qextract / baseline (below 1: qextract is faster or
    smaller), and ``target`` is written in those terms.
    """

    benchmark: str
    ours: float | str | None
    base: float | str | None = None
    unit: str = "s"
    target: str = ""
    met: bool | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict, repr=False)

    @property
    def ratio(self) -> float | None:
        if isinstance(self.ours, (int, float)) and isinstance(self.base, (int, float)) and self.base:
            return float(self.ours) / float(self.base)
        return None


def fmt_value(value: float | str | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:g} {unit}".strip()


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def fmt_met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


COLUMNS = ("benchmark", "qextract", "baseline", "ratio", "target", "met?", "note")


def table_cells(rows: Sequence[Row]) -> list[list[str]]:
    return [
        [
            r.benchmark,
            fmt_value(r.ours, r.unit),
            fmt_value(r.base, r.unit),
            fmt_ratio(r.ratio),
            r.target or "-",
            fmt_met(r.met),
            r.note,
        ]
        for r in rows
    ]


def render_text(rows: Sequence[Row]) -> str:
    """An aligned plain-text table (the note column is left unpadded, last)."""
    cells = [list(COLUMNS), *table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(c[j].ljust(widths[j]) for j in range(len(widths))) + "  " + c[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(rows: Sequence[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in table_cells(rows)]
    return "\n".join(out)


# --------------------------------------------------------------------------- timing


@dataclass
class Contender:
    """A function to time, and an untimed ``setup`` run before every call (e.g. clean an output folder)."""

    fn: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    warmup: bool = True  # one untimed call first (kernels, caches); off for slow baselines


def best_of(contenders: Mapping[str, Contender], repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Time every contender ``repeats`` times, alternating them; the wall times of each, in order.

    Use ``min(times)``: on a shared machine noise only ever adds time.
    ``warmup=False`` skips every untimed first call (quick runs).
    """
    for c in contenders.values():
        if warmup and c.warmup:
            if c.setup is not None:
                c.setup()
            c.fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, c in contenders.items():
            if c.setup is not None:
                c.setup()
            gc.collect()
            start = time.perf_counter()
            c.fn()
            times[name].append(time.perf_counter() - start)
    return times


def run_probe(
    argv: Sequence[str],
    what: str,
    *,
    timeout: float,
    cwd: str | os.PathLike[str] = ROOT,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON a probe prints on its last line, run as ``python ARGV`` in a fresh process (its own peak memory).

    A probe that fails raises with ``what`` and the end of its stderr, so a benchmark never records a figure
    from a run that did not finish.
    """
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=dict(env if env is not None else os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(times: Sequence[float]) -> str:
    """``best-worst s`` of a series of timings, to show how noisy it was."""
    return f"{min(times):.2f}-{max(times):.2f} s"


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _blas() -> str:
    """numpy's BLAS library and kernel, as threadpoolctl sees it (OPENBLAS_CORETYPE changes it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    import numpy  # noqa: F401  (load its BLAS so threadpoolctl sees it)

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return (
        "; ".join(
            (
                f"{p.get('internal_api')} {p.get('version')} {p.get('architecture', '')}, "
                f"{p.get('num_threads')} threads"
            ).strip()
            for p in pools
        )
        or "none found"
    )


def machine_info() -> dict[str, Any]:
    """What this machine is, for the record; reads no TensorFlow (versions come from package metadata)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    mem = _memory_gib()
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git": _git_revision(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "memory": f"{mem:.1f} GiB" if mem else "unknown",
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
        "python": platform.python_version(),
        "numpy": _pkg("numpy"),
        "tensorflow": _pkg("tensorflow"),
        "tf_keras": _pkg("tf_keras"),
        "qkeras": _pkg("qkeras"),
        "qextract": _pkg("qextract"),
        "blas": _blas(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
    }


def render_machine(info: Mapping[str, Any]) -> str:
    width = max(map(len, info))
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in info.items())


def as_json(info: Mapping[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
    out_rows = []
    for r in rows:
        d = asdict(r)
        d["ratio"] = r.ratio
        out_rows.append(d)
    return {"machine": dict(info), "rows": out_rows}
