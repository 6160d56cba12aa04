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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ExportError, QExtractWarning
from ..layouts import ExportedTensor
from . import _files, _text, _words
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes

SUFFIX = ".h"
FILE = MODEL_STEM + SUFFIX
PER_LINE = 16


def _comment(lines: list[str]) -> str:
    body = "".join(f" * {line.replace('*/', '* /')}\n" for line in lines)
    return f"/*\n{body} */\n"


def _array(ctype: str, name: str, size: str, body: bytes | str) -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return f"static const {ctype} {name}[{size}] = {{\n".encode() + body + b"};\n"


# C has no negative literals: "-9223372036854775808" is minus a constant too large for any
# signed type (gcc: "so large that it is unsigned"). <stdint.h>'s macro is the exact value.
_INT64_MIN = (-(2**63), b"INT64_MIN")


def _int_body(values: np.ndarray) -> bytes:
    cells = _text.decimal_cells(values)
    lowest = np.flatnonzero(np.asarray(values).reshape(-1) == _INT64_MIN[0]) if values.dtype == np.int64 else ()
    if len(lowest):
        cells[lowest] = np.frombuffer(_INT64_MIN[1].rjust(cells.shape[1]), np.uint8)
    return _text.wrap(_text.columns(cells.shape[0], b" ", cells, b","), PER_LINE, b"   ")


def _words_block(name: str, macro: str, mem: _words.Memory) -> bytes:
    defines = (
        f"#define {macro}_WORD_BITS {mem.word_bits}\n"
        f"#define {macro}_CODES_PER_WORD {mem.per_word}\n"
        f"#define {macro}_DEPTH {mem.depth}\n"
    )
    if mem.word_bits <= 64:
        ctype = next(f"uint{b}_t" for b in (8, 16, 32, 64) if mem.word_bits <= b)
        hexes = _words.hex_cells(mem.limbs, mem.hex_digits)
        cells = _text.columns(mem.depth, b" 0x", hexes, b"ULL," if mem.word_bits > 32 else b"u,")
        return defines.encode() + _array(ctype, f"{name}_words", f"{macro}_DEPTH", _text.wrap(cells, 8, b"   "))
    limbs = mem.limbs.shape[1]
    hexes = _words.hex_cells(mem.limbs.reshape(-1, 1), 16)
    rows = _text.columns(mem.depth * limbs, b" 0x", hexes, b"ULL,").reshape(mem.depth, -1)
    body = _text.wrap(_text.columns(mem.depth, b"{", rows, b" },"), 1)
    defines += f"#define {macro}_WORD_LIMBS {limbs} /* uint64_t per word, least significant first */\n"
    return defines.encode() + _array("uint64_t", f"{name}_words", f"{macro}_DEPTH][{macro}_WORD_LIMBS", body)


def _block(t: ExportedTensor, name: str, word_bits: int | None, model_name: str) -> bytes:
    macro = name.upper()
    lines = [*_text.summary(t, model_name), f"C name {name}; code: {t.format.storage_rule()}"]
    defines = [f"#define {macro}_RANK {len(t.shape)}"]
    defines += [f"#define {macro}_DIM{i} {d} /* {a} */" for i, (d, a) in enumerate(zip(t.shape, t.axes))]
    defines += [f"#define {macro}_SIZE {t.size}", f"#define {macro}_BITS {t.format.bits}"]
    if not t.quantized:
        text = _comment(lines) + "\n".join(defines) + "\n"
        return text.encode() + _array(t.format.c_type, name, f"{macro}_SIZE", _text.float_list(t.values))
    frac_bits = t.format.fraction_bits(t.scale)
    if frac_bits is not None:
        defines.append(f"#define {macro}_FRAC_BITS {frac_bits}")
    axis = -1 if t.scale_axis is None else t.scale_axis
    defines += [f"#define {macro}_SCALE_SIZE {t.scale.size}", f"#define {macro}_SCALE_AXIS {axis}"]
    out = (_comment(lines) + "\n".join(defines) + "\n").encode()
    out += _array(t.format.c_type, name, f"{macro}_SIZE", _int_body(t.codes))  # type: ignore[arg-type]
    if t.signs is not None:
        out += _array("int8_t", f"{name}_sign", f"{macro}_SIZE", _int_body(t.signs))
    table = t.format.lookup_table()
    if table is not None:
        out += _array("float", f"{name}_table", str(len(table)), _text.float_list(np.asarray(table)))
    out += _array("float", f"{name}_scale", f"{macro}_SCALE_SIZE", _text.float_list(t.scale))
    if t.ap_type is not None:
        out += f"#ifdef QEXTRACT_AP_TYPES\ntypedef {t.ap_type} {name}_t;\n#endif\n".encode()
    if word_bits is not None:
        out += _words_block(name, macro, _words.memory(t, word_bits))
    return out


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.h`` into ``out_dir``; ``word_bits`` adds each tensor's packed memory words."""
    _text.check_unique_keys(tensors)
    _words.check_word_bits(tensors, word_bits)
    guard = f"QEXTRACT_{_text.c_identifier(model_name).upper()}_WEIGHTS_H"
    head = (
        f"/* Weights of model '{model_name}', written by qextract: integer codes and exact scales.\n"
        " * Define QEXTRACT_AP_TYPES (with Vivado/Vitis HLS) for the ap_fixed typedefs. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n"
        "#ifdef QEXTRACT_AP_TYPES\n#include <ap_fixed.h>\n#endif\n"
    )
    parts = [head.encode()]
    names = _text.c_names(tensors)
    _check_no_symbol_clash(tensors, names)
    for t, name in zip(tensors, names):
        if t.size == 0:  # C has no zero-length arrays
            warnings.warn(f"{t.key} has no elements; left out of {FILE}", QExtractWarning, stacklevel=2)
            continue
        parts += [b"\n", _block(t, name, word_bits, model_name)]
    parts.append(f"\n#endif /* {guard} */\n".encode())
    return [_files.write_bytes(Path(out_dir) / FILE, b"".join(parts))]


_SUFFIXES = ("_scale", "_sign", "_table", "_words", "_t")


def _check_no_symbol_clash(tensors: Sequence[ExportedTensor], names: list[str]) -> None:
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


FORMAT = OutputFormat("header", write, read, per_tensor=False, suffix=SUFFIX, words=True)
