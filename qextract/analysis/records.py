"""The report's records - one row each, plain dataclasses computed first - and their rendering as a DataFrame.

:class:`ErrorRecord` is a row of :func:`~qextract.analysis.report.error_report`,
:class:`WeightRecord` one of :func:`~qextract.analysis.weights.weight_report`;
:func:`records_frame` renders either (the plot draws from that frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


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
