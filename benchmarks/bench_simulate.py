"""Integer simulation: ``simulate`` against the quantized model's own ``predict``, and its memory as data grows.

Model: the bundled digits QCNN. Data: scikit-learn's digits, tiled to the
sample count, on the input grid ``ap_fixed<6,2>`` (the digits are k/16 in
[0, 1], so the grid holds them exactly and QKeras sees the same inputs).

- Time: ``simulate(model, x)`` (reading the model, every layer's codes for
  every sample) against ``model.predict(x)`` with its predict function
  already traced (forward passes only), both at batch size 1024, alternated.
  A second row adds reading every layer's ``values`` after the simulation.
- Memory: ``simulate_batches`` over 10,000 and 100,000 samples from a
  generator (the array of all samples never exists), each in a fresh process
  (:func:`probe`): peak RSS (VmHWM) and the Python peak (tracemalloc).

Run alone: ``python -m benchmarks.bench_simulate [--quick]``; the memory probe
is ``python -m benchmarks.bench_simulate --probe N --measure rss``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

from ._harness import Contender, Row, best_of, machine_info, render_machine, render_text, run_probe, spread
from ._models import Context, Sizes

BATCH = 1024
FORMAT = "ap_fixed<6,2>"


def digits_samples(n: int) -> np.ndarray:
    """The 1797 digits tiled to ``n`` samples, (n, 8, 8, 1) float32."""
    from qextract.analysis.data import digits

    images = digits((8, 8, 1))
    return np.resize(images, (n, *images.shape[1:])).astype(np.float32)


def digits_batches(n: int, batch_size: int = BATCH) -> Any:
    """The same samples as a generator of batches, never all in memory."""
    images = digits_samples(min(n, 1797))
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n)) % len(images)
        yield images[index]


def timing(ctx: Context, samples: int) -> list[Row]:
    from qextract.network import simulate

    model = ctx.cnn
    x = digits_samples(samples)
    out: dict[str, Any] = {}

    def read_all() -> None:
        sim = simulate(model, x, input_format=FORMAT, batch_size=BATCH)
        out["checksum"] = sum(float(r.values.sum()) for r in sim.values())
        out["sim"] = sim

    times = best_of(
        {
            "simulate": Contender(lambda: out.update(sim=simulate(model, x, input_format=FORMAT, batch_size=BATCH))),
            "simulate_read": Contender(read_all),
            "predict": Contender(lambda: out.update(pred=model.predict(x, batch_size=BATCH, verbose=0))),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    ours, read, base = min(times["simulate"]), min(times["simulate_read"]), min(times["predict"])
    sim = out["sim"]
    same = bool(np.array_equal(sim["fc5"].values.astype(np.float32), _logits(model, x)))
    layers = len(sim)
    elements = sum(int(np.prod(r.shape)) for r in sim.values())
    what = (
        f"digits QCNN, {samples:,} samples, {layers} layers ({elements / 1e6:.1f} M values kept), batch {BATCH}; "
        f"simulate runs {spread(times['simulate'])}, predict {spread(times['predict'])}"
    )
    return [
        Row(
            "simulate vs predict (traced)",
            ours,
            base,
            target="<= 2.00x",
            met=ours <= 2.0 * base,
            note=f"{what}; logits equal QKeras's bit for bit: {'yes' if same else 'NO'}",
            samples={k: times[k] for k in ("simulate", "predict")},
        ),
        Row(
            "simulate + every layer's values read vs predict",
            read,
            base,
            target="-",
            note=f"as above, then every LayerResult.values (codes x scale) read; runs {spread(times['simulate_read'])}",
            samples={k: times[k] for k in ("simulate_read", "predict")},
        ),
    ]


def _logits(model: Any, x: np.ndarray) -> np.ndarray:
    """QKeras's fc5 output on the simulation's input grid (k/16 values: the digits themselves)."""
    from qextract._keras import tf

    taps = tf().keras.Model(model.inputs, model.get_layer("fc5").output)
    return np.asarray(taps.predict(x, batch_size=BATCH, verbose=0), np.float32)


def probe(samples: int, measure: str) -> dict[str, Any]:
    """In this (fresh) process: ``simulate_batches`` over ``samples`` digits; memory and time as a dict."""
    import tracemalloc
    import warnings

    import qextract
    from benchmarks._memory_probe import _peak_rss_mb, _rusage_mb
    from benchmarks._models import DIGITS_MODEL, tf
    from qextract.network import simulate_batches

    warnings.simplefilter("ignore")
    tf()
    model = qextract.load_model(DIGITS_MODEL)
    before = _peak_rss_mb()
    if measure != "rss":
        tracemalloc.start()
    start = time.perf_counter()
    counted = 0
    for sim in simulate_batches(model, digits_batches(samples), input_format=FORMAT, batch_size=BATCH):
        counted += sim.samples
    result: dict[str, Any] = {"samples": samples, "counted": counted, "seconds": time.perf_counter() - start}
    if measure != "rss":
        result["python_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if measure != "tracemalloc":
        result.update(rss_before_mb=before, rss_peak_mb=_peak_rss_mb(), ru_maxrss_mb=_rusage_mb())
    return result


def _probe(samples: int, measure: str) -> dict[str, Any]:
    argv = ["-m", "benchmarks.bench_simulate", "--probe", str(samples), "--measure", measure]
    return run_probe(argv, f"simulate memory probe ({samples} samples)", timeout=1800)


def memory(ctx: Context) -> list[Row]:
    small, large = ctx.sizes.memory_samples
    if ctx.sizes.separate_memory_probes:
        rss = {n: _probe(n, "rss") for n in (small, large)}
        py = {n: _probe(n, "tracemalloc") for n in (small, large)}
    else:
        rss = py = {n: _probe(n, "both") for n in (small, large)}
    for n in (small, large):
        if rss[n]["counted"] != n:
            raise RuntimeError(f"simulate_batches at {n} samples counted {rss[n]['counted']}")
    label = f"{large:,} vs {small:,} samples"
    big, little = rss[large]["rss_peak_mb"], rss[small]["rss_peak_mb"]
    own = {n: rss[n]["rss_peak_mb"] - rss[n]["rss_before_mb"] for n in (small, large)}
    return [
        Row(
            f"simulate_batches peak RSS, {label}",
            big,
            little,
            unit="MB",
            target="<= 1.10x",
            met=big <= 1.10 * little,
            note=(
                f"peak RSS (VmHWM) of a fresh process; the simulation added {own[large]:.0f} MB vs {own[small]:.0f} MB "
                f"to the process's peak; {large:,} samples took {rss[large]['seconds']:.1f} s "
                f"({large / rss[large]['seconds']:,.0f} samples/s)"
            ),
            samples={k: [rss[small].get(k, math.nan), rss[large].get(k, math.nan)] for k in ("rss_peak_mb", "seconds")},
        ),
        Row(
            f"simulate_batches Python peak (tracemalloc), {label}",
            py[large]["python_peak_mb"],
            py[small]["python_peak_mb"],
            unit="MB",
            target="<= 1.10x",
            met=py[large]["python_peak_mb"] <= 1.10 * py[small]["python_peak_mb"],
            note="peak of Python/NumPy allocations while streaming (TensorFlow's own buffers not traced)",
        ),
    ]


def run(ctx: Context) -> list[Row]:
    """Both benchmarks at the context's sizes (the timing at the report's sample count)."""
    return timing(ctx, ctx.sizes.report_samples) + memory(ctx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--repeats", type=int, default=None, metavar="N")
    parser.add_argument("--probe", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("rss", "tracemalloc", "both"), default="both", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.probe is not None:
        print(json.dumps(probe(args.probe, args.measure)))
        return 0
    sizes = Sizes.quick(args.repeats or 1) if args.quick else Sizes.full(args.repeats or 5)
    print(render_machine(machine_info()), flush=True)
    rows = run(Context(sizes))
    print(render_text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
