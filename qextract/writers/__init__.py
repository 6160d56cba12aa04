"""Output formats: one module per format, each with the same ``write`` function.

``write(tensors, out_dir, *, word_bits=None, model_name="model") -> list[Path]``
writes laid-out tensors (:class:`~qextract.layouts.ExportedTensor`) into
``out_dir`` and returns the files written. :data:`FORMATS` is the one table of
formats; the CLI offers its keys as ``--format`` choices.

========  ===============================================================
npz       ``weights.npz``: values, codes, scales (and po2 signs) per tensor
header    ``weights.h``: C arrays of codes, exact scales, ap_fixed typedefs
mem       ``<layer>.<tensor>.mem``: Verilog ``$readmemh`` words
coe       ``<layer>.<tensor>.coe``: Xilinx memory initialisation
mif       ``<layer>.<tensor>.mif``: Intel memory initialisation
csv       ``weights.csv``: one row per weight element
========  ===============================================================

``word_bits`` packs several codes into each memory word (mem, coe, mif,
header); see :mod:`qextract.writers._words` for the bit conventions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

from ..errors import ExportError
from ..layouts import ExportedTensor
from . import coe, csv, header, mem, mif, npz

FORMATS: dict[str, ModuleType] = {"npz": npz, "header": header, "mem": mem, "coe": coe, "mif": mif, "csv": csv}
"""Format name -> writer module (each has ``write``)."""


def write_all(
    tensors: Sequence[ExportedTensor],
    out_dir: Path,
    formats: Iterable[str] | None = None,
    *,
    word_bits: int | None = None,
    model_name: str = "model",
) -> dict[str, list[Path]]:
    """Write ``tensors`` in each of ``formats`` (default: all) into ``out_dir``; files written per format.

    Unknown format names are all reported at once, before anything is written.
    """
    if isinstance(formats, str):
        formats = [formats]
    names = list(FORMATS) if formats is None else list(dict.fromkeys(formats))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}")
    tensors = list(tensors)
    return {
        name: FORMATS[name].write(tensors, Path(out_dir), word_bits=word_bits, model_name=model_name) for name in names
    }
