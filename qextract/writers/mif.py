"""Intel (Quartus) ``.mif`` memory initialisation files, one per tensor.

``WIDTH``, ``DEPTH``, hexadecimal address and data radix, then
``CONTENT BEGIN``, one ``addr : data;`` line per word and ``END;``.
Comment lines start with ``--``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text, _words

SUFFIX = ".mif"


def _render(t: ExportedTensor, mem: _words.Memory, comment: list[str]) -> bytes:
    head = "".join(f"-- {line}\n" for line in comment)
    head += f"WIDTH={mem.word_bits};\nDEPTH={mem.depth};\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
    addr_digits = max(1, math.ceil((mem.depth - 1).bit_length() / 4))
    addresses = _words.hex_cells(np.arange(mem.depth, dtype=np.uint64)[:, None], addr_digits)
    data = _words.hex_cells(mem.limbs, mem.hex_digits)
    body = _text.columns(mem.depth, b"\t", addresses, b" : ", data, b";\n").tobytes()
    return head.encode() + body + b"END;\n"


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``<layer>.<tensor>.mif`` per tensor into ``out_dir``; return the paths written."""
    return _files.write_each(tensors, out_dir, SUFFIX, _render, word_bits=word_bits, model_name=model_name)
