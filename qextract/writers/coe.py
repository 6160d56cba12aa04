"""Xilinx ``.coe`` memory initialisation files, one per tensor.

``memory_initialization_radix=16;`` then ``memory_initialization_vector=``
with one hexadecimal word per line, comma-separated, the last ending in ``;``.
Comment lines start with ``;``. :func:`read` parses the words back into codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..layouts import ExportedTensor
from . import _files, _text, _words
from ._entry import Entry
from ._words import Codes

SUFFIX = ".coe"
HEAD = b"memory_initialization_radix=16;\nmemory_initialization_vector=\n"


def _render(t: ExportedTensor, mem: _words.Memory, comment: list[str]) -> bytes:
    head = "".join(f"; {line}\n" for line in comment)
    head += HEAD.decode()
    lines = _text.columns(mem.depth, _words.hex_cells(mem.limbs, mem.hex_digits), b",\n")
    lines[-1, -2] = ord(";")
    return head.encode() + lines.tobytes()


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``<layer>.<tensor>.coe`` per tensor into ``out_dir``; return the paths written."""
    return _files.write_each(tensors, out_dir, SUFFIX, _render, word_bits=word_bits, model_name=model_name)


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes from its ``.coe`` file: the vector after the ``;`` comment, unpacked."""
    with _files.reading(path, entry.key):
        data = path.read_bytes()
        start = _text.comment_end(data, b";")
        if not data.startswith(HEAD, start) or not data.endswith(b";\n"):
            raise ValueError(f"expected {HEAD!r} after the comment and ';' after the last word")
        body = data[start + len(HEAD) : -2] + b",\n"  # every word now ends alike
        digits = _words.hex_digits(_words.word_width(entry.format, entry.word_bits))
        (cells,) = _text.split_columns(body, digits, b",\n")
        return _words.from_memory(_words.hex_limbs(cells), entry.format, entry.word_bits, entry.shape)
