"""Codes -> unsigned storage words -> packed memory words, shared by mem, coe, mif and header.

One code becomes one storage word of ``code_bits`` bits:

- fixed point, ternary, look-up: two's complement at ``format.bits``
  (ternary -1 -> ``0b11``; unsigned formats are plain binary);
- binary {-1,+1}: 1 bit, +1 -> 1 and -1 -> 0 (``use_01``: the 0/1 code itself);
- power of two: ``e + 2`` bits with ``e = format.exponent_bits``:
  ``(zero << (e+1)) | (negative << e) | (exponent mod 2**e)``;
- float (unquantized): the IEEE-754 float32 bits of the value, 32 bits.

Packing: with ``word_bits`` each memory word holds ``word_bits // code_bits``
codes, the first code in the least significant bits; bits above the last
code and the unused tail of the last word are zero. Without ``word_bits``
each memory word is one code of ``code_bits`` bits. Readers sign-extend a
field when the format is signed.

Words of any width are held as rows of 64-bit limbs, least significant limb
first, and rendered to hexadecimal with vectorised NumPy (no per-element
Python), so multi-million-weight tensors are written quickly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ExportError
from ..layouts import ExportedTensor
from ..numformat import NumberFormat, PowerOfTwo

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def code_bits(fmt: NumberFormat) -> int:
    """Bits of one stored code in format ``fmt``."""
    if not fmt.quantized:
        return 32
    if fmt.kind == "binary":
        return 1
    if isinstance(fmt, PowerOfTwo):
        return fmt.exponent_bits + 2
    return fmt.bits


def encoding(fmt: NumberFormat) -> str:
    """One line saying how a stored word encodes a code, for file comments."""
    bits = code_bits(fmt)
    if not fmt.quantized:
        return "IEEE-754 float32 bits of the value"
    if fmt.kind == "binary":
        return "1 bit: code 0/1 itself" if getattr(fmt, "use_01", False) else "1 bit: +1 -> 1, -1 -> 0"
    if isinstance(fmt, PowerOfTwo):
        e = fmt.exponent_bits
        return f"{bits} bits: zero<<{e + 1} | negative<<{e} | exponent ({e}-bit two's complement)"
    return f"{bits}-bit two's complement" if fmt.code_min < 0 else f"{bits}-bit unsigned"


def _out_of_range(t: ExportedTensor, codes: np.ndarray, lo: int, hi: int, what: str) -> None:
    if codes.size and (int(codes.min()) < lo or int(codes.max()) > hi):
        raise ExportError(
            f"{t.key}: codes span [{int(codes.min())}, {int(codes.max())}], outside the {what} range [{lo}, {hi}] "
            f"of format {t.format}; the extraction produced codes its format cannot hold"
        )


def storage_words(t: ExportedTensor) -> np.ndarray:
    """The flat (C-order) uint64 storage word of every element of ``t``."""
    fmt = t.format
    if t.codes is None:
        return np.ascontiguousarray(t.values, np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    codes = np.asarray(t.codes).reshape(-1).astype(np.int64)
    bits = code_bits(fmt)
    if fmt.kind == "binary":
        use_01 = bool(getattr(fmt, "use_01", False))
        if codes.size and not np.isin(codes, (0, 1) if use_01 else (-1, 1)).all():
            allowed = "0/1" if use_01 else "-1/+1"
            raise ExportError(f"{t.key}: binary codes must be {allowed}, found {np.unique(codes)[:5].tolist()}")
        return (codes > 0).astype(np.uint64)
    if isinstance(fmt, PowerOfTwo):
        if t.signs is None:
            raise ExportError(f"{t.key}: power-of-two codes need their signs; the tensor has none")
        signs = np.asarray(t.signs).reshape(-1)
        e = fmt.exponent_bits
        _out_of_range(t, codes[signs != 0], -(2 ** (e - 1)), 2 ** (e - 1) - 1, f"{e}-bit exponent")
        exponent = (codes & (2**e - 1)).astype(np.uint64)
        zero, negative = (signs == 0).astype(np.uint64), (signs < 0).astype(np.uint64)
        return (zero << np.uint64(e + 1)) | (negative << np.uint64(e)) | exponent
    if bits > 64:
        raise ExportError(f"{t.key}: {bits}-bit codes are wider than 64 bits; no memory format holds them")
    if fmt.code_min < 0:
        _out_of_range(t, codes, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, f"{bits}-bit two's complement")
    else:
        _out_of_range(t, codes, 0, 2**bits - 1, f"{bits}-bit unsigned")
    return codes.view(np.uint64) & np.uint64(2**bits - 1)


@dataclass(frozen=True, eq=False)
class Memory:
    """A tensor's codes as memory words: ``limbs[d]`` is word ``d``, 64-bit limbs, least significant first."""

    code_bits: int
    word_bits: int
    per_word: int
    count: int
    limbs: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.limbs.shape[0])

    @property
    def hex_digits(self) -> int:
        return max(1, math.ceil(self.word_bits / 4))

    def describe(self) -> str:
        words = f"{self.depth} word{'s' * (self.depth != 1)} of {self.word_bits} bits"
        if self.per_word == 1 and self.word_bits == self.code_bits:
            return f"{words}, one code per word"
        return (
            f"{words}, {self.per_word} code{'s' * (self.per_word != 1)} of {self.code_bits} bits per word, "
            "first code in the least significant bits, unused bits zero"
        )


