"""One C/C++ header ``weights.h``: integer codes and exact scales, for HLS and firmware.

Per tensor (identifier ``<layer>_<tensor>``, macros in upper case):

- ``#define``\\s for the rank, each dimension, the size, the code bits, the
  fractional bits (fixed point with one power-of-two scale), the scale size
  and axis (-1: one scale for the tensor);
- ``static const <int type> name[]``: the codes in the smallest ``<stdint.h>``
  type of the format (floats for unquantized tensors; -2**63 is written
  ``INT64_MIN``, since C has no literal for it); ``name_sign[]`` for
  powers of two, ``name_table[]`` for look-up formats;
- ``static const float name_scale[]``: each scale as the shortest decimal that
  reads back as exactly the same float32 (integer codes plus an exact scale
  avoid the rounding that printed floats have caused in HLS flows);
- ``typedef ap_fixed<W,I> name_t;`` inside ``#ifdef QEXTRACT_AP_TYPES`` when
  one HLS type holds ``code * scale`` exactly;
- with ``word_bits``: ``name_words[]``, the packed memory words of
  :mod:`._words` (``uint64_t [depth][limbs]``, least significant limb first,
  when a word is wider than 64 bits).

Codes are rendered with vectorised NumPy, not per-element string formatting.

:func:`read` parses a tensor's arrays back (found by the identifier the
writer gave it, :attr:`Entry.c_name`); with ``word_bits`` it also unpacks
``name_words[]`` and checks that the packed words hold the same codes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, QExtractWarning
from ..layouts import ExportedTensor
from . import _files, _sink, _text, _words
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes

SUFFIX = ".h"
FILE = MODEL_STEM + SUFFIX
PER_LINE = 16


def _comment(lines: list[str]) -> str:
    body = "".join(f" * {line.replace('*/', '* /')}\n" for line in lines)
    return f"/*\n{body} */\n"


def _array(ctype: str, name: str, size: str, body: Iterable[bytes]) -> Iterator[bytes]:
    yield f"static const {ctype} {name}[{size}] = {{\n".encode()
    yield from body
    yield b"};\n"


# C has no negative literals: "-9223372036854775808" is minus a constant too large for any
# signed type (gcc: "so large that it is unsigned"). <stdint.h>'s macro is the exact value.
_INT64_MIN = (-(2**63), b"INT64_MIN")


def _int_body(values: np.ndarray, chunk: int | None) -> Iterator[bytes]:
    cells_of = _text.DecimalCells(values)  # one width for the whole array, from its smallest and largest
    for start, stop in _text.spans(values.size, PER_LINE, chunk):
        piece = _text.flat_piece(values, start, stop)
        cells = cells_of(piece)
        lowest = np.flatnonzero(piece == _INT64_MIN[0]) if values.dtype == np.int64 else ()
        if len(lowest):
            cells[lowest] = np.frombuffer(_INT64_MIN[1].rjust(cells.shape[1]), np.uint8)
        yield _text.wrap(_text.columns(cells.shape[0], b" ", cells, b","), PER_LINE, b"   ")


def _float_body(values: np.ndarray, chunk: int | None) -> Iterator[bytes]:
    for start, stop in _text.spans(values.size, 8, chunk):
        yield _text.float_list(_text.flat_piece(values, start, stop)).encode()


def _words_block(name: str, macro: str, t: ExportedTensor, word_bits: int, chunk: int | None) -> Iterator[bytes]:
    words = _words.plan(t, word_bits)
    defines = (
        f"#define {macro}_WORD_BITS {words.word_bits}\n"
        f"#define {macro}_CODES_PER_WORD {words.per_word}\n"
        f"#define {macro}_DEPTH {words.depth}\n"
    )
    if words.word_bits <= 64:
        ctype = next(f"uint{b}_t" for b in (8, 16, 32, 64) if words.word_bits <= b)
        end = b"ULL," if words.word_bits > 32 else b"u,"
        pieces = _words.memory_pieces(t, words, 8, chunk)  # whole lines of 8 words
        body = (
            _text.wrap(_text.columns(m.depth, b" 0x", _words.hex_cells(m.limbs, m.hex_digits), end), 8, b"   ")
            for _, m in pieces
        )
        yield defines.encode()
        yield from _array(ctype, f"{name}_words", f"{macro}_DEPTH", body)
        return
    limbs = -(-words.word_bits // 64)
    defines += f"#define {macro}_WORD_LIMBS {limbs} /* uint64_t per word, least significant first */\n"
    yield defines.encode()
    yield from _array("uint64_t", f"{name}_words", f"{macro}_DEPTH][{macro}_WORD_LIMBS", _wide_words(t, words, chunk))


def _wide_words(t: ExportedTensor, words: _words.WordPlan, chunk: int | None) -> Iterator[bytes]:
    """Words wider than 64 bits, one ``{ limb, ... }`` row each."""
    for _, m in _words.memory_pieces(t, words, 1, chunk):
        limbs = m.limbs.shape[1]
        hexes = _words.hex_cells(m.limbs.reshape(-1, 1), 16)
        rows = _text.columns(m.depth * limbs, b" 0x", hexes, b"ULL,").reshape(m.depth, -1)
        yield _text.wrap(_text.columns(m.depth, b"{", rows, b" },"), 1)


def _block(t: ExportedTensor, name: str, word_bits: int | None, model_name: str, chunk: int | None) -> Iterator[bytes]:
    """A tensor's part of ``weights.h``, in pieces (each array rendered ``chunk`` elements at a time)."""
    macro = name.upper()
    lines = [*_text.summary(t, model_name), f"C name {name}; code: {t.format.storage_rule()}"]
    defines = [f"#define {macro}_RANK {len(t.shape)}"]
    defines += [f"#define {macro}_DIM{i} {d} /* {a} */" for i, (d, a) in enumerate(zip(t.shape, t.axes))]
    defines += [f"#define {macro}_SIZE {t.size}", f"#define {macro}_BITS {t.format.bits}"]
    if not t.quantized:
        yield (_comment(lines) + "\n".join(defines) + "\n").encode()
        yield from _array(t.format.c_type, name, f"{macro}_SIZE", _float_body(t.values, chunk))
        return
    frac_bits = t.format.fraction_bits(t.scale)
    if frac_bits is not None:
        defines.append(f"#define {macro}_FRAC_BITS {frac_bits}")
    axis = -1 if t.scale_axis is None else t.scale_axis
    defines += [f"#define {macro}_SCALE_SIZE {t.scale.size}", f"#define {macro}_SCALE_AXIS {axis}"]
    yield (_comment(lines) + "\n".join(defines) + "\n").encode()
    yield from _array(t.format.c_type, name, f"{macro}_SIZE", _int_body(t.codes, chunk))  # type: ignore[arg-type]
    if t.signs is not None:
        yield from _array("int8_t", f"{name}_sign", f"{macro}_SIZE", _int_body(t.signs, chunk))
    table = t.format.lookup_table()
    if table is not None:
        yield from _array("float", f"{name}_table", str(len(table)), [_text.float_list(np.asarray(table)).encode()])
    yield from _array("float", f"{name}_scale", f"{macro}_SCALE_SIZE", [_text.float_list(t.scale).encode()])
    if t.ap_type is not None:
        yield f"#ifdef QEXTRACT_AP_TYPES\ntypedef {t.ap_type} {name}_t;\n#endif\n".encode()
    if word_bits is not None:
        yield from _words_block(name, macro, t, word_bits, chunk)


