"""Reports: how far the quantized model and its weights are from float.

Records are computed first (plain dataclasses, NumPy only), rendered second
(:func:`records_frame`, :mod:`qextract.analysis.plot`).

- :func:`error_report` - one row per layer output: float vs quantized output
  statistics, accumulated batch by batch (memory does not grow with the
  number of samples), in ``"propagated"`` mode (both models run end to end:
  accumulated error) or ``"isolated"`` mode (each quantized layer gets the
  float model's input to it: the layer's own error).
- :func:`weight_report` - one row per weight tensor of an extraction.

Definitions (``f`` float, ``q`` quantized, ``e = q - f``, sums over every
element of every sample):

- ``rmse = sqrt(mean e^2)``; ``rel_l2_err = ||e|| / ||f||`` (0 when ``e`` is 0);
- ``snr_db = 10 log10(sum f^2 / sum e^2)`` (+inf when ``e`` is 0);
- ``cosine = sum f q / (||f|| ||q||)`` (1 when both are 0, NaN when one is);
- ``frac_equal``: elements with ``q == f`` exactly;
- ``frac_saturated`` (outputs of an activation quantizer only): elements equal
  to the quantizer's lowest or highest output value, computed from its
  configuration (:func:`quantizer_bounds`), since QKeras's own
  ``min()``/``max()`` return range hints, not output values. A relu's floor 0
  is its function, not saturation, and does not count.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import QExtractError, UsageError
from ..quantizers import output_bounds
from ..tensor import Extraction, QuantizedTensor

if TYPE_CHECKING:
    import pandas as pd

MODES = ("propagated", "isolated")


# --------------------------------------------------------------------------- saturation bounds


def quantizer_bounds(quantizer: Any) -> tuple[float | None, float | None] | None:
    """The lowest and highest value an activation quantizer outputs, from its config.

    A side is None where reaching it is not saturation (a relu's 0). Returns
    None where the bounds are unknown or meaningless. Each quantizer's registry
    entry knows its own (:meth:`qextract.quantizers.QuantizerEntry.bounds`).
    """
    return output_bounds(quantizer)


# --------------------------------------------------------------------------- streaming statistics


class ErrorStats:
    """Streaming float-vs-quantized statistics of one tensor.

    Keeps only sums (float64), so memory does not depend on the number of
    samples; :meth:`update` with the data in any batching gives the same
    result up to float64 rounding. Mean and variance use Chan's pairwise
    update, which does not cancel catastrophically like ``sumsq - n mean^2``.
    """

    def __init__(self, bounds: tuple[float | None, float | None] | None = None):
        self.bounds = bounds
        self.samples = 0
        self.n = 0
        self.f_mean = 0.0
        self.f_m2 = 0.0
        self.f_min = math.inf
        self.f_max = -math.inf
        self.q_min = math.inf
        self.q_max = -math.inf
        self.sum_abs_e = 0.0
        self.max_abs_e = 0.0
        self.sum_e2 = 0.0
        self.sum_f2 = 0.0
        self.sum_q2 = 0.0
        self.sum_fq = 0.0
        self.equal = 0
        self.saturated = 0

    def update(self, f: np.ndarray, q: np.ndarray) -> None:
        """Add one batch: ``f`` float outputs, ``q`` quantized outputs, same shape."""
        if f.shape != q.shape:
            raise QExtractError(f"float output shape {f.shape} differs from quantized output shape {q.shape}")
        if f.size == 0:
            return
        self.samples += f.shape[0] if f.ndim else 1
        self.equal += int(np.count_nonzero(f == q))
        if self.bounds is not None:
            lo, hi = self.bounds
            at = np.zeros(q.shape, bool)
            if lo is not None:
                at |= q == np.float32(lo)
            if hi is not None:
                at |= q == np.float32(hi)
            self.saturated += int(np.count_nonzero(at))
        f = f.astype(np.float64).ravel()
        q = q.astype(np.float64).ravel()
        e = q - f
        nb = f.size
        mean_b = float(f.mean())
        m2_b = float(np.square(f - mean_b).sum())
        total = self.n + nb
        delta = mean_b - self.f_mean
        self.f_mean += delta * nb / total
        self.f_m2 += m2_b + delta * delta * self.n * nb / total
        self.n = total
        self.f_min = min(self.f_min, float(f.min()))
        self.f_max = max(self.f_max, float(f.max()))
        self.q_min = min(self.q_min, float(q.min()))
        self.q_max = max(self.q_max, float(q.max()))
        abs_e = np.abs(e)
        self.sum_abs_e += float(abs_e.sum())
        self.max_abs_e = max(self.max_abs_e, float(abs_e.max()))
        # einsum, not np.dot: BLAS would start its own threads beside TensorFlow's on the same
        # cores, which made single batches up to 50x slower (benchmarks/RESULTS.md).
        self.sum_e2 += float(np.einsum("i,i->", e, e))
        self.sum_f2 += float(np.einsum("i,i->", f, f))
        self.sum_q2 += float(np.einsum("i,i->", q, q))
        self.sum_fq += float(np.einsum("i,i->", f, q))

    def metrics(self) -> dict[str, float]:
        """The derived statistics (NaN everywhere if nothing was added)."""
        nan = math.nan
        if self.n == 0:
            keys = ("float_min", "float_max", "float_mean", "float_std", "quant_min", "quant_max",
                    "mean_abs_err", "max_abs_err", "rmse", "rel_l2_err", "snr_db", "cosine",
                    "frac_equal", "frac_saturated")  # fmt: skip
            return dict.fromkeys(keys, nan)
        n = self.n
        if self.sum_e2 == 0.0:
            rel, snr = 0.0, math.inf
        elif self.sum_f2 == 0.0:
            rel, snr = math.inf, -math.inf
        else:
            rel = math.sqrt(self.sum_e2 / self.sum_f2)
            snr = 10.0 * math.log10(self.sum_f2 / self.sum_e2)
        if self.sum_f2 == 0.0 and self.sum_q2 == 0.0:
            cosine = 1.0
        elif self.sum_f2 == 0.0 or self.sum_q2 == 0.0:
            cosine = nan
        else:
            cosine = self.sum_fq / math.sqrt(self.sum_f2 * self.sum_q2)
        return {
            "float_min": self.f_min,
            "float_max": self.f_max,
            "float_mean": self.f_mean,
            "float_std": math.sqrt(max(self.f_m2, 0.0) / n),
            "quant_min": self.q_min,
            "quant_max": self.q_max,
            "mean_abs_err": self.sum_abs_e / n,
            "max_abs_err": self.max_abs_e,
            "rmse": math.sqrt(self.sum_e2 / n),
            "rel_l2_err": rel,
            "snr_db": snr,
            "cosine": cosine,
            "frac_equal": self.equal / n,
            "frac_saturated": self.saturated / n if self.bounds is not None else nan,
        }


# --------------------------------------------------------------------------- error report


@dataclass(frozen=True)
class ErrorRecord:
    """One report row: a layer output (or pre-activation) compared float vs quantized."""

    layer: str
    stage: str
    class_name: str
    shape: tuple[int | None, ...]
    elements: int
    samples: int
    quantizer: str | None
    float_min: float
    float_max: float
    float_mean: float
    float_std: float
    quant_min: float
    quant_max: float
    mean_abs_err: float
    max_abs_err: float
    rmse: float
    rel_l2_err: float
    snr_db: float
    cosine: float
    frac_equal: float
    frac_saturated: float
    saturation_low: float  # NaN: no saturation bound on that side (or unknown)
    saturation_high: float


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
    from .twin import check_float_model
    from .twin import float_model as build_float_model

    if mode not in MODES:
        raise QExtractError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    model, float_model = _as_model(model), _as_model(float_model)
    nodes = taps.graph(model)
    rows = taps.plan_rows(nodes)
    if float_model is None:
        float_model = build_float_model(model)
    else:
        check_float_model(model, float_model)
    input_shape = tuple(model.inputs[0].shape)[1:]
    stream = batches(data, input_shape, batch_size)

    ftaps = taps.Runner(taps.float_taps(float_model, rows))
    if mode == "propagated":
        qtaps, isolated = taps.Runner(taps.quant_taps(model, rows, nodes)), None
    else:
        isolated = taps.isolated_taps(rows, nodes)
        qtaps = taps.Runner(isolated.model)
    output_of = {row.layer: i for i, row in enumerate(rows) if row.stage == taps.OUTPUT}
    stats = [ErrorStats(quantizer_bounds(row.quantizer)) for row in rows]

    with _progress(stream.total, quiet) as bar:
        for batch in stream:
            f_out = ftaps(batch)
            if isolated is None:
                q_out = qtaps(batch)
            else:
                by_layer = {name: f_out[i] for name, i in output_of.items()}
                q_out = qtaps(isolated.inputs(batch, by_layer))
            for s, f, q in zip(stats, f_out, q_out):
                s.update(f, q)
            bar.update(batch.shape[0])

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
                f"layer(s) {', '.join(map(repr, layers))} have no output in the error report (input layers have none)"
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
            f"model '{model.name}' has no layer named {', '.join(map(repr, missing))}; its layers are: {', '.join(sorted(known))}"
        )
    return set(layers)


def records_frame(records: Sequence[Any], record_type: type | None = None) -> pd.DataFrame:
    """Render records (error or weight) as a DataFrame, one row each, in order.

    Columns are the record's fields (``class_name`` shown as ``class``,
    shapes as text); ``record_type`` gives the columns when there are no records.
    """
    import pandas as pd

    record_type = record_type or (type(records[0]) if records else ErrorRecord)
    columns = [f.name for f in fields(record_type)]
    frame = pd.DataFrame([asdict(r) for r in records], columns=columns)
    frame["shape"] = [str(tuple(s)) for s in frame["shape"]]
    return frame.rename(columns={"class_name": "class"})


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


# --------------------------------------------------------------------------- weight report


@dataclass(frozen=True)
class WeightRecord:
    """One weight tensor: its number format, code usage and quantization error."""

    layer: str
    tensor: str
    shape: tuple[int, ...]
    quantizer: str | None
    format: str
    bits: int | None
    raw_min: float
    raw_max: float
    eff_min: float
    eff_max: float
    codes_used: int
    codes_available: int | None
    frac_zero: float
    frac_clipped: float
    max_abs_err: float
    rmse: float
    snr_db: float


def _range_limits(t: QuantizedTensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest representable value of ``t``, broadcast against it."""
    from ..numformat import PowerOfTwo
    from ..tensor import decode

    fmt = t.format
    if not fmt.quantized or t.codes is None:
        return None
    scale = np.asarray(t.broadcast_scale(), np.float64)
    if isinstance(fmt, PowerOfTwo):
        top = np.ldexp(1.0, fmt.exponent_max) * np.abs(scale)
        return (-top if fmt.negative else np.zeros_like(top), top)
    lo = decode(fmt, np.array(fmt.code_min), scale).astype(np.float64)
    hi = decode(fmt, np.array(fmt.code_max), scale).astype(np.float64)
    return (np.minimum(lo, hi), np.maximum(lo, hi))


