"""Memory initialisation files, one per tensor: one format in three syntaxes (``.mem``, ``.coe``, ``.mif``).

All three hold the same hexadecimal memory words (see :mod:`._words` for the
packing) after a comment header naming the tensor, layout, shape, code
encoding and packing; they differ only in how the words are framed:

========  ====================  ===================================================
``.mem``  Verilog ``$readmemh``   ``//`` comments; one word per line
``.coe``  Xilinx                  ``;`` comments; radix and vector lines, then one
                                  word per line ending in ``,`` (the last in ``;``)
``.mif``  Intel (Quartus)         ``--`` comments; ``WIDTH``, ``DEPTH``, radixes,
                                  ``CONTENT BEGIN``, ``addr : data;`` lines, ``END;``
========  ====================  ===================================================

A :class:`MemoryFile` is one syntax: its framing and its parser (each the
exact inverse of the other). Reading checks the framing (the ``.mif`` width,
depth and addresses counting up from 0) and unpacks the words into codes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text, _words
from ._descriptor import OutputFormat
from ._entry import Entry
from ._words import Codes, Memory


@dataclass(frozen=True)
class MemoryFile:
    """One syntax of memory file: a comment marker, and how words are framed (``frame``) and parsed back.

    ``frame(memory)`` renders everything after the comment; ``parse(text, width)``
    is its inverse for ``width``-bit words and returns their 64-bit limbs
    (ValueError when the text is not framed as ``frame`` writes it).
    """

    suffix: str
    comment: str
    frame: Callable[[Memory], bytes]
    parse: Callable[[bytes, int], np.ndarray]

    def write(
        self,
        tensors: Sequence[ExportedTensor],
        out_dir: Path,
        *,
        word_bits: int | None = None,
        model_name: str = "model",
    ) -> list[Path]:
        """Write ``<layer>.<tensor><suffix>`` per non-empty tensor into ``out_dir``; return the paths written."""
        return _files.write_each(
            tensors, out_dir, self.suffix, self._render, word_bits=word_bits, model_name=model_name
        )

    def _render(self, t: ExportedTensor, memory: Memory, comment: list[str]) -> bytes:
        return "".join(f"{self.comment} {line}\n" for line in comment).encode() + self.frame(memory)

    def read(self, path: Path, entry: Entry) -> Codes:
        """``entry``'s codes from its file: the words after the comment, unpacked."""
        with _files.reading(path, entry.key):
            data = path.read_bytes()
            body = data[_text.comment_end(data, self.comment.encode()) :]
            limbs = self.parse(body, _words.word_width(entry.format, entry.word_bits))
            return _words.from_memory(limbs, entry.format, entry.word_bits, entry.shape)


def _hex(memory: Memory) -> np.ndarray:
    return _words.hex_cells(memory.limbs, memory.hex_digits)


def _hex_words(body: bytes, width: int, end: bytes) -> np.ndarray:
    (cells,) = _text.split_columns(body, _words.hex_digits(width), end)
    return _words.hex_limbs(cells)


# --- .mem: one word per line ---------------------------------------------------------------


def _mem_frame(memory: Memory) -> bytes:
    return _text.columns(memory.depth, _hex(memory), b"\n").tobytes()


def _mem_parse(body: bytes, width: int) -> np.ndarray:
    return _hex_words(body, width, b"\n")


# --- .coe: radix, vector, words separated by commas, the last ending in ";" ---------------

COE_HEAD = b"memory_initialization_radix=16;\nmemory_initialization_vector=\n"


def _coe_frame(memory: Memory) -> bytes:
    lines = _text.columns(memory.depth, _hex(memory), b",\n")
    lines[-1, -2] = ord(";")
    return COE_HEAD + lines.tobytes()


def _coe_parse(body: bytes, width: int) -> np.ndarray:
    if not body.startswith(COE_HEAD) or not body.endswith(b";\n"):
        raise ValueError(f"expected {COE_HEAD!r} after the comment and ';' after the last word")
    return _hex_words(body[len(COE_HEAD) : -2] + b",\n", width, b",\n")  # every word now ends alike


# --- .mif: width, depth, radixes, "addr : data;" lines -------------------------------------

_MIF_HEAD = re.compile(rb"WIDTH=(\d+);\nDEPTH=(\d+);\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n")
_MIF_END = b"END;\n"


def _address_digits(depth: int) -> int:
    return max(1, math.ceil((depth - 1).bit_length() / 4))


def _mif_frame(memory: Memory) -> bytes:
    depth = memory.depth
    head = f"WIDTH={memory.word_bits};\nDEPTH={depth};\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
    addresses = _words.hex_cells(np.arange(depth, dtype=np.uint64)[:, None], _address_digits(depth))
    return head.encode() + _text.columns(depth, b"\t", addresses, b" : ", _hex(memory), b";\n").tobytes() + _MIF_END


def _mif_parse(body: bytes, width: int) -> np.ndarray:
    head = _MIF_HEAD.match(body)
    if head is None or int(head[1]) != width or not body.endswith(_MIF_END):
        raise ValueError(f"expected WIDTH={width}, DEPTH, HEX radixes, CONTENT BEGIN ... END; after the comment")
    depth = int(head[2])
    parts = (b"\t", _address_digits(depth), b" : ", _words.hex_digits(width), b";\n")
    addresses, words = _text.split_columns(body[head.end() : -len(_MIF_END)], *parts)
    if addresses.shape[0] != depth or not np.array_equal(_words.hex_limbs(addresses)[:, 0], np.arange(depth)):
        raise ValueError(f"the data lines are not addresses 0 to {depth - 1} in order (DEPTH={depth})")
    return _words.hex_limbs(words)


# --- the three descriptors ----------------------------------------------------------------


def _format(name: str, syntax: MemoryFile) -> OutputFormat:
    return OutputFormat(name, syntax.write, syntax.read, per_tensor=True, suffix=syntax.suffix, words=True)


MEM = _format("mem", MemoryFile(".mem", "//", _mem_frame, _mem_parse))
COE = _format("coe", MemoryFile(".coe", ";", _coe_frame, _coe_parse))
MIF = _format("mif", MemoryFile(".mif", "--", _mif_frame, _mif_parse))
FORMATS = (MEM, COE, MIF)
"""The memory formats, in the order of the formats table."""
