"""Run the qextract benchmarks and print one table of ratios, each measured against its
baseline in this same process (the machine is shared and noisy: never compare
with a number from another run).

    python -m benchmarks.run                  # everything, full size (a few minutes)
    python -m benchmarks.run --quick          # tiny sizes: checks the code runs (< 60 s)
    python -m benchmarks.run --only report --only memory
    python -m benchmarks.run --markdown --json results.json

Benchmarks (``--only`` names):

- ``startup``:    ``qextract --help`` time, and no TensorFlow imported;
- ``extraction``: ``qextract.extract`` vs QKeras ``model_save_quantized_weights``, and vs ``get_weights()``;
- ``export``:     C header + ``.mem`` export vs ``numpy.savetxt`` of the same codes;
- ``report``:     ``error_report`` vs two ``predict`` calls, and vs one sub-model per layer;
- ``memory``:     ``error_report`` peak memory at 10,000 vs 100,000 samples (fresh processes);
- ``export-memory``: peak RSS of an export beyond the loaded model, QDense stacks of 4.2, 16.8 and 67.1 M weights
  (fresh processes); with ``--baseline REV`` also that revision's code, back to back, and the export times.
- ``engine``:     ``qextract inspect`` / ``export`` with the NumPy engine vs reading the file with h5py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    _root = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _root / "benchmarks"]
    sys.path.insert(0, str(_root))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from benchmarks._harness import Row, as_json, machine_info, render_machine, render_markdown, render_text
from benchmarks._models import Context, Sizes

NAMES = ("startup", "extraction", "export", "report", "memory", "simulate", "export-memory", "engine")


def _bench(name: str, ctx: Context, baseline: str | None = None) -> list[Row]:
    if name == "startup":
        from benchmarks import bench_startup

        return bench_startup.run(ctx.sizes.startup_repeats)
    if name == "extraction":
        from benchmarks import bench_extraction

        return bench_extraction.run(ctx)
    if name == "export":
        from benchmarks import bench_export

        return bench_export.run(ctx)
    if name == "report":
        from benchmarks import bench_report

        return bench_report.timing(ctx)
    if name == "memory":
        from benchmarks import bench_report

        return bench_report.memory(ctx)
    if name == "simulate":
        from benchmarks import bench_simulate

        return bench_simulate.run(ctx)
    if name == "export-memory":
        from benchmarks import bench_export_memory

        return bench_export_memory.run(ctx, baseline)
    if name == "engine":
        from benchmarks import bench_engine

        return bench_engine.run(ctx.sizes.startup_repeats, whole=ctx.sizes.repeats > 1)
    raise ValueError(f"unknown benchmark '{name}'; choose from {', '.join(NAMES)}")


def run_benchmarks(
    names: Sequence[str] = NAMES,
    sizes: Sizes | None = None,
    log: Callable[[str], None] | None = None,
    baseline: str | None = None,
) -> list[Row]:
    """Run the named benchmarks in a fixed order; their table rows (``baseline``: a git revision to compare
    the export memory and time with)."""
    sizes = sizes or Sizes.full()
    ctx = Context(sizes)
    rows: list[Row] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QKeras/Keras deprecation chatter; nothing here is judged by warnings
        for name in NAMES:
            if name not in names:
                continue
            if log:
                log(f"running {name} ...")
            start = time.perf_counter()
            rows += _bench(name, ctx, baseline)
            if log:
                log(f"  {name} done in {time.perf_counter() - start:.1f} s")
            if name == "export" or (name == "extraction" and "export" not in names):
                ctx.__dict__.pop("extraction", None)  # free the big model before the report runs
                ctx.__dict__.pop("conv_weights", None)
                ctx.__dict__.pop("conv_model", None)
    return rows


def _names(values: list[str] | None) -> list[str]:
    if not values:
        return list(NAMES)
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("--quick", action="store_true", help="tiny models and data: checks that everything runs")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these ({', '.join(NAMES)}); repeatable or comma-separated",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="timed repetitions per contender, best kept (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="export-memory: also run git revision REV's code (e.g. the commit before a change), back to back",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write machine info, rows and every timing to FILE")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    args = parser.parse_args(argv)
    names = _names(args.only)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sizes = Sizes.quick(args.repeats or 1) if args.quick else Sizes.full(args.repeats or 3)

    info = machine_info()
    launcher = "python -m benchmarks.run" if __package__ else "python benchmarks/run.py"
    info["command"] = " ".join([launcher, *(sys.argv[1:] if argv is None else argv)])
    print(render_machine(info), flush=True)
    print(flush=True)
    started = time.perf_counter()
    rows = run_benchmarks(names, sizes, log=lambda m: print(m, file=sys.stderr, flush=True), baseline=args.baseline)
    info["load_average_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    print((render_markdown if args.markdown else render_text)(rows))
    print(
        f"\n{len(rows)} rows in {info['total_seconds']} s; load average after: {info['load_average_after']}"
        f"{' (quick sizes: not a measurement)' if args.quick else ''}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(info, rows), indent=1, default=str) + "\n")
    missed = [r.benchmark for r in rows if r.met is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