def weight_records(extraction: Extraction | Iterable[QuantizedTensor]) -> list[WeightRecord]:
    """Compute the records behind :func:`weight_report`."""
    tensors = extraction.tensors() if isinstance(extraction, Extraction) else extraction
    records = []
    for t in tensors:
        raw = np.asarray(t.raw, np.float64)
        val = np.asarray(t.values, np.float64)
        n = val.size
        same_shape = raw.shape == val.shape
        if same_shape and n:
            e = val - raw
            sum_e2, sum_r2 = float(np.dot(e.ravel(), e.ravel())), float(np.dot(raw.ravel(), raw.ravel()))
            max_abs = float(np.abs(e).max())
            rmse = math.sqrt(sum_e2 / n)
            snr = math.inf if sum_e2 == 0 else (-math.inf if sum_r2 == 0 else 10 * math.log10(sum_r2 / sum_e2))
        else:
            max_abs = rmse = snr = math.nan
        limits = _range_limits(t)
        if limits is not None and same_shape and n:
            lo, hi = limits
            clipped = float(np.count_nonzero((raw < lo) | (raw > hi)) / n)
        else:
            clipped = math.nan if t.quantized else 0.0
        records.append(
            WeightRecord(
                layer=t.layer,
                tensor=t.name,
                shape=t.shape,
                quantizer=t.quantizer_str,
                format=str(t.format),
                bits=int(t.format.bits) if t.quantized else None,
                raw_min=float(raw.min()) if raw.size else math.nan,
                raw_max=float(raw.max()) if raw.size else math.nan,
                eff_min=float(val.min()) if n else math.nan,
                eff_max=float(val.max()) if n else math.nan,
                codes_used=t.distinct_codes(),
                codes_available=t.format.levels if t.quantized else None,
                frac_zero=float(np.count_nonzero(val == 0) / n) if n else math.nan,
                frac_clipped=clipped,
                max_abs_err=max_abs,
                rmse=rmse,
                snr_db=snr,
            )
        )
    return records


def weight_report(extraction: Extraction | Iterable[QuantizedTensor]) -> pd.DataFrame:
    """One row per weight tensor of ``extraction``, in model order.

    Columns: layer, tensor, shape, quantizer, format, bits, raw and effective
    (quantized) min/max, codes used of those the format allows, fraction of
    zeros, fraction clipped (raw value outside the representable range), and
    max abs / RMSE / SNR (dB) of ``values - raw``. Unquantized tensors have
    no bits or code count.
    """
    frame = records_frame(weight_records(extraction), WeightRecord)
    return frame.astype({"bits": "Int64", "codes_available": "Int64", "codes_used": "int64"})
