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

Reading runs every step backwards, each the exact inverse of its writer:
:func:`hex_limbs` (of :func:`hex_cells`), :func:`unpack` (of :func:`pack`,
which it re-runs to prove that no bit outside the codes is set) and
:func:`from_storage` (of :func:`storage_words`); :func:`from_memory` chains
them into :class:`Codes`.
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
_NIBBLE = np.full(256, 255, np.uint8)  # ASCII -> hex digit value; 255: not a digit
_NIBBLE[_HEX] = np.arange(16)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


@dataclass(frozen=True, eq=False)
class Codes:
    """One tensor as a file holds it: what every reader returns.

    ``codes``: the integer codes in the format's ``code_dtype``, in the
    tensor's (laid-out) shape; for an unquantized tensor, its float32 values.
    ``signs``: int8 -1/0/+1 for powers of two, else None.
    """

    codes: np.ndarray
    signs: np.ndarray | None = None

    @classmethod
    def empty(cls, fmt: NumberFormat, shape: tuple[int, ...]) -> Codes:
        """Codes of a tensor with no elements (which header, mem, coe and mif leave out)."""
        dtype = fmt.code_dtype if fmt.quantized else np.dtype(np.float32)
        signs = np.zeros(shape, np.int8) if isinstance(fmt, PowerOfTwo) else None
        return cls(np.zeros(shape, dtype), signs)

    def first_difference(self, other: Codes) -> tuple[int, str, str, str] | None:
        """``(flat index, "code" or "sign", ours, theirs)`` where ``other`` first differs; None if identical.

        Floats compare by their bits (so -0.0 differs from 0.0); shapes must match.
        """
        for what, ours, theirs in (("code", self.codes, other.codes), ("sign", self.signs, other.signs)):
            if ours is None and theirs is None:
                continue
            if ours is None or theirs is None or ours.shape != theirs.shape:
                return 0, what, _shape_text(ours), _shape_text(theirs)
            a, b = _comparable(ours).reshape(-1), _comparable(theirs).reshape(-1)
            differ = np.flatnonzero(a != b)
            if differ.size:
                i = int(differ[0])
                return i, what, _item_text(ours.reshape(-1)[i]), _item_text(theirs.reshape(-1)[i])
        return None


def _comparable(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32) if a.dtype == np.float32 else a.astype(np.int64)


def _shape_text(a: np.ndarray | None) -> str:
    return "none" if a is None else f"shape {list(a.shape)}"


def _item_text(x: np.generic) -> str:
    return repr(float(x)) if isinstance(x, np.floating) else str(int(x))


def code_bits(fmt: NumberFormat) -> int:
    """Bits of one stored code in format ``fmt`` (the format owns the rule: ``fmt.storage_bits``)."""
    return fmt.storage_bits


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
        return hex_digits(self.word_bits)

    def describe(self) -> str:
        words = f"{self.depth} word{'s' * (self.depth != 1)} of {self.word_bits} bits"
        if self.per_word == 1 and self.word_bits == self.code_bits:
            return f"{words}, one code per word"
        return (
            f"{words}, {self.per_word} code{'s' * (self.per_word != 1)} of {self.code_bits} bits per word, "
            "first code in the least significant bits, unused bits zero"
        )


def word_width(fmt: NumberFormat, word_bits: int | None) -> int:
    """Bits of one memory word: ``word_bits``, or one code's bits when it is unset."""
    return code_bits(fmt) if word_bits is None else int(word_bits)


def hex_digits(width: int) -> int:
    """Hexadecimal digits of a ``width``-bit word."""
    return max(1, math.ceil(width / 4))


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
    return pack(storage_words(t), bits, word_width(t.format, word_bits))


def pack(words: np.ndarray, bits: int, width: int) -> Memory:
    """Storage ``words`` of ``bits`` bits, ``width // bits`` to a ``width``-bit memory word, first in the low bits."""
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


# --- reading: each step the exact inverse of its writer ----------------------------------


