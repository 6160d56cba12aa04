"""The error report: how far the quantized model's layer outputs are from float.

Records are computed first (plain dataclasses, :mod:`.records`), rendered
second (:func:`~.records.records_frame`, :mod:`qextract.analysis.plot`).

- :func:`error_report` - one row per layer output: float vs quantized output
  statistics (:mod:`.statistics`), accumulated batch by batch (memory does
  not grow with the number of samples), in ``"propagated"`` mode (both models
  run end to end: accumulated error) or ``"isolated"`` mode (each quantized
  layer gets the float model's input to it: the layer's own error).
- :func:`~.weights.weight_report` - one row per weight tensor of an extraction
  (:mod:`.weights`; importable from here too).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import QExtractError, UsageError
from .records import ErrorRecord, WeightRecord, records_frame
from .statistics import ErrorStats, quantizer_bounds
from .weights import weight_records, weight_report

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MODES",
    "ErrorRecord",
    "ErrorStats",
    "WeightRecord",
    "error_records",
    "error_report",
    "quantizer_bounds",
    "records_frame",
    "weight_records",
    "weight_report",
]

MODES = ("propagated", "isolated")


def error_records(
    model: Any,
    data: Any,
    float_model: Any = None,
    *,
    mode: str = "propagated",
    batch_size: int = 256,
    quiet: bool = False,
) -> list[ErrorRecord]:
    """Compute the records behind :func:`error_report` (same arguments)."""
    from . import taps
    from .data import batches
    from .tap_cache import tap_cache

    if mode not in MODES:
        raise QExtractError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    model, float_model = _as_model(model), _as_model(float_model)
    # Graph, rows, float twin and traced runners: reused while both models are in the same state.
    prepared = tap_cache.get(model, float_model)
    rows = prepared.rows
    input_shape = tuple(model.inputs[0].shape)[1:]
    stream = batches(data, input_shape, batch_size)

    ftaps = prepared.float_runner
    qtaps, isolated = prepared.quantized(mode)
    output_of = {row.layer: i for i, row in enumerate(rows) if row.stage == taps.OUTPUT}
    stats = [ErrorStats(quantizer_bounds(row.quantizer)) for row in rows]

    def update(f_out: list[np.ndarray], q_out: list[np.ndarray]) -> None:
        for s, f, q in zip(stats, f_out, q_out):
            s.update(f, q)

    # The statistics of a batch are added by one worker thread while the next batch runs through the
    # models (NumPy and TensorFlow both release the GIL); one batch at a time, in order, so the sums
    # are the same as without it and at most one batch of outputs waits.
    with _progress(stream.total, quiet) as bar, ThreadPoolExecutor(1, thread_name_prefix="qextract-stats") as pool:
        pending: Future[None] | None = None
        for batch in stream:
            f_out = ftaps(batch)
            if isolated is None:
                q_out = qtaps(batch)
            else:
                by_layer = {name: f_out[i] for name, i in output_of.items()}
                q_out = qtaps(isolated.inputs(batch, by_layer))
            if pending is not None:
                pending.result()
            pending = pool.submit(update, f_out, q_out)
            bar.update(batch.shape[0])
        if pending is not None:
            pending.result()

    records = []
    for row, s in zip(rows, stats):
        lo, hi = s.bounds if s.bounds is not None else (None, None)
        lo, hi = (math.nan if b is None else b for b in (lo, hi))
        records.append(
            ErrorRecord(
                layer=row.layer,
                stage=row.stage,
                class_name=row.class_name,
                shape=row.shape,
                elements=int(np.prod([d for d in row.shape if d is not None], dtype=np.int64)),
                samples=s.samples,
                quantizer=None if row.quantizer is None else str(row.quantizer),
                saturation_low=lo,
                saturation_high=hi,
                **s.metrics(),
            )
        )
    return records


def _as_model(model: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        from ..reading.loading import load_model

        return load_model(model)
    return model


def error_report(
    model: Any,
    data: Any,
    float_model: Any = None,
    *,
    mode: str = "propagated",
    batch_size: int = 256,
    quiet: bool = False,
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-layer error of a QKeras ``model`` against its float counterpart.

    One row per layer output, in model order; a layer with a fused quantized
    activation gets a ``pre_activation`` row before its ``output`` row. The
    float counterpart is :func:`qextract.analysis.twin.float_model` unless
    ``float_model`` is given (matched by layer name). Either model may be
    given as a path for :func:`qextract.load_model`.

    ``mode="propagated"`` runs both models end to end (accumulated error);
    ``mode="isolated"`` feeds each quantized layer the float model's input to
    that layer (the layer's own error). Either way each batch costs one forward
    pass per model, and statistics accumulate batch by batch.

    ``data``: a NumPy array, ``.npy``/``.npz`` path, ``"digits"``,
    ``tf.data.Dataset`` or iterable of batches (see :mod:`qextract.analysis.data`).
    A progress bar shows on a terminal unless ``quiet``. ``layers`` keeps only
    the rows of those layers (the whole model still runs: errors accumulate
    through every layer); an unknown name is a UsageError listing the valid ones.

    >>> df = error_report(qmodel, "digits", mode="isolated")       # doctest: +SKIP
    >>> df[["layer", "stage", "snr_db"]]                            # doctest: +SKIP
    """
    model, float_model = _as_model(model), _as_model(float_model)
    wanted = _check_layer_names(model, layers)
    records = error_records(model, data, float_model, mode=mode, batch_size=batch_size, quiet=quiet)
    if wanted is not None:
        records = [r for r in records if r.layer in wanted]
        if not records:
            raise UsageError(
                f"layer(s) {', '.join(map(repr, layers or ()))} have no output in the error report "
                "(input layers have none)"
            )
    frame = records_frame(records, ErrorRecord)
    frame.attrs.update(mode=mode, model=model.name)
    return frame


def _check_layer_names(model: Any, layers: Sequence[str] | None) -> set[str] | None:
    """The wanted layer names (the report's rows are the model's own layers); unknown ones are a UsageError."""
    if layers is None:
        return None
    known = [layer.name for layer in model.layers]
    missing = [n for n in layers if n not in known]
    if missing:
        raise UsageError(
            f"model '{model.name}' has no layer named {', '.join(map(repr, missing))}; "
            f"its layers are: {', '.join(sorted(known))}"
        )
    return set(layers)


class _progress:
    """A tqdm bar on an interactive stderr unless quiet; a no-op otherwise."""

    def __init__(self, total: int | None, quiet: bool):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="sample", desc="qextract report", leave=False)

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