def check_word_bits(tensors: Sequence[ExportedTensor], word_bits: int | None) -> None:
    """Raise one ExportError naming every tensor whose code does not fit a ``word_bits`` word."""
    if word_bits is None:
        return
    if isinstance(word_bits, bool) or not isinstance(word_bits, (int, np.integer)) or word_bits < 1:
        raise ExportError(f"word_bits must be a positive integer, not {word_bits!r}")
    bad = [f"{t.key} ({code_bits(t.format)} bits)" for t in tensors if code_bits(t.format) > word_bits]
    if bad:
        raise ExportError(
            f"codes wider than word_bits={word_bits}: {', '.join(bad)}; raise word_bits or leave it unset"
        )


def memory(t: ExportedTensor, word_bits: int | None = None) -> Memory:
    """``t``'s storage words, packed ``word_bits // code_bits`` to a memory word when ``word_bits`` is set."""
    bits = code_bits(t.format)
    check_word_bits([t], word_bits)
    words = storage_words(t)
    width = bits if word_bits is None else int(word_bits)
    per_word = width // bits
    if per_word == 1 and width <= 64:  # the common case: one code per word, nothing to shift
        return Memory(bits, width, 1, int(words.size), words.reshape(-1, 1))
    depth = -(-words.size // per_word)
    pad = depth * per_word - words.size
    fields = (np.concatenate([words, np.zeros(pad, np.uint64)]) if pad else words).reshape(depth, per_word)
    limbs = np.zeros((depth, -(-width // 64)), np.uint64)
    for j in range(per_word):
        limb, shift = divmod(j * bits, 64)
        limbs[:, limb] |= fields[:, j] << np.uint64(shift)
        if shift + bits > 64:
            limbs[:, limb + 1] |= fields[:, j] >> np.uint64(64 - shift)
    return Memory(bits, width, per_word, int(words.size), limbs)


def hex_cells(limbs: np.ndarray, digits: int) -> np.ndarray:
    """ASCII hex of each row of ``limbs`` (least significant limb first), ``digits`` wide: uint8 ``(n, digits)``."""
    out = np.empty((limbs.shape[0], digits), np.uint8)
    for d in range(digits):
        limb, shift = divmod(4 * d, 64)
        out[:, digits - 1 - d] = _HEX[((limbs[:, limb] >> np.uint64(shift)) & np.uint64(15)).astype(np.intp)]
    return out
