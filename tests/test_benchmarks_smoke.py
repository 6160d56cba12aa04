"""The benchmark suite runs end to end at --quick sizes and fills every table row.

No timing is asserted (this machine is shared and noisy); only that each
benchmark runs, checks its own results, and reports a row. The peak-memory
probe runs in this process instead of a fresh one, to keep the test short.
"""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _export_probe, _harness, _memory_probe, bench_export_memory, bench_report, run  # noqa: E402
from benchmarks._models import Sizes  # noqa: E402


def _probe_here(samples: int, measure: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _memory_probe.main(["--samples", str(samples), "--measure", measure]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _export_probe_here(layers: int, units: int, code: Path, formats: str = bench_export_memory.FORMATS) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        argv = ["--layers", str(layers), "--units", str(units), "--formats", formats]
        assert _export_probe.main(argv) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_quick_run_fills_every_row(monkeypatch):
    monkeypatch.setattr(bench_report, "_probe", _probe_here)
    monkeypatch.setattr(bench_export_memory, "probe", _export_probe_here)
    rows = run.run_benchmarks(run.NAMES, Sizes.quick())

    names = [r.benchmark for r in rows]
    assert len(rows) == 20, names
    for prefix in (
        "qextract --help",
        "TensorFlow imported",
        "extract vs model_save",
        "extract, first call",
        "extract vs model.get_weights",
        "export header+mem",
        "error_report vs 2x predict, fresh",
        "error_report vs 2x predict, warm",
        "error_report vs one sub-model",
        "error_report peak RSS",
        "error_report Python peak",
        "simulate vs predict",
        "simulate + every layer",
        "simulate_batches peak RSS",
        "simulate_batches Python peak",
        "export npz,header,mem peak RSS beyond loading, 0.0 M weights (1 x",
        "export npz,header,mem peak RSS beyond loading, 0.0 M weights (2 x",
        "qextract inspect, numpy engine vs h5py",
        "qextract export npz+header+mem, numpy engine",
        "TensorFlow imported by the numpy engine",
    ):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for r in rows:
        assert r.ours is not None, r
        if isinstance(r.ours, float):
            assert r.ours > 0 and r.ratio is not None and r.ratio > 0, r
    by_name = {r.benchmark: r for r in rows}
    # The benchmarks' own correctness checks, whatever the timings
    assert by_name["TensorFlow imported by --help"].met is True
    assert by_name["TensorFlow imported by the numpy engine"].met is True
    assert "values equal QKeras's: yes; model unchanged: yes" in by_name["extract vs model_save_quantized_weights"].note
    assert "same .mem words: yes" in by_name["export header+mem vs numpy.savetxt"].note
    assert "same numbers: yes" in by_name["error_report vs one sub-model per layer"].note

    text, markdown = _harness.render_text(rows), _harness.render_markdown(rows)
    assert all(n in text and n in markdown for n in names)
    assert markdown.count("\n") == len(rows) + 1


def test_machine_info_has_the_record_fields():
    info = _harness.machine_info()
    for key in ("date", "command", "platform", "cpu", "cores", "memory", "numpy", "tensorflow"):
        assert info[key], key


def test_unknown_benchmark_name_is_refused():
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run.main(["--only", "nope"])


def test_runs_as_a_script():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "benchmarks",
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--only" in proc.stdout