def _guard(model_name: str) -> str:
    return f"QEXTRACT_{_text.c_identifier(model_name).upper()}_WEIGHTS_H"


def _head(model_name: str) -> bytes:
    guard = _guard(model_name)
    return (
        f"/* Weights of model '{model_name}', written by qextract: integer codes and exact scales.\n"
        " * Define QEXTRACT_AP_TYPES (with Vivado/Vitis HLS) for the ap_fixed typedefs. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n"
        "#ifdef QEXTRACT_AP_TYPES\n#include <ap_fixed.h>\n#endif\n"
    ).encode()


class HeaderSink(_sink.Sink):
    """``weights.h`` as tensors arrive: the head, then each tensor's block, the end guard on close."""

    words = True

    def __init__(self, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self._names = _text.UniqueNames("_")

    def check(self, tensors: Sequence[_text.Keyed]) -> None:
        super().check(tensors)
        _check_no_symbol_clash(tensors, _text.c_names(tensors))

    def _started(self) -> None:
        if self._file is None:
            self._open(self.out_dir / FILE)
            self._write([_head(self.model_name)])

    def _add(self, t: ExportedTensor, skip: bool) -> Path | None:
        name = self._names.add(_text.c_identifier(f"{t.layer}_{t.name}"))  # every tensor takes its name
        if skip:
            return None
        self._started()
        if t.size == 0:  # C has no zero-length arrays
            warnings.warn(f"{t.key} has no elements; left out of {FILE}", QExtractWarning, stacklevel=4)
        else:
            self._write([b"\n", *_block(t, name, self.word_bits, self.model_name, self.chunk)])
        return self.out_dir / FILE

    def _finish(self) -> list[Path]:
        self._started()
        self._write([f"\n#endif /* {_guard(self.model_name)} */\n".encode()])
        return [self.out_dir / FILE]


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.h`` into ``out_dir``; ``word_bits`` adds each tensor's packed memory words."""
    sink = HeaderSink(Path(out_dir), word_bits=word_bits, model_name=model_name, chunk=None)
    return _sink.write_tensors(sink, tensors)


_SUFFIXES = ("_scale", "_sign", "_table", "_words", "_t")


def _check_no_symbol_clash(tensors: Sequence[_text.Keyed], names: list[str]) -> None:
    """A tensor's identifier must not equal another's derived array name (``x_scale`` vs ``x`` + ``_scale``)."""
    owner = dict(zip(names, (t.key for t in tensors)))
    for name, t in zip(names, tensors):
        for suffix in _SUFFIXES:
            if name + suffix in owner:
                raise ExportError(
                    f"{FILE}: tensor {owner[name + suffix]!r} is named {name + suffix}, which is also the "
                    f"{suffix[1:]} array of tensor {t.key!r}. Fix: rename one of the layers."
                )


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes (and po2 signs; float32 values when unquantized) from ``weights.h``.

    With the export's ``word_bits``, the packed ``name_words[]`` must hold
    exactly the codes of ``name[]``.
    """
    fmt, name = entry.format, entry.c_name
    if entry.size == 0:  # left out of the header: C has no zero-length arrays
        return Codes.empty(fmt, entry.shape)
    with _files.reading(path, entry.key):
        text = path.read_bytes()
        if not entry.quantized:
            return Codes(_numbers(_array_body(text, name, fmt.c_type), np.float64, entry).astype(np.float32))
        codes = _numbers(_array_body(text, name, fmt.c_type), np.int64, entry)
        signs = _numbers(_array_body(text, f"{name}_sign", "int8_t"), np.int64, entry) if fmt.has_signs else None
        held = _words.check_codes(Codes(codes, signs), fmt)
        words = _find_array(text, f"{name}_words")
        if (words is None) != (entry.word_bits is None):
            state = "missing" if words is None else "present"
            raise ValueError(f"{name}_words[] is {state}, the manifest's word_bits is {entry.word_bits}")
        if words is not None:
            _check_words(held, _word_limbs(words[1], entry), name, entry)
        return held


def _find_array(text: bytes, name: str) -> tuple[str, bytes] | None:
    """``(C type, body)`` of ``static const <type> name[...] = {...};``, or None."""
    pattern = rb"^static const (\w+) " + re.escape(name.encode()) + rb"\[[^=\n]*\] = \{\n(.*?)^\};\n"
    found = re.search(pattern, text, re.M | re.S)
    return None if found is None else (found[1].decode(), found[2])


def _array_body(text: bytes, name: str, ctype: str) -> bytes:
    found = _find_array(text, name)
    if found is None:
        raise ValueError(f"no array {name}[]")
    if found[0] != ctype:
        raise ValueError(f"{name}[] is {found[0]}, expected {ctype}")
    return found[1]


def _numbers(body: bytes, dtype: type[np.generic], entry: Entry) -> np.ndarray:
    """The comma-terminated numbers of an array body, in ``entry``'s shape."""
    items = body.replace(b"\n", b" ").replace(_INT64_MIN[1], str(_INT64_MIN[0]).encode()).split(b",")
    if items[-1].strip():
        raise ValueError("an array does not end in ','")
    values = np.array(items[:-1]).astype(dtype)
    if values.size != entry.size:
        raise ValueError(f"an array holds {values.size} numbers, expected {entry.size} for shape {list(entry.shape)}")
    return values.reshape(entry.shape)


def _word_limbs(body: bytes, entry: Entry) -> np.ndarray:
    """The words of ``name_words[]`` as 64-bit limbs: ``uint*_t`` words, or ``{ limb, ... }`` rows above 64 bits."""
    width = _words.word_width(entry.format, entry.word_bits)
    digits = _words.hex_digits(width) if width <= 64 else 16
    hexes = re.findall(rb"0x([0-9a-fA-F]+)", body)
    cells = np.frombuffer(b"".join(hexes), np.uint8)
    if any(len(h) != digits for h in hexes):
        raise ValueError(f"the packed words are not all {digits} hexadecimal digits")
    return _words.hex_limbs(cells.reshape(-1, digits)).reshape(-1, -(-width // 64))


def _check_words(held: Codes, limbs: np.ndarray, name: str, entry: Entry) -> None:
    packed = _words.from_memory(limbs, entry.format, entry.word_bits, entry.shape)
    differ = held.first_difference(packed)
    if differ is not None:
        index, what, ours, theirs = differ
        raise ValueError(f"{name}_words[] holds {what} {theirs} at index {index}, {name}[] holds {ours}")


FORMAT = OutputFormat("header", write, read, per_tensor=False, suffix=SUFFIX, sink=HeaderSink, words=True)
