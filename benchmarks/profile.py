"""Where the time goes in the benchmarks that miss their target, and what the proposed fixes would give.

    python -m benchmarks.profile extraction              # time per stage of qextract.extract, warm and cold
    python -m benchmarks.profile report [--what-if]      # time per stage of error_report, first and second call
    python -m benchmarks.profile blas                    # error_report's statistics: BLAS threads vs one
    python -m benchmarks.profile export                  # peak memory per stage of a streaming export
    python -m benchmarks.profile extraction --cprofile   # the raw cProfile listing instead

Stages are timed by wrapping qextract's own functions for the duration of this
process (the library's files are not touched). ``report --what-if`` times a first
report (tap models traced) and a second one (reused from ``tap_cache``), checks
that their numbers agree, against the same ``predict`` baselines, alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import math
import os
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

import qextract
from benchmarks._harness import Contender, best_of
from benchmarks._models import Context, Sizes, synthetic_images, tf

# --------------------------------------------------------------------------- stage timers


class Stages:
    """Accumulated wall time per label, from functions wrapped with :meth:`wrap`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        stages = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                stages.seconds[label] += spent
                stages.calls[label].append(spent)

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def _print_stages(title: str, total: float, parts: dict[str, float]) -> None:
    print(f"\n{title}: {total:.3f} s")
    rest = total - sum(parts.values())
    for label, seconds in [*parts.items(), ("everything else", rest)]:
        print(f"  {label:<58} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")


# --------------------------------------------------------------------------- extraction


def _extract_module() -> Any:
    """The module whose ``apply`` (the quantizer) and ``_checked`` (the exactness check) extraction calls."""
    import qextract.reading.quantization  # noqa: F401  (the package attribute `extract` is the function)

    return sys.modules["qextract.reading.quantization"]


def extraction_stages(ctx: Context, repeats: int, cold: bool) -> None:
    """Time per stage of ``extract``; ``cold`` empties qextract's cache of traced quantizer graphs first."""
    from qextract import layers, quantizers

    def empty_cache() -> None:
        if cold:
            quantizers.graph_cache.clear()

    model = ctx.conv_model
    ex_mod = _extract_module()
    stages = Stages()
    stages.wrap(layers.Binding, "source", "read raw weights (Binding.source)")
    stages.wrap(ex_mod, "apply", "QKeras quantizer calls (quantizers.apply)")
    for cls in {type(c) for c in quantizers.QUANTIZERS.values()}:
        if "encode" in cls.__dict__:
            stages.wrap(cls, "encode", "codes and scale (QuantizerEntry.encode)")
    stages.wrap(ex_mod, "_checked", "exactness check (extract._checked)")
    qextract.extract(model)  # warm-up
    best: tuple[float, dict[str, float]] | None = None
    try:
        for _ in range(repeats):
            empty_cache()
            stages.reset()
            start = time.perf_counter()
            qextract.extract(model)
            total = time.perf_counter() - start
            if best is None or total < best[0]:
                best = (total, dict(stages.seconds))
    finally:
        stages.restore()
    assert best is not None
    state = "graph cache emptied before each call" if cold else "graph cache warm"
    weights = sum(w.size for w in ctx.conv_weights) / 1e6
    _print_stages(f"qextract.reading.extraction, {weights:.1f} M weights, {state} (best of {repeats})", *best)


# --------------------------------------------------------------------------- report


def report_stages(ctx: Context, repeats: int, warm: bool = False) -> None:
    """Time per stage of ``error_report``: a first call (``tap_cache`` emptied before it), or a ``warm`` one."""
    from qextract.analysis import report, tap_cache, taps
    from qextract.analysis.report import error_report

    model, twin = ctx.cnn, ctx.cnn_twin
    x = synthetic_images(ctx.sizes.report_samples)
    stages = Stages()
    for name in ("graph", "plan_rows", "float_taps", "quant_taps", "isolated_taps"):
        stages.wrap(taps, name, "build tap models")
    stages.wrap(taps.Runner, "__call__", "runner")
    stats_label = "statistics (ErrorStats.update: a worker thread, overlaps the passes)"
    stages.wrap(report.ErrorStats, "update", stats_label)
    stages.wrap(tap_cache, "fingerprint", "fingerprint both models (tap_cache)")
    error_report(model, x, twin, quiet=True)
    best: tuple[float, dict[str, float]] | None = None
    try:
        for _ in range(repeats):
            if not warm:
                tap_cache.tap_cache.clear()
            stages.reset()
            start = time.perf_counter()
            error_report(model, x, twin, quiet=True)
            total = time.perf_counter() - start
            # Per batch the float runner is called, then the quantized one (propagated mode).
            # On a first report the first call of each traces its graph; the others only run it.
            calls = stages.calls["runner"]
            runs = [calls[0::2], calls[1::2]]
            trace = sum(max(0.0, c[0] - float(np.median(c[1:]))) for c in runs if len(c) > 1)
            parts = {
                "trace the 2 tap models (tf.function, first call)": trace,
                "forward passes of the 2 tap models": stages.seconds["runner"] - trace,
                stats_label: stages.seconds[stats_label],
                "build tap models": stages.seconds["build tap models"],
                "fingerprint both models (tap_cache)": stages.seconds["fingerprint both models (tap_cache)"],
            }
            if best is None or total < best[0]:
                best = (total, parts)
    finally:
        stages.restore()
    assert best is not None
    which = "second call, traced tap models reused" if warm else "first call, tap_cache emptied before each"
    _print_stages(f"error_report, digits QCNN, {len(x):,} samples, {which} (best of {repeats})", *best)


