"""Compare two exports tensor by tensor: codes, signs, scales, number formats, shapes and values.

Both folders are read as :func:`~qextract.verification.verifier.load_export` reads them (every hash
checked, every file of a tensor agreeing with the others), then each tensor is brought back to
Keras's native order, so that exports in different layouts (hwio and oihw, say) compare element
by element. A layout that differs is reported, but is not a difference in what the tensors hold.

Uses: two trainings of one model, two quantizer settings, a migration between QKeras generations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..manifest.entries import LayerEntry, Manifest, TensorEntry
from .verifier import _to_native, load_export, read_codes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "ExportDiff", "diff"]

COLUMNS = (
    "tensor",
    "layer",
    "status",
    "differs_in",
    "shape_a",
    "shape_b",
    "format_a",
    "format_b",
    "elements",
    "codes_differ",
    "max_code_delta",
    "values_differ",
    "max_value_delta",
    "first_index",
)
"""The columns of :attr:`ExportDiff.table`, one row per tensor in either export."""

SAME, DIFFERS, ONLY_A, ONLY_B = "same", "differs", "only in A", "only in B"
_HEADER_FIELDS = ("model", "layout", "formats", "word_bits", "dense_as_conv", "qextract_version")


@dataclass(frozen=True)
class _Side:
    """One tensor of one export, in Keras's native order."""

    layer: LayerEntry
    entry: TensorEntry
    codes: np.ndarray | None  # None for an unquantized tensor
    signs: np.ndarray | None
    values: np.ndarray


@dataclass(frozen=True)
class ExportDiff:
    """What differs between exports ``a`` and ``b``.

    ``table`` has one row per tensor key found in either (columns :data:`COLUMNS`); ``header``
    lists the differences of the exports as a whole (model name, layout, formats, ...), which
    do not change what a tensor holds.
    """

    a: Path
    b: Path
    table: pd.DataFrame
    header: tuple[str, ...]

    @property
    def differs(self) -> bool:
        """True when any tensor differs or is in one export only (header differences do not count)."""
        return bool((self.table["status"] != SAME).any())

    @property
    def differences(self) -> pd.DataFrame:
        """The rows of tensors that are not the same."""
        return self.table[self.table["status"] != SAME].reset_index(drop=True)

    def __repr__(self) -> str:
        n = int((self.table["status"] != SAME).sum())
        return f"ExportDiff('{self.a}' vs '{self.b}': {n} of {len(self.table)} tensors differ)"


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> ExportDiff:
    """Compare the exports in folders ``a`` and ``b``, tensor by tensor, in Keras's native order.

    Raises what :func:`~qextract.verification.verifier.load_export` raises for a folder that is
    not a complete, unchanged export (NotAnExportError, VerificationError), naming the file.

    >>> d = qextract.diff("run1/export", "run2/export")  # doctest: +SKIP
    >>> d.differences[["tensor", "differs_in", "codes_differ"]]  # doctest: +SKIP
    """
    import pandas as pd

    ma, sides_a = _read(Path(a))
    mb, sides_b = _read(Path(b))
    keys = list(sides_a) + [k for k in sides_b if k not in sides_a]
    rows = [_row(k, sides_a.get(k), sides_b.get(k)) for k in keys]
    header = tuple(
        f"{field}: {_text(getattr(ma, field))} vs {_text(getattr(mb, field))}"
        for field in _HEADER_FIELDS
        if getattr(ma, field) != getattr(mb, field)
    )
    return ExportDiff(Path(a), Path(b), pd.DataFrame(rows, columns=list(COLUMNS)), header)


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _read(folder: Path) -> tuple[Manifest, dict[str, _Side]]:
    """The manifest and every tensor of the export in ``folder``, in native order."""
    manifest, values = load_export(folder)  # hashes, agreement between files, nothing unlisted
    codes, _ = read_codes(folder, manifest)
    sides: dict[str, _Side] = {}
    for layer in manifest.layers:
        for t in layer.tensors:
            read = codes[t.key]

            def native(array: np.ndarray, t: TensorEntry = t, layer: LayerEntry = layer) -> np.ndarray:
                return _to_native(layer.kind, t, array, layer)

            sides[t.key] = _Side(
                layer,
                t,
                native(read.codes) if t.quantized else None,
                None if read.signs is None else native(read.signs),
                native(values[t.key]),
            )
    return manifest, sides


def _row(key: str, a: _Side | None, b: _Side | None) -> dict[str, Any]:
    either = a if a is not None else b
    assert either is not None
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(tensor=key, layer=either.layer.name, differs_in="")
    for side, suffix in ((a, "a"), (b, "b")):
        if side is not None:
            row[f"shape_{suffix}"] = tuple(side.values.shape)
            row[f"format_{suffix}"] = _format_text(side.entry)
    if a is None or b is None:
        row["status"] = ONLY_B if a is None else ONLY_A
        return row
    what = _compare(a, b, row)
    row.update(status=DIFFERS if what else SAME, differs_in=",".join(what))
    return row


def _format_text(t: TensorEntry) -> str:
    if not t.quantized:
        return t.dtype
    return t.ap_type or f"{t.format.get('kind')}{t.format.get('bits')}"


def _compare(a: _Side, b: _Side, row: dict[str, Any]) -> list[str]:
    """Fill ``row``'s counts; the names of what differs (shape, format, scale, codes, signs, values)."""
    what: list[str] = []
    if a.values.shape != b.values.shape:
        return ["shape"]
    row["elements"] = int(a.values.size)
    if a.entry.quantized != b.entry.quantized or a.entry.format != b.entry.format:
        what.append("format")
    if not _same_scale(a.entry, b.entry):
        what.append("scale")
    if a.codes is not None and b.codes is not None and "format" not in what:
        delta = a.codes.astype(np.int64) - b.codes.astype(np.int64)
        row["codes_differ"] = int(np.count_nonzero(delta))
        row["max_code_delta"] = int(np.abs(delta).max(initial=0))
        if row["codes_differ"]:
            what.append("codes")
        if a.signs is not None and b.signs is not None and not np.array_equal(a.signs, b.signs):
            what.append("signs")
    va, vb = a.values.astype(np.float64), b.values.astype(np.float64)
    unequal = (va != vb) & ~(np.isnan(va) & np.isnan(vb))
    row["values_differ"] = int(np.count_nonzero(unequal))
    with np.errstate(invalid="ignore"):
        row["max_value_delta"] = float(np.abs(va - vb)[unequal].max(initial=0.0))
    if row["values_differ"]:
        what.append("values")
        first = int(np.flatnonzero(unequal.reshape(-1))[0])
        row["first_index"] = tuple(int(i) for i in np.unravel_index(first, va.shape))
    return what


def _same_scale(a: TensorEntry, b: TensorEntry) -> bool:
    """Equal scales, a per-tensor scale equal to a per-channel one whose channels all hold it included."""
    if a.scale is None or b.scale is None:
        return a.scale is None and b.scale is None
    sa, sb = np.asarray(a.scale.array, np.float64).reshape(-1), np.asarray(b.scale.array, np.float64).reshape(-1)
    if sa.size != sb.size and 1 not in (sa.size, sb.size):
        return False
    return bool(np.array_equal(*np.broadcast_arrays(sa, sb)))
