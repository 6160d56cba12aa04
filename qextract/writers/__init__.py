"""Output formats: one table of descriptors, each with the same ``write`` and ``read``.

:data:`FORMATS` maps each format's name to its :class:`OutputFormat`: the
CLI offers its keys as ``--format`` choices, the export derives from it which
formats write one file per tensor and which store memory words, and the
verifier reads every file back with its ``read``. :func:`check_names` is the
one place format names are validated.

``write(tensors, out_dir, *, word_bits=None, model_name="model") -> list[Path]``
writes laid-out tensors (:class:`~qextract.layouts.ExportedTensor`) into
``out_dir`` and returns the files written.

``sink(out_dir, *, word_bits=None, model_name="model", chunk=CHUNK)`` writes
the same files tensor by tensor (``add`` each, then ``close``), rendering
large tensors a piece at a time; :func:`open_sinks` opens one per format, as
a streaming export does (:mod:`._sink`).

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

mem, coe and mif are one memory format in three syntaxes (:mod:`.memory`).
``word_bits`` packs several codes into each memory word (mem, coe, mif,
header); see :mod:`qextract.writers._words` for the bit conventions.

>>> FORMATS["npz"], FORMATS["mem"]
(OutputFormat('npz': one file weights.npz), OutputFormat('mem': one file per tensor, memory words))
>>> check_names("mem,npz,mem".split(","))
['mem', 'npz']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import ExportError, UsageError
from ..layouts import ExportedTensor
from . import csv, header, memory, npz
from ._descriptor import OutputFormat
from ._entry import Entry, entries
from ._sink import CHUNK, Sink, Sinks
from ._words import Codes

__all__ = [
    "CHUNK",
    "FORMATS",
    "Codes",
    "Entry",
    "OutputFormat",
    "Sink",
    "Sinks",
    "check_names",
    "entries",
    "open_sinks",
    "write_all",
]

FORMATS: dict[str, OutputFormat] = {f.name: f for f in (npz.FORMAT, header.FORMAT, *memory.FORMATS, csv.FORMAT)}
"""Format name -> its descriptor (``write``, ``read``, per tensor or per model, suffix), in writing order."""

mem, coe, mif = memory.MEM, memory.COE, memory.MIF  # beside the npz, header and csv modules: FORMATS[name] alike


def check_names(
    formats: Iterable[str] | str | None, error: Callable[[str], Exception] = UsageError, *, typed: bool = False
) -> list[str]:
    """The format names asked for, each once, in the order asked (every format when None).

    Unknown names (or none at all) are all reported at once, raised as
    ``error``: a UsageError for the API, ExportError from :func:`write_all`,
    argparse's error for ``--format`` (``typed``: the names shown as the
    user typed them, the choices as the comma-separated list ``--format`` takes).
    """
    if formats is None:
        return list(FORMATS)
    names = [formats] if isinstance(formats, str) else list(dict.fromkeys(formats))
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        shown = ", ".join(unknown if typed else map(repr, unknown)) or "(none)"
        raise error(f"unknown format(s) {shown}; choose from {(',' if typed else ', ').join(FORMATS)}")
    return names


def write_all(
    tensors: Sequence[ExportedTensor],
    out_dir: Path,
    formats: Iterable[str] | None = None,
    *,
    word_bits: int | None = None,
    model_name: str = "model",
) -> dict[str, list[Path]]:
    """Write ``tensors`` in each of ``formats`` (default: all) into ``out_dir``; files written per format.

    Unknown format names are all reported at once (ExportError), before anything is written.
    """
    names = check_names(formats, ExportError)
    tensors = list(tensors)
    return {
        name: FORMATS[name].write(tensors, Path(out_dir), word_bits=word_bits, model_name=model_name) for name in names
    }


def open_sinks(
    out_dir: Path,
    formats: Iterable[str] | None = None,
    *,
    word_bits: int | None = None,
    model_name: str = "model",
    chunk: int | None = CHUNK,
) -> Sinks:
    """A sink per format of ``formats`` (default: all) in ``out_dir``: :func:`write_all` tensor by tensor.

    ``add`` each tensor, then ``close`` (or ``abort``); see :mod:`qextract.writers._sink`.
    """
    names = check_names(formats, ExportError)
    out = Path(out_dir)
    return Sinks(
        {name: FORMATS[name].sink(out, word_bits=word_bits, model_name=model_name, chunk=chunk) for name in names}
    )
