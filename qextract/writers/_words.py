"""Storage words -> packed memory words -> hexadecimal text, shared by the memory formats and the header.

Each number format turns one code into one storage word of
``fmt.storage_bits`` bits and back (:meth:`~qextract.numformat.NumberFormat.to_storage`,
:meth:`~qextract.numformat.NumberFormat.from_storage`; the conventions are in
:mod:`qextract.numformat`): two's complement at ``bits`` for fixed point,
ternary and look-up codes, 1 bit for binary, ``e + 2`` bits for powers of two,
the float32 bits of an unquantized value. This module only moves those words.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ExportError
from ..layouts import ExportedTensor
from ..numformat import NumberFormat
from . import _text

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
        return cls(np.zeros(shape, fmt.code_dtype), np.zeros(shape, np.int8) if fmt.has_signs else None)

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


def storage_words(t: ExportedTensor, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The flat (C-order) uint64 storage word of every element of ``t`` (of elements ``start:stop``).

    ExportError for a code its format cannot store.
    """
    stop = t.size if stop is None else stop
    whole = start == 0 and stop == t.size
    codes = t.codes if t.quantized else t.values
    signs = t.signs
    if not whole:
        codes = _text.flat_piece(codes, start, stop)  # type: ignore[arg-type]
        signs = None if signs is None else _text.flat_piece(signs, start, stop)
    try:
        return t.format.to_storage(codes, signs)  # type: ignore[arg-type]
    except ValueError as e:
        raise ExportError(f"{t.key}: {e}") from None


@dataclass(frozen=True)
class WordPlan:
    """How a tensor's ``count`` codes of ``code_bits`` bits fill ``word_bits``-bit memory words, ``per_word`` each."""

    code_bits: int
    word_bits: int
    per_word: int
    count: int

    @property
    def depth(self) -> int:
        return -(-self.count // self.per_word)

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


def plan(t: ExportedTensor, word_bits: int | None = None) -> WordPlan:
    """``t``'s codes as memory words (:func:`memory` without the words), after checking they fit ``word_bits``."""
    check_word_bits([t], word_bits)
    bits = t.format.storage_bits
    width = word_width(t.format, word_bits)
    return WordPlan(bits, width, width // bits, t.size)


def memory_pieces(t: ExportedTensor, words: WordPlan, lines: int, chunk: int | None) -> Iterator[tuple[int, Memory]]:
    """``(first word, Memory)`` of consecutive pieces of ``t``'s memory, each a whole number of ``lines``-word
    lines of about ``chunk`` codes (None: all at once): packing them piece by piece gives the same words."""
    for start, stop in _text.spans(t.size, words.per_word * lines, chunk):
        yield start // words.per_word, pack(storage_words(t, start, stop), words.code_bits, words.word_bits)


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
        return WordPlan(self.code_bits, self.word_bits, self.per_word, self.count).describe()


def word_width(fmt: NumberFormat, word_bits: int | None) -> int:
    """Bits of one memory word: ``word_bits``, or one code's bits when it is unset."""
    return fmt.storage_bits if word_bits is None else int(word_bits)


def hex_digits(width: int) -> int:
    """Hexadecimal digits of a ``width``-bit word."""
    return max(1, math.ceil(width / 4))


def check_word_bits(tensors: Sequence[_text.Keyed], word_bits: int | None) -> None:
    """Raise one ExportError naming every tensor whose code does not fit a ``word_bits`` word."""
    if word_bits is None:
        return
    if isinstance(word_bits, bool) or not isinstance(word_bits, (int, np.integer)) or word_bits < 1:
        raise ExportError(f"word_bits must be a positive integer, not {word_bits!r}")
    bad = [f"{t.key} ({t.format.storage_bits} bits)" for t in tensors if t.format.storage_bits > word_bits]
    if bad:
        raise ExportError(
            f"codes wider than word_bits={word_bits}: {', '.join(bad)}; raise word_bits or leave it unset"
        )


def memory(t: ExportedTensor, word_bits: int | None = None) -> Memory:
    """``t``'s storage words, packed ``word_bits // code_bits`` to a memory word when ``word_bits`` is set."""
    check_word_bits([t], word_bits)
    return pack(storage_words(t), t.format.storage_bits, word_width(t.format, word_bits))


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


def from_storage(words: np.ndarray, fmt: NumberFormat) -> Codes:
    """The inverse of :func:`storage_words`: flat uint64 storage words back to checked codes (ValueError if not)."""
    return Codes(*fmt.from_storage(words))


def check_codes(codes: Codes, fmt: NumberFormat) -> Codes:
    """``codes`` in ``fmt``'s code dtype, after checking every code (and sign) is one ``fmt`` allows.

    ValueError names the first code that is not: a corrupted file, or a
    file that does not belong to this tensor.
    """
    return Codes(*fmt.check(codes.codes, codes.signs))


def from_memory(limbs: np.ndarray, fmt: NumberFormat, word_bits: int | None, shape: tuple[int, ...]) -> Codes:
    """The inverse of :func:`memory`: the codes of a tensor of ``shape`` from its memory words."""
    codes = from_storage(unpack(limbs, fmt.storage_bits, word_width(fmt, word_bits), math.prod(shape)), fmt)
    return Codes(codes.codes.reshape(shape), None if codes.signs is None else codes.signs.reshape(shape))
