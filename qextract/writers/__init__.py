"""Output formats: one module per format, each with the same ``write`` and ``read`` functions.

``write(tensors, out_dir, *, word_bits=None, model_name="model") -> list[Path]``
writes laid-out tensors (:class:`~qextract.layouts.ExportedTensor`) into
``out_dir`` and returns the files written. :data:`FORMATS` is the one table of
formats; the CLI offers its keys as ``--format`` choices.

``read(path, entry) -> Codes`` is its inverse for one tensor: ``path`` is the
file holding it (``weights.npz``, ``weights.h``, ``weights.csv``, or the
tensor's own ``.mem``/``.coe``/``.mif``), ``entry`` an :class:`Entry` from
:func:`entries` (the manifest's shape, number format, ``word_bits`` and the
names the writers gave the tensor). :class:`Codes` holds the integer codes in
the format's ``code_dtype`` and the laid-out shape (float32 values for an
unquantized tensor) and, for powers of two, the int8 signs. Every code is
checked to be one the format allows. Anything the file does not hold as
written raises :class:`~qextract.errors.VerificationError` naming the file
and the tensor::

    table = entries(json.loads((out / "manifest.json").read_text()))
    codes = FORMATS["mem"].read(out / "conv1.kernel.mem", table["conv1/kernel"]).codes

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
from ._entry import Entry, entries
from ._words import Codes

__all__ = ["FORMATS", "write_all", "Codes", "Entry", "entries"]

FORMATS: dict[str, ModuleType] = {"npz": npz, "header": header, "mem": mem, "coe": coe, "mif": mif, "csv": csv}
"""Format name -> format module (each has ``write`` and ``read``)."""


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