def hex_limbs(cells: np.ndarray) -> np.ndarray:
    """The inverse of :func:`hex_cells`: ASCII hex rows ``(n, digits)`` as uint64 limbs, least significant first."""
    nibbles = _NIBBLE[cells]
    if (nibbles == 255).any():
        bad = int(cells.reshape(-1)[np.flatnonzero(nibbles.reshape(-1) == 255)[0]])
        raise ValueError(f"{chr(bad)!r} in a memory word is not a hexadecimal digit")
    n, digits = cells.shape
    limbs = np.zeros((n, max(1, -(-digits // 16))), np.uint64)
    for d in range(digits):
        limb, shift = divmod(4 * d, 64)
        limbs[:, limb] |= nibbles[:, digits - 1 - d].astype(np.uint64) << np.uint64(shift)
    return limbs


def unpack(limbs: np.ndarray, bits: int, width: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack`: the ``count`` storage words in ``limbs`` (uint64, flat).

    ValueError when the word count is not the one :func:`pack` gives, or when
    any bit outside the codes (above the last code, the tail of the last
    word) is set: the words are packed again and must be the same.
    """
    per_word = width // bits
    depth = -(-count // per_word)
    if limbs.shape != (depth, -(-width // 64)):
        expected = f"{depth} ({count} codes, {per_word} per {width}-bit word)"
        raise ValueError(f"{limbs.shape[0]} memory words, expected {expected}")
    fields = np.empty((depth, per_word), np.uint64)
    mask = np.uint64(2**bits - 1)
    for j in range(per_word):
        limb, shift = divmod(j * bits, 64)
        field = limbs[:, limb] >> np.uint64(shift)
        if shift + bits > 64:
            field = field | (limbs[:, limb + 1] << np.uint64(64 - shift))
        fields[:, j] = field & mask
    words = fields.reshape(-1)[:count]
    if not np.array_equal(pack(words, bits, width).limbs, limbs):
        raise ValueError(f"bits outside the {bits}-bit codes are set; unused bits of a {width}-bit word are zero")
    return words


def _sign_extend(words: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit two's complement fields (uint64) as int64."""
    up = np.uint64(64 - bits)
    return (words << up).view(np.int64) >> up.astype(np.int64)


def from_storage(words: np.ndarray, fmt: NumberFormat) -> Codes:
    """The inverse of :func:`storage_words`: flat uint64 storage words back to codes (see :func:`check_codes`)."""
    if not fmt.quantized:
        return Codes(words.astype(np.uint32).view(np.float32))
    if fmt.kind == "binary":
        codes = words.astype(np.int64) if getattr(fmt, "use_01", False) else np.where(words == 1, 1, -1)
        return check_codes(Codes(codes), fmt)
    if isinstance(fmt, PowerOfTwo):
        e = fmt.exponent_bits
        zero, negative = (words >> np.uint64(e + 1)) & np.uint64(1), (words >> np.uint64(e)) & np.uint64(1)
        if (zero & negative).any():
            raise ValueError("a power-of-two word marks its value both zero and negative")
        signs = np.where(zero == 1, 0, np.where(negative == 1, -1, 1)).astype(np.int8)
        return check_codes(Codes(_sign_extend(words & np.uint64(2**e - 1), e), signs), fmt)
    codes = _sign_extend(words, fmt.bits) if fmt.code_min < 0 else words.astype(np.int64)
    return check_codes(Codes(codes), fmt)


def check_codes(codes: Codes, fmt: NumberFormat) -> Codes:
    """``codes`` in ``fmt``'s code dtype, after checking every code (and sign) is one ``fmt`` allows.

    ValueError names the first code that is not: a corrupted file, or a
    file that does not belong to this tensor. A power-of-two code is checked
    only where its sign is nonzero (a zero's exponent carries nothing).
    """
    if not fmt.quantized:
        return Codes(np.asarray(codes.codes).astype(np.float32, copy=False))
    c = np.asarray(codes.codes).astype(np.int64, copy=False)
    if fmt.kind == "binary":
        bad = ~np.isin(c, (0, 1) if getattr(fmt, "use_01", False) else (-1, 1))
    else:
        bad = (c < fmt.code_min) | (c > fmt.code_max)
    signs = None
    if isinstance(fmt, PowerOfTwo):
        if codes.signs is None:
            raise ValueError("power-of-two codes without their signs")
        signs = np.asarray(codes.signs).astype(np.int64, copy=False)
        if not np.isin(signs, (-1, 0, 1)).all():
            raise ValueError(f"sign {int(signs[~np.isin(signs, (-1, 0, 1))][0])} is not -1, 0 or +1")
        bad &= signs != 0
        signs = signs.astype(np.int8)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        code = int(c.reshape(-1)[i])
        raise ValueError(f"code {code} at index {i} is outside format {fmt} [{fmt.code_min}, {fmt.code_max}]")
    return Codes(c.astype(fmt.code_dtype), signs)


def from_memory(limbs: np.ndarray, fmt: NumberFormat, word_bits: int | None, shape: tuple[int, ...]) -> Codes:
    """The inverse of :func:`memory`: the codes of a tensor of ``shape`` from its memory words."""
    codes = from_storage(unpack(limbs, code_bits(fmt), word_width(fmt, word_bits), math.prod(shape)), fmt)
    return Codes(codes.codes.reshape(shape), None if codes.signs is None else codes.signs.reshape(shape))
