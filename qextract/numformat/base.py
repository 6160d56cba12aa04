"""The interface every number format implements, with the defaults of integer codes on a uniform grid.

:class:`NumberFormat` says what a code means and how it is stored; each
subclass (in :mod:`.formats`) registers itself in :data:`KINDS` under the
``kind`` the manifest records, so :func:`from_description` rebuilds any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

_C_TYPES = (
    ("int8_t", np.int8),
    ("uint8_t", np.uint8),
    ("int16_t", np.int16),
    ("uint16_t", np.uint16),
    ("int32_t", np.int32),
    ("uint32_t", np.uint32),
    ("int64_t", np.int64),
)


CODE_RANGE = (-(2**63), 2**63 - 1)
"""Every code qextract holds lies here: codes are int64 at most (no uint64), so that
readers, writers and the manifest handle them as exact integers alike."""

MAX_STORAGE_BITS = 64
"""Widest stored code (one memory word field): wider fields would span two 64-bit limbs."""

KINDS: dict[str, type[NumberFormat]] = {}
"""Every number format class by its ``kind`` (as the manifest records it); filled as classes are defined."""


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest NumPy integer dtype holding every integer in ``[lo, hi]`` (ValueError above int64)."""
    for _, dtype in _C_TYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"no integer type holds [{lo}, {hi}]")


def c_int_type(lo: int, hi: int) -> str:
    """The smallest ``<stdint.h>`` type holding every integer in ``[lo, hi]``."""
    dtype = smallest_int_dtype(lo, hi)
    return next(name for name, d in _C_TYPES if np.dtype(d) == dtype)


def scale_exponent(scale: np.ndarray | float) -> int | None:
    """``e`` if every element of ``scale`` is the same power of two ``2**e``, else None."""
    s = np.unique(np.asarray(scale, dtype=np.float64))
    if s.size != 1 or not s[0] > 0 or not np.isfinite(s[0]):
        return None
    mantissa, exponent = math.frexp(float(s[0]))
    return exponent - 1 if mantissa == 0.5 else None


