"""What the migrated model computes, compared with what QKeras 0.9 computed: tensor by tensor, then per layer.

The tensors are compared by :func:`qextract.diff` itself (codes, signs, scales, formats, shapes,
values, in Keras's native order): the migrated model's extraction is exported (npz) to a temporary
folder, and so is the reference extraction (unless the reference is an export already), and the
two folders are diffed. Two things ``diff`` does not look at are added, one row each, without a
diff of their own: each layer's quantized activations (number format) and its geometry (strides,
padding, shapes: what the layer computes besides its weights). Where the reference is an
extraction in memory, the raw float inputs of the quantizers are compared too (``raw_differ``):
qkeras-v3 folds a batch norm with ``1/sqrt`` where QKeras 0.9 used ``rsqrt``, so a folded layer's
raw floats may differ in the last bit while its codes are equal; that is reported, not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..tensor import Extraction
from .translate import LayerFailure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Comparison", "compare"]

SAME, DIFFERS = "same", "differs"


@dataclass(frozen=True)
class Comparison:
    """The per-tensor table (``diff``'s columns, then ``raw_differ`` / ``raw_max_ulp`` / ``note``), the header
    differences, and the layers whose own forward pass fails (qkeras-v3 builds some layers it cannot run)."""

    table: pd.DataFrame
    header: tuple[str, ...]
    failures: tuple[LayerFailure, ...] = ()


def compare(new: Extraction, reference: Extraction | Path, tmp: str | os.PathLike[str], model: Any) -> Comparison:
    """``new`` (the extraction of ``model``) against ``reference`` (an extraction, or an export made under
    QKeras 0.9), in folder ``tmp``."""
    import pandas as pd

    from ..exporting.exporter import export
    from ..verification.comparison import COLUMNS, diff
    from ..verification.verifier import load_export

    work = Path(tmp)
    if isinstance(reference, Path):
        ref_dir = reference
        ref_manifest, _ = load_export(ref_dir)
        selected = list(ref_manifest.selected_layers) if ref_manifest.selected_layers is not None else None
    else:
        ref_dir, selected = work / "reference", None
        _export(export, reference, ref_dir, None)
    new_dir = work / "new"
    _export(export, new, new_dir, selected)
    if (ref_dir / "manifest.json").is_file() and (new_dir / "manifest.json").is_file():
        d = diff(ref_dir, new_dir)
        table, header = d.table, d.header
        manifests = load_export(ref_dir)[0], load_export(new_dir)[0]
        extra = _layer_rows(*manifests, list(COLUMNS))
    else:  # no tensors in either (activations only): nothing for diff to read
        table, header, extra = pd.DataFrame(columns=list(COLUMNS)), (), []
    table = pd.concat([table, pd.DataFrame(extra, columns=list(COLUMNS))], ignore_index=True) if extra else table
    outputs, failures = _outputs(new_dir, model, list(COLUMNS)) if (new_dir / "manifest.json").is_file() else ([], [])
    if outputs:
        table = pd.concat([table, pd.DataFrame(outputs, columns=list(COLUMNS))], ignore_index=True)
    raw = _raw(new, reference) if isinstance(reference, Extraction) else {}
    table["raw_differ"] = [raw.get(t, (None, None))[0] for t in table["tensor"]]
    table["raw_max_ulp"] = [raw.get(t, (None, None))[1] for t in table["tensor"]]
    classes = {record.name: record.class_name for record in new.layers}
    table["note"] = [
        _FOLDED if raw.get(t, (0,))[0] and classes.get(str(layer), "").endswith("Batchnorm") else None
        for t, layer in zip(table["tensor"], table["layer"])
    ]
    return Comparison(table, header, tuple(failures))


_FOLDED = "raw folded floats: qkeras-v3 folds the batch norm with 1/sqrt, QKeras 0.9 with rsqrt"


def _outputs(folder: Path, model: Any, columns: list[str]) -> tuple[list[dict[str, Any]], list[LayerFailure]]:
    """Each layer of ``model`` run on a fixed input and compared with NumPy's forward pass from the exported codes
    (:func:`qextract.verify`): a row per layer, and the layers whose own forward pass fails."""
    from ..verification.verifier import verify

    rows, failures = [], []
    for r in verify(folder, model).to_dict("records"):
        if not r["passed"] and r["route"] == "none":
            failures.append(LayerFailure(str(r["layer"]), str(r["class"]), f"qkeras-v3 cannot run it: {r['note']}"))
            continue
        row = _row(columns, f"{r['layer']}/(output)", str(r["layer"]), bool(r["passed"]), "output", None, None)
        row["max_value_delta"] = r["max_abs_error"]
        rows.append(row)
    return rows, failures


def _export(export: Any, ex: Extraction, folder: Path, layers: list[str] | None) -> None:
    if any(record.tensors for record in ex.layers):
        export(ex, folder, formats=["npz"], layers=layers)


def _layer_rows(a: Any, b: Any, columns: list[str]) -> list[dict[str, Any]]:
    """One row per layer whose activations or geometry either export records: same or differs."""
    rows = []
    b_layers = {layer.name: layer for layer in b.layers}
    for layer in a.layers:
        other = b_layers.get(layer.name)
        if other is None:
            continue  # diff lists its tensors as only in A
        acts_a = {x.name: x for x in layer.activations}
        acts_b = {x.name: x for x in other.activations}
        for name in list(acts_a) + [n for n in acts_b if n not in acts_a]:
            x, y = acts_a.get(name), acts_b.get(name)
            same = x is not None and y is not None and x.format == y.format
            rows.append(
                _row(
                    columns,
                    f"{layer.name}/({name})",
                    layer.name,
                    same,
                    "format",
                    x.quantizer if x else None,
                    y.quantizer if y else None,
                )
            )
        if layer.geometry != other.geometry:
            rows.append(_row(columns, f"{layer.name}/(geometry)", layer.name, False, "geometry", None, None))
    return rows


def _row(columns: list[str], key: str, layer: str, same: bool, what: str, fa: Any, fb: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(columns)
    row.update(tensor=key, layer=layer, status=SAME if same else DIFFERS, differs_in="" if same else what)
    row.update(format_a=fa, format_b=fb)
    return row


def _raw(new: Extraction, reference: Extraction) -> dict[str, tuple[int, int]]:
    """tensor key -> (raw floats that differ, largest distance in float32 units in the last place)."""
    ref = {t.key: t for t in reference.tensors()}
    out = {}
    for t in new.tensors():
        r = ref.get(t.key)
        if r is None or r.raw.shape != t.raw.shape:
            continue
        a, b = np.asarray(r.raw, np.float32), np.asarray(t.raw, np.float32)
        unequal = (a != b) & ~(np.isnan(a) & np.isnan(b))
        ia = a.view(np.int32).astype(np.int64)
        ib = b.view(np.int32).astype(np.int64)
        ia = np.where(ia < 0, np.int64(-(2**31)) - ia, ia)  # float32 bits in one monotonic order
        ib = np.where(ib < 0, np.int64(-(2**31)) - ib, ib)
        out[t.key] = (int(np.count_nonzero(unequal)), int(np.abs(ia - ib)[unequal].max(initial=0)))
    return out
