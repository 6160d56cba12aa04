"""Intel (Quartus) ``.mif`` memory initialisation files, one per tensor.

``WIDTH``, ``DEPTH``, hexadecimal address and data radix, then
``CONTENT BEGIN``, one ``addr : data;`` line per word and ``END;``.
Comment lines start with ``--``. :func:`read` parses the words back into codes,
checking the width, depth and that the addresses count up from 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text, _words
from ._entry import Entry
from ._words import Codes

SUFFIX = ".mif"


def _render(t: ExportedTensor, mem: _words.Memory, comment: list[str]) -> bytes:
    head = "".join(f"-- {line}\n" for line in comment)
    head += f"WIDTH={mem.word_bits};\nDEPTH={mem.depth};\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
    addresses = _words.hex_cells(np.arange(mem.depth, dtype=np.uint64)[:, None], _address_digits(mem.depth))
    data = _words.hex_cells(mem.limbs, mem.hex_digits)
    body = _text.columns(mem.depth, b"\t", addresses, b" : ", data, b";\n").tobytes()
    return head.encode() + body + b"END;\n"


def _address_digits(depth: int) -> int:
    return max(1, math.ceil((depth - 1).bit_length() / 4))


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``<layer>.<tensor>.mif`` per tensor into ``out_dir``; return the paths written."""
    return _files.write_each(tensors, out_dir, SUFFIX, _render, word_bits=word_bits, model_name=model_name)


_HEAD = re.compile(rb"WIDTH=(\d+);\nDEPTH=(\d+);\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n")


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes from its ``.mif`` file: the ``addr : data;`` lines, unpacked."""
    with _files.reading(path, entry.key):
        data = path.read_bytes()
        head = _HEAD.match(data, _text.comment_end(data, b"--"))
        width = _words.word_width(entry.format, entry.word_bits)
        if head is None or int(head[1]) != width or not data.endswith(b"END;\n"):
            raise ValueError(f"expected WIDTH={width}, DEPTH, HEX radixes, CONTENT BEGIN ... END; after the comment")
        depth = int(head[2])
        body = data[head.end() : -len(b"END;\n")]
        parts = (b"\t", _address_digits(depth), b" : ", _words.hex_digits(width), b";\n")
        addresses, words = _text.split_columns(body, *parts)
        if addresses.shape[0] != depth or not np.array_equal(_words.hex_limbs(addresses)[:, 0], np.arange(depth)):
            raise ValueError(f"the data lines are not addresses 0 to {depth - 1} in order (DEPTH={depth})")
        return _words.from_memory(_words.hex_limbs(words), entry.format, entry.word_bits, entry.shape)
