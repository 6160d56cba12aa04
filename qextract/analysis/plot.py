"""A one-glance PNG of an error report: per-layer SNR and relative error.

Layers run top to bottom in model order, as in the report. Left panel: SNR
in dB (longer bar = better); right panel: relative L2 error on a log scale
(shorter = better). Pre-activation rows are drawn lighter. Exact rows (no
error) are marked "exact" instead of an infinite bar. Several reports (e.g.
propagated and isolated) can be drawn side by side for comparison.

matplotlib is imported lazily and drawn on an Agg canvas directly (no
pyplot), so a user's interactive backend and open figures are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExportError, QExtractError

if TYPE_CHECKING:
    import pandas as pd

_COLORS = ("#1f5fa8", "#d9730d", "#2e8540", "#8e44ad")
_LIGHT = ("#8fb4de", "#f2b98a", "#9fd4aa", "#c9a3dc")


def _labels(frame: pd.DataFrame) -> list[str]:
    return [f"{layer} (pre-act)" if stage == "pre_activation" else str(layer)
            for layer, stage in zip(frame["layer"], frame["stage"])]  # fmt: skip


def plot_report(
    report: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str | Path,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write a PNG of per-layer SNR (dB) and relative L2 error to ``path``.

    ``report`` is an :func:`qextract.report.error_report` DataFrame, or a
    mapping ``{label: frame}`` of reports over the same layers to compare,
    e.g. ``{"propagated": p, "isolated": i}``. Returns the path written.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = dict(report) if isinstance(report, Mapping) else {report.attrs.get("mode", "report"): report}
    if not frames:
        raise QExtractError("nothing to plot: no reports given")
    first = next(iter(frames.values()))
    for label, frame in frames.items():
        missing = {"layer", "stage", "snr_db", "rel_l2_err"} - set(frame.columns)
        if missing:
            raise QExtractError(f"report '{label}' lacks columns {', '.join(sorted(missing))}; is it an error report?")
        if _labels(frame) != _labels(first):
            raise QExtractError(f"report '{label}' covers different layers than '{next(iter(frames))}'")
    labels = _labels(first)
    n, k = len(labels), len(frames)
    if n == 0:
        raise QExtractError("nothing to plot: the report has no rows")

    finite_snr = [v for f in frames.values() for v in f["snr_db"] if math.isfinite(v)]
    snr_cap = (max(finite_snr) if finite_snr else 60.0) * 1.1 + 5.0
    finite_rel = [v for f in frames.values() for v in f["rel_l2_err"] if math.isfinite(v) and v > 0]
    rel_floor = (min(finite_rel) if finite_rel else 1e-6) / 10.0

    height = max(2.5, 0.32 * n * max(1, k * 0.75) + 1.6)
    fig = Figure(figsize=(11, height))
    FigureCanvasAgg(fig)
    ax_snr, ax_rel = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)
    bar_h = 0.8 / k
    for j, frame in enumerate(frames.values()):
        offset = (j - (k - 1) / 2) * bar_h
        pre = (frame["stage"] == "pre_activation").to_numpy()
        colors = [_LIGHT[j % 4] if p else _COLORS[j % 4] for p in pre]
        snr = frame["snr_db"].to_numpy(dtype=float)
        rel = frame["rel_l2_err"].to_numpy(dtype=float)
        exact = np.isinf(snr) & (snr > 0)
        snr_drawn = np.where(np.isfinite(snr), snr, np.where(exact, snr_cap, 0.0))
        rel_drawn = np.where((rel > 0) & np.isfinite(rel), rel, np.nan)  # exact rows: no bar, a note
        ax_snr.barh(y + offset, np.where(exact, np.nan, snr_drawn), height=bar_h, color=colors)
        ax_snr.barh(y + offset, np.where(exact, snr_drawn, np.nan), height=bar_h, color="none",
                    edgecolor=_COLORS[j % 4], hatch="///", linewidth=0.5)  # fmt: skip
        ax_rel.barh(y + offset, rel_drawn, height=bar_h, color=colors)
        for yi, s, r in zip(y + offset, snr, rel):
            ax_snr.text(min(s, snr_cap) if math.isfinite(s) else snr_cap, yi,
                        f" {s:.1f}" if math.isfinite(s) else " exact", va="center", fontsize=7)  # fmt: skip
            ax_rel.text(max(r, rel_floor) if math.isfinite(r) else rel_floor, yi,
                        f" {r:.2g}" if r > 0 else " exact", va="center", fontsize=7)  # fmt: skip

    ax_snr.set_yticks(y, labels)
    ax_snr.invert_yaxis()
    ax_snr.set_xlabel("SNR (dB), higher is better")
    ax_snr.set_xlim(0 if not finite_snr or min(finite_snr) >= 0 else min(finite_snr) * 1.1, snr_cap * 1.12)
    ax_snr.grid(axis="x", alpha=0.3)
    ax_rel.set_xscale("log")
    ax_rel.set_xlabel("relative L2 error ||q - f|| / ||f||, lower is better")
    rel_top = max(finite_rel) if finite_rel else 1.0
    ax_rel.set_xlim(rel_floor, rel_top * 4.0)
    ax_rel.grid(axis="x", alpha=0.3)
    if k > 1:
        from matplotlib.patches import Patch

        handles = [Patch(color=_COLORS[j % 4], label=label) for j, label in enumerate(frames)]
        fig.legend(handles=handles, loc="upper right", ncol=k, fontsize=8, frameon=False)
    mode = " / ".join(frames) if k > 1 else first.attrs.get("mode", "")
    model = first.attrs.get("model", "")
    fig.suptitle(title or f"Quantization error per layer{f' - {model}' if model else ''}{f' ({mode})' if mode else ''}")
    notes = []
    if any((f["stage"] == "pre_activation").any() for f in frames.values()):
        notes.append("lighter bars: before the fused activation")
    if any((f["snr_db"] == math.inf).any() for f in frames.values()):
        notes.append("hatched: exact (no error)")
    fig.text(0.01, 0.005, ";  ".join(notes), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97 if k > 1 else 1))

    from .._atomic import atomic_file

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    except OSError as exc:
        raise ExportError(f"cannot write plot '{path}': {exc}") from None
    return path
