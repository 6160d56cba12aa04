"""Error report: ``error_report`` against the forward passes it cannot avoid, and against
the one-sub-model-per-layer approach; and its peak memory as the sample count grows.

Model: the bundled digits QCNN (8x8x1, six weight layers, four quantized
activations; 11 report rows) and its float twin, built once, untimed. Data:
uniform synthetic images. Everything uses batches of 256 (the report's default;
``predict`` is given the same).

- Floor: ``twin.predict(x)`` + ``model.predict(x)``, measured two ways.
  *Fresh*: each model's predict function reset first, so the call traces its
  graph, against a first report (``tap_cache`` emptied first: it builds and
  traces its tap models, as a one-shot ``qextract report`` does).
  *Warm*: the predict functions already traced: pure forward passes, against
  a second report on the same, unchanged models (its traced tap models reused
  from ``qextract.analysis.tap_cache``).
- Per layer: for every report row a float and a quantized sub-model ending at
  that layer, each run with ``predict`` over the data, then the same streaming
  statistics: what the report would cost without tap models. Checked to give
  the same numbers.
- Memory: one fresh process per sample count (:mod:`benchmarks._memory_probe`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._harness import Contender, Row, best_of, run_probe, spread
from ._models import Context, synthetic_images

BATCH = 256


def per_layer_report(
    model: Any, twin: Any, x: np.ndarray, batch_size: int = BATCH, limit: int | None = None
) -> list[dict[str, float]]:
    """The report computed with one float and one quantized sub-model per row, each run over all the data.

    ``limit`` keeps only the first rows (quick runs).
    """
    from qextract.analysis import taps
    from qextract.analysis.report import ErrorStats, quantizer_bounds

    nodes = taps.graph(model)
    rows = taps.plan_rows(nodes)[:limit]
    metrics = []
    for row in rows:
        outputs = []
        for sub in (taps.float_taps(twin, [row]), taps.quant_taps(model, [row], nodes)):
            out = sub.predict(x, batch_size=batch_size, verbose=0)
            outputs.append(out[0] if isinstance(out, list) else out)
        f, q = outputs
        stats = ErrorStats(quantizer_bounds(row.quantizer))
        for start in range(0, len(x), batch_size):
            stats.update(f[start : start + batch_size], q[start : start + batch_size])
        metrics.append(stats.metrics())
    return metrics


def _same_numbers(frame: Any, metrics: list[dict[str, float]]) -> bool:
    if len(frame) < len(metrics):
        return False
    for (_, row), m in zip(frame.iloc[: len(metrics)].iterrows(), metrics):
        for key in ("rmse", "max_abs_err", "cosine"):
            a, b = float(row[key]), float(m[key])
            if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
                return False
    return True


def timing(ctx: Context) -> list[Row]:
    from qextract.analysis.report import error_report

    model, twin = ctx.cnn, ctx.cnn_twin
    n = ctx.sizes.report_samples
    x = synthetic_images(n)

    def predict_both() -> None:
        twin.predict(x, batch_size=BATCH, verbose=0)
        model.predict(x, batch_size=BATCH, verbose=0)

    def forget_predict_functions() -> None:
        twin.predict_function = None
        model.predict_function = None

    from qextract.analysis.tap_cache import tap_cache

    out: dict[str, Any] = {}

    def report() -> None:
        out.update(frame=error_report(model, x, twin, batch_size=BATCH, quiet=True))

    times = best_of(
        {
            # first call: the cache emptied, so the tap models are built and traced (and left for the next)
            "report_first": Contender(report, setup=tap_cache.clear),
            # a second call on the same models: its traced tap models are reused
            "report_warm": Contender(report),
            "predict_fresh": Contender(predict_both, setup=forget_predict_functions),
            "predict_warm": Contender(predict_both),
            # builds and traces 2 sub-models per row on every call: no warm state to reach
            "per_layer": Contender(
                lambda: out.update(per_layer=per_layer_report(model, twin, x, limit=ctx.sizes.per_layer_rows)),
                warmup=False,
            ),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    first, second = min(times["report_first"]), min(times["report_warm"])
    fresh, warm, per_layer = (min(times[k]) for k in ("predict_fresh", "predict_warm", "per_layer"))
    frame = out["frame"]
    rows = len(frame)
    what = f"digits QCNN, {n:,} samples, {rows} rows"
    covered = len(out["per_layer"])
    partial = "" if covered == rows else f" (first {covered} rows only: quick run)"
    return [
        Row(
            "error_report vs 2x predict, fresh",
            first,
            fresh,
            target="<= 1.50x",
            met=first <= 1.5 * fresh,
            note=f"{what}; first report runs {spread(times['report_first'])} (tap models built and traced, "
            "tap_cache emptied before each); predict traced anew",
            samples={k: times[k] for k in ("report_first", "predict_fresh")},
        ),
        Row(
            "error_report vs 2x predict, warm",
            second,
            warm,
            target="<= 1.30x",
            met=second <= 1.3 * warm,
            note=f"{what}; second report runs {spread(times['report_warm'])} (same models: traced tap models "
            "reused); predict functions already traced (forward passes only)",
            samples={k: times[k] for k in ("report_warm", "predict_warm")},
        ),
        Row(
            "error_report vs one sub-model per layer",
            first,
            per_layer,
            target="speedup (report)",
            note=f"first report; {per_layer / first:.1f}x faster; {2 * covered} sub-models{partial}; same numbers: "
            f"{'yes' if _same_numbers(frame, out['per_layer']) else 'NO'}",
            samples={k: times[k] for k in ("report_first", "per_layer")},
        ),
    ]


def _probe(samples: int, measure: str) -> dict[str, Any]:
    argv = ["-m", "benchmarks._memory_probe", "--samples", str(samples), "--measure", measure]
    return run_probe(argv, f"memory probe ({samples} samples, {measure})", timeout=900)


def memory(ctx: Context) -> list[Row]:
    small, large = ctx.sizes.memory_samples
    if ctx.sizes.separate_memory_probes:
        rss = {n: _probe(n, "rss") for n in (small, large)}
        py = {n: _probe(n, "tracemalloc") for n in (small, large)}
    else:  # quick: one process per count measures both (tracemalloc's own cost then shows in the RSS)
        rss = py = {n: _probe(n, "both") for n in (small, large)}
    for n in (small, large):
        if rss[n]["counted"] != n:
            raise RuntimeError(f"the report at {n} samples counted {rss[n]['counted']}")
    own = {n: rss[n]["rss_peak_mb"] - rss[n]["rss_before_mb"] for n in (small, large)}
    label = f"{large:,} vs {small:,} samples"
    big_rss, small_rss = rss[large]["rss_peak_mb"], rss[small]["rss_peak_mb"]
    big_py, small_py = py[large]["python_peak_mb"], py[small]["python_peak_mb"]
    return [
        Row(
            f"error_report peak RSS, {label}",
            big_rss,
            small_rss,
            unit="MB",
            target="<= 1.10x",
            met=big_rss <= 1.10 * small_rss,
            samples={
                key: [rss[small].get(key, math.nan), rss[large].get(key, math.nan)]
                for key in ("rss_before_mb", "rss_peak_mb", "ru_maxrss_mb", "seconds")
            },
            note=(
                f"peak RSS (VmHWM) of a fresh process; the report itself added {own[large]:.0f} MB "
                f"vs {own[small]:.0f} MB "
                f"to the process's peak; {large:,} samples took {rss[large]['seconds']:.1f} s "
                f"({large / rss[large]['seconds']:,.0f} samples/s)"
            ),
        ),
        Row(
            f"error_report Python peak (tracemalloc), {label}",
            big_py,
            small_py,
            unit="MB",
            target="<= 1.10x",
            met=big_py <= 1.10 * small_py,
            samples={"python_peak_mb": [small_py, big_py]},
            note="peak of Python/NumPy allocations during the report (TensorFlow's own buffers not traced)",
        ),
    ]
