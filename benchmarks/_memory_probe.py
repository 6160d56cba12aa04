"""One fresh process: ``error_report`` on the digits QCNN over N synthetic samples; print its memory as JSON.

Run by :mod:`benchmarks.bench_report`, once per sample count and measure, so
that each peak starts from a clean process:

    python -m benchmarks._memory_probe --samples 100000 --measure rss
    python -m benchmarks._memory_probe --samples 100000 --measure tracemalloc

The data comes from a generator of batches: the array of all samples never
exists, so what grows with N is the report's own memory, not the caller's data.

- ``rss``: the process's peak resident set, everything (TensorFlow's buffers
  too), before and after the report: ``VmHWM`` (see :func:`_peak_rss_mb`),
  with ``ru_maxrss`` printed beside it;
- ``tracemalloc``: the peak of Python-side allocations (NumPy arrays
  included) during the report, in a process of its own because tracing
  allocations costs memory and time itself;
- ``both``: the two in one process (quick runs only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _peak_rss_mb() -> float:
    """This process's peak resident set size: ``VmHWM``, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives fork and exec: a child started by a big
    parent (the benchmark process holding the 24 M-weight model) reports the
    parent's peak. ``VmHWM`` belongs to the new address space alone.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; macOS would be bytes


def _rusage_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--measure", choices=("rss", "tracemalloc", "both"), required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)

    import warnings

    import qextract  # noqa: F401  (legacy Keras first)
    from qextract.analysis.report import error_report

    from ._models import Context, Sizes, synthetic_batches

    warnings.simplefilter("ignore")
    ctx = Context(Sizes.quick())
    model, twin = ctx.cnn, ctx.cnn_twin
    before = _peak_rss_mb()
    data = synthetic_batches(args.samples, args.batch_size)
    if args.measure != "rss":
        tracemalloc.start()
    start = time.perf_counter()
    frame = error_report(model, data, twin, batch_size=args.batch_size, quiet=True)
    seconds = time.perf_counter() - start
    result = {
        "samples": args.samples,
        "measure": args.measure,
        "seconds": seconds,
        "rows": len(frame),
        "counted": int(frame["samples"].max()),
    }
    if args.measure != "rss":
        result["python_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if args.measure != "tracemalloc":
        result["rss_before_mb"] = before
        result["rss_peak_mb"] = _peak_rss_mb()
        result["ru_maxrss_mb"] = _rusage_mb()
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
