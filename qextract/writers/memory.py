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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _sink, _text, _words
from ._descriptor import OutputFormat
from ._entry import Entry
from ._words import Codes, Memory, WordPlan

Pieces = Iterable[tuple[int, Memory]]
"""Consecutive pieces of a tensor's memory: ``(index of its first word, its words)``."""


@dataclass(frozen=True)
class MemoryFile:
    """One syntax of memory file: a comment marker, and how words are framed (``frame``) and parsed back.

    ``frame(words, pieces)`` renders everything after the comment, piece by
    piece, for a tensor whose memory is ``words`` (a :class:`WordPlan`);
    ``parse(text, width)`` is its inverse for ``width``-bit words and returns
    their 64-bit limbs (ValueError when the text is not framed as ``frame``
    writes it).
    """

    suffix: str
    comment: str
    frame: Callable[[WordPlan, Pieces], Iterator[bytes]]
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
        return _sink.write_tensors(self.sink(out_dir, word_bits=word_bits, model_name=model_name, chunk=None), tensors)

    def sink(self, out_dir: Path, **kwargs: Any) -> _files.EachSink:
        """Write ``<layer>.<tensor><suffix>`` per non-empty tensor into ``out_dir`` as tensors arrive."""
        return _files.EachSink(self.suffix, self._render, Path(out_dir), **kwargs)

    def _render(self, t: ExportedTensor, words: WordPlan, comment: list[str], chunk: int | None) -> Iterator[bytes]:
        yield "".join(f"{self.comment} {line}\n" for line in comment).encode()
        yield from self.frame(words, _words.memory_pieces(t, words, 1, chunk))

    def whole(self, memory: Memory) -> bytes:
        """Everything after the comment for ``memory`` at once."""
        words = WordPlan(memory.code_bits, memory.word_bits, memory.per_word, memory.count)
        return b"".join(self.frame(words, [(0, memory)]))

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


def _mem_lines(words: WordPlan, pieces: Pieces) -> Iterator[bytes]:
    for _, memory in pieces:
        yield _text.columns(memory.depth, _hex(memory), b"\n").tobytes()


def _mem_frame(memory: Memory) -> bytes:
    """A tensor's ``.mem`` words, one per line (also the syntax of the test-vector files)."""
    return MEM_SYNTAX.whole(memory)


def _mem_parse(body: bytes, width: int) -> np.ndarray:
    return _hex_words(body, width, b"\n")


# --- .coe: radix, vector, words separated by commas, the last ending in ";" ---------------

COE_HEAD = b"memory_initialization_radix=16;\nmemory_initialization_vector=\n"


def _coe_lines(words: WordPlan, pieces: Pieces) -> Iterator[bytes]:
    yield COE_HEAD
    for first, memory in pieces:
        lines = _text.columns(memory.depth, _hex(memory), b",\n")
        if first + memory.depth == words.depth:
            lines[-1, -2] = ord(";")
        yield lines.tobytes()


def _coe_parse(body: bytes, width: int) -> np.ndarray:
    if not body.startswith(COE_HEAD) or not body.endswith(b";\n"):
        raise ValueError(f"expected {COE_HEAD!r} after the comment and ';' after the last word")
    return _hex_words(body[len(COE_HEAD) : -2] + b",\n", width, b",\n")  # every word now ends alike


# --- .mif: width, depth, radixes, "addr : data;" lines -------------------------------------

_MIF_HEAD = re.compile(rb"WIDTH=(\d+);\nDEPTH=(\d+);\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n")
_MIF_END = b"END;\n"


def _address_digits(depth: int) -> int:
    return max(1, math.ceil((depth - 1).bit_length() / 4))


def _mif_lines(words: WordPlan, pieces: Pieces) -> Iterator[bytes]:
    depth = words.depth
    head = f"WIDTH={words.word_bits};\nDEPTH={depth};\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
    yield head.encode()
    digits = _address_digits(depth)
    for first, memory in pieces:
        addresses = _words.hex_cells(np.arange(first, first + memory.depth, dtype=np.uint64)[:, None], digits)
        yield _text.columns(memory.depth, b"\t", addresses, b" : ", _hex(memory), b";\n").tobytes()
    yield _MIF_END


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
    return OutputFormat(
        name, syntax.write, syntax.read, per_tensor=True, suffix=syntax.suffix, sink=syntax.sink, words=True
    )


MEM_SYNTAX = MemoryFile(".mem", "//", _mem_lines, _mem_parse)
MEM = _format("mem", MEM_SYNTAX)
COE = _format("coe", MemoryFile(".coe", ";", _coe_lines, _coe_parse))
MIF = _format("mif", MemoryFile(".mif", "--", _mif_lines, _mif_parse))
FORMATS = (MEM, COE, MIF)
"""The memory formats, in the order of the formats table."""