def sign_extend(words: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit two's complement fields (uint64) as int64."""
    up = np.uint64(64 - bits)
    return (words << up).view(np.int64) >> up.astype(np.int64)


def within(fmt: NumberFormat, codes: np.ndarray, lo: int, hi: int, what: str) -> None:
    """ValueError unless every one of ``codes`` (int64) lies in ``[lo, hi]``, the range a stored field holds."""
    if codes.size and (int(codes.min()) < lo or int(codes.max()) > hi):
        raise ValueError(
            f"codes span [{int(codes.min())}, {int(codes.max())}], outside the {what} range [{lo}, {hi}] "
            f"of format {fmt}; the extraction produced codes its format cannot hold"
        )


@dataclass(frozen=True)
class NumberFormat:
    """Common interface of every format: a kind, a width, a code range, and what a code means.

    The defaults are those of integer codes on a uniform grid, stored as
    ``bits``-bit two's complement (plain binary when unsigned); a format whose
    codes mean or are stored otherwise overrides the method that differs.
    """

    kind: ClassVar[str] = "abstract"
    has_signs: ClassVar[bool] = False
    """Whether codes travel with int8 signs -1/0/+1 beside them (powers of two)."""
    bits: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

    @property
    def code_min(self) -> int:
        raise NotImplementedError

    @property
    def code_max(self) -> int:
        raise NotImplementedError

    @property
    def signed(self) -> bool:
        return self.code_min < 0

    @property
    def quantized(self) -> bool:
        return True

    @property
    def code_dtype(self) -> np.dtype:
        return smallest_int_dtype(self.code_min, self.code_max)

    @property
    def c_type(self) -> str:
        return c_int_type(self.code_min, self.code_max)

    @property
    def levels(self) -> int:
        """How many distinct codes the format allows."""
        return self.code_max - self.code_min + 1

    @property
    def storage_bits(self) -> int:
        """Bits of one stored code (a field of a memory word): two's complement or plain binary at ``bits``."""
        return self.bits

    def width_problem(self) -> str | None:
        """Why qextract cannot hold this format's codes exactly, or None when it can.

        Codes must fit int64 (:data:`CODE_RANGE`) and one stored code at most
        :data:`MAX_STORAGE_BITS` bits, so that every writer and reader keeps
        them exact; QKeras accepts wider configurations, which are refused by
        name at extraction rather than failing (or wrapping) in a writer.
        """
        if self.code_min < CODE_RANGE[0] or self.code_max > CODE_RANGE[1]:
            return (
                f"its codes span [{self.code_min}, {self.code_max}], beyond the 64-bit signed integers "
                f"[{CODE_RANGE[0]}, {CODE_RANGE[1]}] qextract holds codes in"
            )
        if self.storage_bits > MAX_STORAGE_BITS:
            return (
                f"one stored code needs {self.storage_bits} bits, "
                f"more than the {MAX_STORAGE_BITS} a memory word field holds"
            )
        return None

    def ap_type(self, scale: np.ndarray | float = 1.0) -> str | None:
        """The Vivado/Vitis HLS type holding ``code * scale`` exactly, if one exists."""
        return None

    def fraction_bits(self, scale: np.ndarray | float) -> int | None:
        """Fractional bits of ``code * scale`` as a binary fixed-point number, if the format is such a grid."""
        return None

    def lookup_table(self) -> tuple[float, ...] | None:
        """The values codes index, for a look-up format (the C header writes them beside the codes)."""
        return None

    # --- what a code means ----------------------------------------------------------------

    def decode(self, codes: np.ndarray, scale: np.ndarray | float, signs: np.ndarray | None = None) -> np.ndarray:
        """Values of ``codes`` with ``scale`` (broadcastable), float32, as the layer computes them."""
        return np.asarray(codes).astype(np.float32, copy=False) * np.asarray(scale, np.float32)

    def value_rule(self, scale: str = "scale", table: str = "table") -> str:
        """:meth:`decode` in words, for comments and the manifest: ``value = code * scale``.

        ``scale`` and ``table`` are the names the text gives them (``scale[channel]``;
        the manifest's ``format.table``).
        """
        return f"value = code * {scale}"

    # --- how a code is stored -------------------------------------------------------------

    def storage_rule(self) -> str:
        """One line saying how a stored word encodes a code, for file comments."""
        return f"{self.storage_bits}-bit two's complement" if self.code_min < 0 else f"{self.storage_bits}-bit unsigned"

    def to_storage(self, codes: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
        """The flat (C-order) uint64 storage word of each code: ``storage_bits`` wide, unused bits zero.

        ValueError when a code does not fit its field (the extraction produced
        a code its format cannot hold).
        """
        bits = self.storage_bits
        if bits > MAX_STORAGE_BITS:
            raise ValueError(f"{bits}-bit codes are wider than 64 bits; no memory format holds them")
        c = np.asarray(codes).reshape(-1).astype(np.int64)
        if self.code_min < 0:
            within(self, c, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, f"{bits}-bit two's complement")
        else:
            within(self, c, 0, 2**bits - 1, f"{bits}-bit unsigned")
        return c.view(np.uint64) & np.uint64(2**bits - 1)

    def from_storage(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The inverse of :meth:`to_storage`: flat uint64 words back to ``(codes, signs)``, checked by :meth:`check`."""
        codes = sign_extend(words, self.storage_bits) if self.code_min < 0 else words.astype(np.int64)
        return self.check(codes)

    def allows(self, codes: np.ndarray) -> np.ndarray:
        """Which of ``codes`` (int64) are codes of this format: a boolean mask."""
        return (codes >= self.code_min) & (codes <= self.code_max)

    def check(self, codes: np.ndarray, signs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(codes, signs)`` in the format's dtypes, after checking every code (and sign) is one it allows.

        ValueError names the first code that is not: a corrupted file, or a
        file that does not belong to this tensor.
        """
        c = np.asarray(codes).astype(np.int64, copy=False)
        self._refuse(c, ~self.allows(c))
        return c.astype(self.code_dtype), None

    def _refuse(self, codes: np.ndarray, bad: np.ndarray) -> None:
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            code = int(codes.reshape(-1)[i])
            raise ValueError(f"code {code} at index {i} is outside format {self} [{self.code_min}, {self.code_max}]")

    # --- description ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for the manifest and reports); :func:`from_description` inverts it."""
        d = {"kind": self.kind, **asdict(self)}
        d.update(code_min=self.code_min, code_max=self.code_max, signed=self.signed)
        return d

    def __str__(self) -> str:
        return f"{self.kind}{self.bits}"


def from_description(d: Mapping[str, Any]) -> NumberFormat:
    """The format ``d`` (a :meth:`NumberFormat.describe`, e.g. from a manifest) describes.

    ValueError for an unknown kind or when the rebuilt format's code range
    differs from the one recorded.

    >>> from_description({"kind": "ternary", "bits": 2, "code_min": -1, "code_max": 1})
    Ternary(bits=2)
    """
    cls = KINDS.get(d.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown number format kind {d.get('kind')!r}; expected one of {', '.join(KINDS)}")
    kwargs = {f.name: d[f.name] for f in fields(cls) if f.name in d}
    if "table" in kwargs:
        kwargs["table"] = tuple(kwargs["table"])
    fmt = cls(**kwargs)
    recorded = (d.get("code_min", fmt.code_min), d.get("code_max", fmt.code_max))
    if recorded != (fmt.code_min, fmt.code_max):
        raise ValueError(
            f"format {fmt} has codes [{fmt.code_min}, {fmt.code_max}], the manifest records {list(recorded)}"
        )
    return fmt
