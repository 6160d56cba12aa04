"""One fresh process: export a QDense stack and print, as JSON, how much memory the export took beyond the model.

Run by :mod:`benchmarks.bench_export_memory`, once per stack size and code version, so that each peak starts
from a clean process (``PYTHONPATH`` chooses the code: this worktree, or today's code from another tree):

    python -m benchmarks._export_probe --layers 16 --units 2048 --formats npz,header,mem

The model: ``--layers`` QDense layers of ``--units`` units on a ``--units`` input, ``quantized_bits(8,0,
alpha="auto_po2")`` kernels and ``quantized_bits(8,3)`` biases (2048 units: 4.2 M weights per layer), its
weights drawn with NumPy from a fixed seed (the same in every process and code version).

Steps, each measured from ``/proc/self/status``:

1. build the model (seeded weights), then ``malloc_trim(0)`` so that memory freed while building is given back;
2. a warm-up export of a one-layer stack of the same configuration into a scratch folder (imports, traced
   quantizer graphs, the schema: fixed costs that do not grow with the model), trimmed again;
3. ``rss_loaded``: the resident set now; the peak (``VmHWM``) is reset through ``/proc/self/clear_refs``;
4. the export, timed; ``rss_peak``: ``VmHWM`` after it. ``beyond`` = ``rss_peak - rss_loaded``.

Without ``clear_refs`` (kernels older than 4.0) the peak cannot be reset and the probe says so (``reset: false``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _status(field: str) -> float:
    """A ``/proc/self/status`` field in MB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Give memory glibc holds for reuse back to the system, so that the baseline is what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def dense_stack(layers: int, units: int, seed: int = 0):
    """``layers`` QDense(``units``) on a ``units`` input; 8-bit auto_po2 kernels, 8-bit biases, seeded."""
    import qextract  # noqa: F401  (legacy Keras first)
    from qextract._keras import qkeras, start_quietly, tf

    start_quietly()
    q = qkeras()
    t = tf()
    t.get_logger().setLevel("ERROR")
    x = inputs = t.keras.Input((units,), name="input")
    for i in range(layers):
        x = q.QDense(
            units,
            kernel_quantizer=q.quantized_bits(8, 0, alpha="auto_po2"),
            bias_quantizer=q.quantized_bits(8, 3),
            kernel_initializer="zeros",  # the weights are set below, the same in every process
            name=f"dense{i}",
        )(x)
    model = t.keras.Model(inputs, x, name=f"dense_stack_{layers}x{units}")
    rng = np.random.default_rng(seed)
    limit = np.float32(np.sqrt(6 / (2 * units)))  # Glorot uniform
    for layer in model.layers[1:]:
        layer.kernel.assign(rng.uniform(-limit, limit, (units, units)).astype(np.float32))
        layer.bias.assign(rng.uniform(-1, 1, units).astype(np.float32))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--formats", default="npz,header,mem")
    parser.add_argument("--keep", metavar="DIR", help="export into DIR (kept) instead of a scratch folder")
    args = parser.parse_args(argv)

    import warnings

    warnings.simplefilter("ignore")
    import qextract

    formats = args.formats.split(",")
    model = dense_stack(args.layers, args.units)
    weights = sum(int(w.shape.num_elements()) for w in model.weights)
    largest = max(sum(int(w.shape.num_elements()) for w in layer.weights) for layer in model.layers)
    scratch = Path(tempfile.mkdtemp(prefix="qextract-export-probe-"))
    try:
        _trim()
        rss_built = _status("VmRSS")
        qextract.export(dense_stack(1, 16, seed=1), scratch / "warmup", formats=formats)
        qextract.export(dense_stack(1, 1024, seed=1), scratch / "warmup2", formats=formats)  # a traced graph
        shutil.rmtree(scratch / "warmup")
        shutil.rmtree(scratch / "warmup2")
        _trim()
        rss_loaded = _status("VmRSS")
        reset = _reset_peak()
        out = Path(args.keep) if args.keep else scratch / "out"
        start = time.perf_counter()
        qextract.export(model, out, formats=formats, force=bool(args.keep))
        seconds = time.perf_counter() - start
        rss_peak = _status("VmHWM")
        written = sum(p.stat().st_size for p in out.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "layers": args.layers,
        "units": args.units,
        "formats": formats,
        "weights": weights,
        "largest_layer_weights": largest,
        "largest_layer_mb": largest * 4 / 2**20,
        "rss_built_mb": rss_built,
        "rss_loaded_mb": rss_loaded,
        "rss_peak_mb": rss_peak,
        "beyond_mb": rss_peak - rss_loaded,
        "reset": reset,
        "seconds": seconds,
        "bytes_written": written,
        "code": str(Path(qextract.__file__).resolve().parent.parent),
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
