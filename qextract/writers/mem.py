"""Verilog ``$readmemh`` files: one hexadecimal memory word per line, one file per tensor.

Each word has ``ceil(word_bits / 4)`` digits; a ``//`` comment header names
the tensor, layout, shape, code encoding and packing (see :mod:`._words`).
:func:`read` parses the words back into codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..layouts import ExportedTensor
from . import _files, _text, _words
from ._entry import Entry
from ._words import Codes

SUFFIX = ".mem"


def _render(t: ExportedTensor, mem: _words.Memory, comment: list[str]) -> bytes:
    head = "".join(f"// {line}\n" for line in comment).encode()
    return head + _text.columns(mem.depth, _words.hex_cells(mem.limbs, mem.hex_digits), b"\n").tobytes()


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``<layer>.<tensor>.mem`` per tensor into ``out_dir``; return the paths written."""
    return _files.write_each(tensors, out_dir, SUFFIX, _render, word_bits=word_bits, model_name=model_name)


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes from its ``.mem`` file: the words after the ``//`` comment, unpacked."""
    with _files.reading(path, entry.key):
        data = path.read_bytes()
        digits = _words.hex_digits(_words.word_width(entry.format, entry.word_bits))
        (cells,) = _text.split_columns(data[_text.comment_end(data, b"//") :], digits, b"\n")
        return _words.from_memory(_words.hex_limbs(cells), entry.format, entry.word_bits, entry.shape)
