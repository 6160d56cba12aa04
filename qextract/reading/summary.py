"""The ``inspect`` table: one row per tensor (and per activation format)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tensor import Extraction, QuantizedTensor

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["layer", "class", "tensor", "shape", "quantizer", "bits", "format", "scale", "codes_used", "exact"]


def _exactness(t: QuantizedTensor) -> str:
    if not t.quantized:
        return "float (unquantized)"
    if t.ste_rounded:
        return f"exact; {t.ste_rounded} STE-rounded in QKeras"
    return "exact"


def _scale(t: QuantizedTensor) -> str:
    if not t.quantized:
        return "-"
    if t.per_channel:
        return f"per-channel[{t.scale.size}] axis {t.scale_axis}"
    return f"{float(t.scale):.9g}"


def inspect_table(extraction: Extraction) -> pd.DataFrame:
    """Rows describing every tensor and activation format of ``extraction``, in model order.

    Every quantized tensor was checked while it was extracted (codes in range,
    ``codes x scale`` equal to the layer's values); ``exact`` states that.
    """
    import pandas as pd

    return pd.DataFrame(inspect_rows(extraction), columns=COLUMNS)


def render(rows: list[dict[str, str | int]]) -> str:
    """``rows`` as the ``inspect`` command prints them, the text ``pandas.DataFrame.to_string(index=False)``
    gives (``tests/test_inspect_render.py`` holds it to pandas), without importing pandas: that import is
    a third of a NumPy-engine ``inspect``'s time.

    Every column is right-aligned; a column of integers is one wider than its header (pandas leaves room
    for a sign).
    """
    if not rows:
        return "Empty DataFrame\nColumns: [" + ", ".join(COLUMNS) + "]\nIndex: []"
    columns = [[r[c] for r in rows] for c in COLUMNS]
    widths = []
    for name, values in zip(COLUMNS, columns):
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        widths.append(max(len(name) + numeric, *(len(str(v)) for v in values)))
    lines = [" ".join(n.rjust(w) for n, w in zip(COLUMNS, widths))]
    lines += [" ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in zip(*columns)]
    return "\n".join(lines)


def inspect_rows(extraction: Extraction) -> list[dict[str, str | int]]:
    """:func:`inspect_table`'s rows as plain dicts (no pandas)."""
    rows: list[dict[str, str | int]] = []
    for layer in extraction:
        for t in layer:
            rows.append(
                {
                    "layer": layer.name,
                    "class": layer.class_name,
                    "tensor": t.name,
                    "shape": "x".join(map(str, t.shape)) or "scalar",
                    "quantizer": t.quantizer_str or "-",
                    "bits": t.format.bits,
                    "format": str(t.format),
                    "scale": _scale(t),
                    "codes_used": f"{t.distinct_codes()}/{t.format.levels}" if t.quantized else "-",
                    "exact": _exactness(t),
                }
            )
        for a in layer.activations:
            rows.append(
                {
                    "layer": layer.name,
                    "class": layer.class_name,
                    "tensor": f"({a.name})",
                    "shape": "-",
                    "quantizer": a.quantizer_str,
                    "bits": a.format.bits,
                    "format": str(a.format),
                    "scale": "dynamic" if any("scale computed" in n for n in a.notes) else "-",
                    "codes_used": "-",
                    "exact": "activation format" if a.format.quantized else "float activation",
                }
            )
    return rows
