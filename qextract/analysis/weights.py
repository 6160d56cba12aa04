"""The weight report: one row per weight tensor - number format, codes used, clipping, quantization error.

Computed from an :class:`~qextract.tensor.Extraction` alone (NumPy only): the
raw float weights against the values ``codes x scale`` the layer computes with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..tensor import Extraction, QuantizedTensor
from .records import WeightRecord, records_frame

if TYPE_CHECKING:
    import pandas as pd


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