def _largest_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a-b| / max(|a|,|b|) over entries that differ; NaN/inf must match exactly."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return math.inf
    x, y = a[finite], b[finite]
    differ = x != y
    if not differ.any():
        return 0.0
    return float((np.abs(x - y)[differ] / np.maximum(np.abs(x), np.abs(y))[differ]).max())


def report_what_if(ctx: Context, repeats: int) -> None:
    """A first report (tap models built and traced) and a second one (reused from ``tap_cache``), against
    ``predict``: what-if C of the 2026-11-25 notes, adopted in ``qextract/analysis/tap_cache.py``."""
    from qextract.analysis.report import error_report
    from qextract.analysis.tap_cache import tap_cache

    model, twin = ctx.cnn, ctx.cnn_twin
    x = synthetic_images(ctx.sizes.report_samples)
    tap_cache.clear()
    reference = error_report(model, x, twin, quiet=True)

    def report() -> Any:
        return error_report(model, x, twin, quiet=True)

    def first() -> Any:
        tap_cache.clear()
        return report()

    def predict_fresh() -> None:
        twin.predict_function = None
        model.predict_function = None
        predict_warm()

    def predict_warm() -> None:
        twin.predict(x, batch_size=256, verbose=0)
        model.predict(x, batch_size=256, verbose=0)

    variants = {"first report (cache emptied)": first, "second report (cache warm)": report}
    numeric = [c for c in reference.columns if reference[c].dtype.kind == "f"]
    for name, run in variants.items():
        diff = _largest_relative_difference(reference[numeric].to_numpy(), run()[numeric].to_numpy())
        if diff > 1e-9:
            raise AssertionError(f"'{name}' changed the report (relative difference {diff:.3g})")
        print(f"  {name}: report numbers agree (largest relative difference {diff:.1e})")
    contenders = {name: Contender(run) for name, run in variants.items()}
    contenders["2x predict, fresh"] = Contender(predict_fresh)
    contenders["2x predict, warm"] = Contender(predict_warm)
    times = best_of(contenders, repeats)
    warm, fresh = min(times["2x predict, warm"]), min(times["2x predict, fresh"])
    print(f"\nfirst and second report, {len(x):,} samples, best of {repeats}, alternating (slowest run in brackets)")
    for name, ts in times.items():
        print(
            f"  {name:<40} {min(ts):7.3f} s ({max(ts):6.3f} s)   {min(ts) / fresh:5.2f}x fresh   "
            f"{min(ts) / warm:5.2f}x warm 2x predict"
        )


