"""Xilinx ``.coe`` memory initialisation files, one per tensor.

``memory_initialization_radix=16;`` then ``memory_initialization_vector=``
with one hexadecimal word per line, comma-separated, the last ending in ``;``.
Comment lines start with ``;``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..layouts import ExportedTensor
from . import _files, _text, _words

SUFFIX = ".coe"


def _render(t: ExportedTensor, mem: _words.Memory, comment: list[str]) -> bytes:
    head = "".join(f"; {line}\n" for line in comment)
    head += "memory_initialization_radix=16;\nmemory_initialization_vector=\n"
    lines = _text.columns(mem.depth, _words.hex_cells(mem.limbs, mem.hex_digits), b",\n")
    lines[-1, -2] = ord(";")
    return head.encode() + lines.tobytes()


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``<layer>.<tensor>.coe`` per tensor into ``out_dir``; return the paths written."""
    return _files.write_each(tensors, out_dir, SUFFIX, _render, word_bits=word_bits, model_name=model_name)
