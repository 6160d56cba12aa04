"""One C/C++ header ``weights.h``: integer codes and exact scales, for HLS and firmware.

Per tensor (identifier ``<layer>_<tensor>``, macros in upper case):

- ``#define``\\s for the rank, each dimension, the size, the code bits, the
  fractional bits (fixed point with one power-of-two scale), the scale size
  and axis (-1: one scale for the tensor);
- ``static const <int type> name[]``: the codes in the smallest ``<stdint.h>``
  type of the format (floats for unquantized tensors); ``name_sign[]`` for
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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import QExtractWarning
from ..layouts import ExportedTensor
from ..numformat import scale_exponent
from . import _files, _text, _words

FILE = "weights.h"
PER_LINE = 16


def _comment(lines: list[str]) -> str:
    body = "".join(f" * {line.replace('*/', '* /')}\n" for line in lines)
    return f"/*\n{body} */\n"


def _array(ctype: str, name: str, size: str, body: bytes | str) -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return f"static const {ctype} {name}[{size}] = {{\n".encode() + body + b"};\n"


def _int_body(values: np.ndarray) -> bytes:
    cells = _text.decimal_cells(values)
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
    lines = [*_text.summary(t, model_name), f"C name {name}; code: {_words.encoding(t.format)}"]
    defines = [f"#define {macro}_RANK {len(t.shape)}"]
    defines += [f"#define {macro}_DIM{i} {d} /* {a} */" for i, (d, a) in enumerate(zip(t.shape, t.axes))]
    defines += [f"#define {macro}_SIZE {t.size}", f"#define {macro}_BITS {t.format.bits}"]
    if not t.quantized:
        text = _comment(lines) + "\n".join(defines) + "\n"
        return text.encode() + _array("float", name, f"{macro}_SIZE", _text.float_list(t.values))
    exponent = scale_exponent(t.scale) if t.format.kind == "fixed" else None
    if exponent is not None:
        defines.append(f"#define {macro}_FRAC_BITS {-exponent}")
    axis = -1 if t.scale_axis is None else t.scale_axis
    defines += [f"#define {macro}_SCALE_SIZE {t.scale.size}", f"#define {macro}_SCALE_AXIS {axis}"]
    out = (_comment(lines) + "\n".join(defines) + "\n").encode()
    out += _array(t.format.c_type, name, f"{macro}_SIZE", _int_body(t.codes))  # type: ignore[arg-type]
    if t.signs is not None:
        out += _array("int8_t", f"{name}_sign", f"{macro}_SIZE", _int_body(t.signs))
    table = getattr(t.format, "table", None)
    if t.format.kind == "lut" and table is not None:
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
    for t, name in zip(tensors, _text.c_names(tensors)):
        if t.size == 0:  # C has no zero-length arrays
            warnings.warn(f"{t.key} has no elements; left out of {FILE}", QExtractWarning, stacklevel=2)
            continue
        parts += [b"\n", _block(t, name, word_bits, model_name)]
    parts.append(f"\n#endif /* {guard} */\n".encode())
    return [_files.write_bytes(Path(out_dir) / FILE, b"".join(parts))]