def report_blas(ctx: Context, calls: int) -> None:
    """``error_report`` called repeatedly, time in ErrorStats.update per call: default BLAS threads vs one.

    Right after a forward pass TensorFlow's thread pool keeps spinning; the
    ``np.dot`` calls in the statistics then wake OpenBLAS's own threads on the
    same two cores, and the update can take many times longer, at random.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    from qextract.analysis import report
    from qextract.analysis.report import error_report

    model, twin = ctx.cnn, ctx.cnn_twin
    x = synthetic_images(ctx.sizes.report_samples)
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    threads = blas[0].get("num_threads") if blas else "?"
    stages = Stages()
    stages.wrap(report.ErrorStats, "update", "stats")
    error_report(model, x, twin, quiet=True)
    print(
        f"\nerror_report, {len(x):,} samples, called {calls} times each way, alternating; seconds per call "
        "(total / of which ErrorStats.update)"
    )
    rows: dict[str, list[tuple[float, float]]] = {f"BLAS {threads} threads (default)": [], "BLAS 1 thread": []}
    try:
        for _ in range(calls):
            for label in rows:
                limit = threadpool_limits(1, "blas") if label == "BLAS 1 thread" else contextlib.nullcontext()
                with limit:
                    stages.reset()
                    start = time.perf_counter()
                    error_report(model, x, twin, quiet=True)
                    rows[label].append((time.perf_counter() - start, stages.seconds["stats"]))
    finally:
        stages.restore()
    for label, values in rows.items():
        cells = " ".join(f"{t:5.2f}/{s:5.2f}" for t, s in values)
        stats = [s for _, s in values]
        print(f"  {label:<26} {cells}   statistics min {min(stats):.2f} s, max {max(stats):.2f} s")


# --------------------------------------------------------------------------- export memory


def export_memory_stages(layers: int, units: int) -> None:
    """Peak RSS of each stage of a streaming export above the RSS at the stage's start (``VmHWM`` reset as it
    starts), on a stack of QDense layers after a warm-up export; the largest over every call of the stage."""
    import tempfile

    from benchmarks._export_probe import _reset_peak, _status, _trim, dense_stack
    from qextract.exporting import exporter
    from qextract.writers import FORMATS

    peaks: dict[str, list[float]] = defaultdict(list)
    highest = [0.0]  # the whole export's peak, read before each stage resets VmHWM

    def measured(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            highest[0] = max(highest[0], _status("VmHWM"))
            start = _status("VmRSS")
            _reset_peak()
            try:
                return original(*args, **kwargs)
            finally:
                peaks[label].append(_status("VmHWM") - start)

        setattr(owner, name, run)

    quantization = _extract_module()
    measured(quantization, "apply", "QKeras quantizer (quantizers.apply: TensorFlow)")
    measured(quantization, "_checked", "codes proven (reading.quantization._checked)")
    measured(exporter, "lay_out", "lay out (layouts.lay_out)")
    for name in ("npz", "header", "mem"):
        sink = type(FORMATS[name].sink(Path(".")))
        measured(sink, "add", f"write one tensor: {name} ({sink.__name__}.add)")
    measured(exporter, "_describe_files", "hash the files (exporter._describe_files)")
    model = dense_stack(layers, units)
    layer_mb = units * (units + 1) * 4 / 2**20
    with tempfile.TemporaryDirectory() as scratch:
        qextract.export(dense_stack(1, units // 2, seed=1), Path(scratch) / "warm", formats=["npz", "header", "mem"])
        peaks.clear()
        _trim()
        start = _status("VmRSS")
        _reset_peak()
        highest[0] = 0.0
        qextract.export(model, Path(scratch) / "out", formats=["npz", "header", "mem"])
        total = max(highest[0], _status("VmHWM")) - start
    print(f"\nexport npz,header,mem of {layers} x QDense({units}), largest layer {layer_mb:.1f} MB of float32")
    print(f"  {'whole export, beyond the RSS before it':<58} {total:7.1f} MB  {total / layer_mb:5.1f}x layer")
    for label, values in peaks.items():
        print(f"  {label:<58} {max(values):7.1f} MB  {max(values) / layer_mb:5.1f}x layer  ({len(values)} calls)")


# --------------------------------------------------------------------------- main


def _cprofile(fn: Callable[[], Any], lines: int = 30) -> None:
    fn()
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("extraction", "report", "blas", "export"))
    parser.add_argument(
        "--what-if", action="store_true", help="report: also time first and second reports against predict, alternating"
    )
    parser.add_argument("--cprofile", action="store_true", help="print cProfile's listing instead of the stage table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (blas: calls each way; default 3, blas 8)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    ctx = Context(Sizes.quick() if args.quick else Sizes.full())
    tf()
    if args.target == "blas":
        report_blas(ctx, args.repeats if args.repeats != 3 else 8)
        return 0
    if args.target == "export":
        export_memory_stages(2, ctx.sizes.export_units)
        return 0
    if args.target == "extraction":
        if args.cprofile:
            _cprofile(lambda: qextract.extract(ctx.conv_model))
            return 0
        extraction_stages(ctx, args.repeats, cold=False)
        extraction_stages(ctx, args.repeats, cold=True)
    else:
        if args.cprofile:
            from qextract.analysis.report import error_report

            x = synthetic_images(ctx.sizes.report_samples)
            _cprofile(lambda: error_report(ctx.cnn, x, ctx.cnn_twin, quiet=True))
            return 0
        report_stages(ctx, args.repeats)
        report_stages(ctx, args.repeats, warm=True)
        if args.what_if:
            report_what_if(ctx, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
