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
from . import _files, _sink, _text
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes, check_codes

SUFFIX = ".csv"
FILE = MODEL_STEM + SUFFIX
COLUMNS = ("layer", "tensor", "layout", "index", "multi_index", "raw", "value", "code", "sign", "scale")
CHUNK_ROWS = 1 << 20
ROW_COST = 8
"""A row's cells are Python strings while pandas writes them: a streaming export writes rows ``1 / ROW_COST``
as many at a time as it renders elements of the other formats."""


def _multi_index(shape: tuple[int, ...], start: int = 0, stop: int | None = None) -> np.ndarray:
    """``"i,j,k"`` for elements ``start:stop`` (default: all) of ``shape``, C order, vectorised."""
    stop = int(np.prod(shape)) if stop is None else stop
    if not shape:
        return np.array([""] * (stop - start), dtype=object)
    parts = [p.astype(str) for p in np.unravel_index(np.arange(start, stop), shape)]
    joined = parts[0]
    for part in parts[1:]:
        joined = np.char.add(np.char.add(joined, ","), part)
    return joined


def _nullable_ints(array: np.ndarray | None, n: int):
    """Integers, or ``n`` empty cells when the tensor has none."""
    import pandas as pd

    return pd.array([None] * n if array is None else np.asarray(array).reshape(-1), "Int64")


def _frame(t: ExportedTensor, start: int = 0, stop: int | None = None):
    """The rows of elements ``start:stop`` (default: all) of ``t``."""
    import pandas as pd

    stop = t.size if stop is None else stop
    n = stop - start

    def piece(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else _text.flat_piece(array, start, stop)

    values = np.asarray(piece(t.values), np.float32)
    raw = values if t.raw is None else np.asarray(piece(t.raw), np.float32)
    frame = {
        "layer": t.layer,
        "tensor": t.name,
        "layout": str(t.layout),
        "index": np.arange(start, stop),
        "multi_index": _multi_index(t.shape, start, stop),
        "raw": raw,
        "value": values,
        "code": _nullable_ints(piece(t.codes), n),
        "sign": _nullable_ints(piece(t.signs), n),
        "scale": (
            np.asarray(piece(np.broadcast_to(t.broadcast_scale(), t.shape))).astype(np.float32)
            if t.quantized
            else np.full(n, np.nan, np.float32)  # written as an empty cell
        ),
    }
    return pd.DataFrame(frame, columns=list(COLUMNS))


class CsvSink(_sink.Sink):
    """``weights.csv`` as tensors arrive: the column names, then each tensor's rows, ``chunk`` rows at a time."""

    def _started(self) -> None:
        if self._file is None:
            self._open(self.out_dir / FILE, "w", newline="")
            self._write([",".join(COLUMNS) + "\n"])

    def _add(self, t: ExportedTensor, skip: bool) -> Path | None:
        if skip:
            return None
        self._started()
        assert self._file is not None
        with _sink.errors_as_export(self.out_dir / FILE):
            for start, stop in _text.spans(t.size, 1, None if self.chunk is None else max(1, self.chunk // ROW_COST)):
                _frame(t, start, stop).to_csv(self._file, header=False, index=False)
        return self.out_dir / FILE

    def _finish(self) -> list[Path]:
        self._started()
        return [self.out_dir / FILE]


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.csv`` into ``out_dir``, tensor by tensor; ``word_bits`` does not apply."""
    return _sink.write_tensors(CsvSink(Path(out_dir), word_bits=word_bits, model_name=model_name, chunk=None), tensors)


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


FORMAT = OutputFormat("csv", write, read, per_tensor=False, suffix=SUFFIX, sink=CsvSink)
