"""One long-form ``weights.csv``: a row per weight element, for spreadsheets and pandas.

Columns: layer, tensor, layout, index (flat, C order of the laid-out tensor),
multi_index (e.g. ``"3,0,1,2"``), raw, value, code, sign (powers of two only),
scale (the element's own scale). Floats are written in their shortest exact
form, so ``pd.read_csv`` followed by ``astype(np.float32)`` returns them bit
for bit. :func:`read` returns one tensor's code and sign columns (its values,
when unquantized).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes, check_codes

SUFFIX = ".csv"
FILE = MODEL_STEM + SUFFIX
COLUMNS = ("layer", "tensor", "layout", "index", "multi_index", "raw", "value", "code", "sign", "scale")
CHUNK_ROWS = 1 << 20


def _multi_index(shape: tuple[int, ...]) -> np.ndarray:
    """``"i,j,k"`` for every element of ``shape``, C order, vectorised."""
    size = int(np.prod(shape))
    if not shape:
        return np.array([""] * size, dtype=object)
    parts = [p.astype(str) for p in np.unravel_index(np.arange(size), shape)]
    joined = parts[0]
    for part in parts[1:]:
        joined = np.char.add(np.char.add(joined, ","), part)
    return joined


def _nullable_ints(array: np.ndarray | None, n: int):
    """Integers, or ``n`` empty cells when the tensor has none."""
    import pandas as pd

    return pd.array([None] * n if array is None else np.asarray(array).reshape(-1), "Int64")


def _frame(t: ExportedTensor):
    import pandas as pd

    n = t.size
    values = np.asarray(t.values, np.float32).reshape(-1)
    raw = values if t.raw is None else np.asarray(t.raw, np.float32).reshape(-1)
    frame = {
        "layer": t.layer,
        "tensor": t.name,
        "layout": str(t.layout),
        "index": np.arange(n),
        "multi_index": _multi_index(t.shape),
        "raw": raw,
        "value": values,
        "code": _nullable_ints(t.codes, n),
        "sign": _nullable_ints(t.signs, n),
        "scale": (
            np.broadcast_to(t.broadcast_scale(), t.shape).reshape(-1).astype(np.float32)
            if t.quantized
            else np.full(n, np.nan, np.float32)  # written as an empty cell
        ),
    }
    return pd.DataFrame(frame, columns=list(COLUMNS))


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.csv`` into ``out_dir``, tensor by tensor; ``word_bits`` does not apply."""
    _text.check_unique_keys(tensors)
    path = Path(out_dir) / FILE
    with _files.opened(path, "w", newline="") as f:
        f.write(",".join(COLUMNS) + "\n")
        for t in tensors:  # tensor by tensor: memory stays bounded by the largest tensor
            _frame(t).to_csv(f, header=False, index=False)
    return [path]


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes (and po2 signs; float32 values when unquantized) from ``weights.csv``.

    Reads the file in chunks of :data:`CHUNK_ROWS` rows, keeping only the
    tensor's own rows, which must be complete and in index order.
    """
    with _files.reading(path, entry.key):
        rows = _rows(path, entry)
        if len(rows) != entry.size or not np.array_equal(rows["index"].to_numpy(), np.arange(entry.size)):
            raise ValueError(f"{len(rows)} rows, expected {entry.size} with index 0, 1, ... in order")
        if not entry.quantized:
            return Codes(rows["value"].to_numpy(np.float64).astype(np.float32).reshape(entry.shape))
        codes = _ints(rows["code"], "code", entry)
        signs = _ints(rows["sign"], "sign", entry) if entry.format.has_signs else None
        return check_codes(Codes(codes, signs), entry.format)


def _rows(path: Path, entry: Entry):
    import pandas as pd

    with pd.read_csv(
        path,
        usecols=["layer", "tensor", "index", "value", "code", "sign"],
        dtype={"layer": str, "tensor": str, "code": "Int64", "sign": "Int64"},
        keep_default_na=False,  # a layer may be called "NA"; only empty number cells are missing
        na_values={"value": [""], "code": [""], "sign": [""]},
        float_precision="round_trip",
        chunksize=CHUNK_ROWS,
    ) as chunks:
        parts = [c[(c["layer"] == entry.layer) & (c["tensor"] == entry.name)] for c in chunks]
    return pd.concat(parts) if parts else pd.DataFrame(columns=["index", "value", "code", "sign"])


def _ints(column, what: str, entry: Entry) -> np.ndarray:
    if column.isna().any():
        raise ValueError(f"empty {what} cells")
    return column.to_numpy(np.int64).reshape(entry.shape)


FORMAT = OutputFormat("csv", write, read, per_tensor=False, suffix=SUFFIX)
