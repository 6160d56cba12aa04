"""The number formats QKeras's quantizers produce: fixed point, powers of two, binary, ternary, look-up, float."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .base import NumberFormat, scale_exponent, sign_extend, within


@dataclass(frozen=True)
class FixedPoint(NumberFormat):
    """Two's-complement (or unsigned) integer codes on a uniform grid.

    ``integer`` is QKeras's count of integer bits (excluding the sign), so the
    grid step with a unit scale is ``2**(integer - (bits - signed))``.
    ``symmetric`` drops the most negative code.
    """

    kind: ClassVar[str] = "fixed"
    integer: int = 0
    is_signed: bool = True
    symmetric: bool = False

    @property
    def code_min(self) -> int:
        if not self.is_signed:
            return 0
        return -(2 ** (self.bits - 1)) + int(self.symmetric)

    @property
    def code_max(self) -> int:
        return 2 ** (self.bits - int(self.is_signed)) - 1

    @property
    def fractional_bits(self) -> int:
        return self.bits - int(self.is_signed) - self.integer

    @property
    def step(self) -> float:
        """The value of code 1 when the tensor's scale is 1 (alpha None)."""
        return 2.0 ** (-self.fractional_bits)

    def ap_type(self, scale: np.ndarray | float | None = None) -> str | None:
        """``ap_fixed<W,I>`` for codes times a single power-of-two scale.

        With no scale given, the format's own step is assumed (alpha None/1).
        A per-channel or non-power-of-two scale has no single HLS type: None.
        """
        exponent = -self.fractional_bits if scale is None else scale_exponent(scale)
        if exponent is None:
            return None
        int_bits = self.bits + exponent  # W - F, with F = -exponent fractional bits
        return f"ap_fixed<{self.bits},{int_bits}>" if self.is_signed else f"ap_ufixed<{self.bits},{int_bits}>"

    def fraction_bits(self, scale: np.ndarray | float) -> int | None:
        """``F`` when ``scale`` is one power of two ``2**-F``; None for per-channel or other scales.

        >>> FixedPoint(bits=4, integer=1).fraction_bits(0.125), FixedPoint(bits=4).fraction_bits(0.3)
        (3, None)
        """
        exponent = scale_exponent(scale)
        return None if exponent is None else -exponent

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(fractional_bits=self.fractional_bits, ap_type=self.ap_type())
        return d

    def __str__(self) -> str:
        sign = "" if self.is_signed else "u"
        return f"{sign}fixed<{self.bits},{self.integer}{',sym' if self.symmetric else ''}>"


@dataclass(frozen=True)
class PowerOfTwo(NumberFormat):
    """Values ``sign * 2**exponent``: codes are exponents, signs are -1, 0 or +1.

    ``bits`` is QKeras's width (sign of value + exponent). A zero value can
    arise from the straight-through estimator's float arithmetic; it is
    carried by a sign code of 0, never by ``log2(0) = -inf``.

    Stored in ``e + 2`` bits, ``e`` = :attr:`exponent_bits`:
    ``(zero << (e+1)) | (negative << e) | (exponent mod 2**e)``.

    >>> f = PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0)
    >>> f.value_rule(), f.storage_rule()
    ('value = sign * 2**code * scale', "6 bits: zero<<5 | negative<<4 | exponent (4-bit two's complement)")
    >>> f.decode(np.array([-3, 0, -1]), 1.0, np.array([1, 0, -1])).tolist()
    [0.125, 0.0, -0.5]
    >>> f.to_storage(np.array([-3, 0, -1]), np.array([1, 0, -1])).tolist()
    [13, 32, 31]
    """

    kind: ClassVar[str] = "po2"
    has_signs: ClassVar[bool] = True
    exponent_min: int = 0
    exponent_max: int = 0
    negative: bool = True

    @property
    def code_min(self) -> int:
        return self.exponent_min

    @property
    def code_max(self) -> int:
        return self.exponent_max

    @property
    def signed(self) -> bool:
        return self.negative

    @property
    def levels(self) -> int:
        """Distinct nonzero values: every exponent, with both signs where negatives exist."""
        return (self.exponent_max - self.exponent_min + 1) * (2 if self.negative else 1)

    @property
    def exponent_bits(self) -> int:
        """Two's-complement width that holds every exponent."""
        hi = max(abs(self.exponent_min), abs(self.exponent_max) + 1)
        return max(1, math.ceil(math.log2(hi)) + 1) if hi > 0 else 1

    @property
    def storage_bits(self) -> int:
        """Exponent, a negative flag and a zero flag."""
        return self.exponent_bits + 2

    def decode(self, codes: np.ndarray, scale: np.ndarray | float, signs: np.ndarray | None = None) -> np.ndarray:
        if signs is None:
            raise ValueError("power-of-two codes need their signs")
        magnitude = np.ldexp(np.float32(1.0), np.asarray(codes).astype(np.int32)).astype(np.float32)
        return (np.asarray(signs).astype(np.float32) * magnitude * np.asarray(scale, np.float32)).astype(np.float32)

    def value_rule(self, scale: str = "scale", table: str = "table") -> str:
        return f"value = sign * 2**code * {scale}"

    def storage_rule(self) -> str:
        e = self.exponent_bits
        return f"{self.storage_bits} bits: zero<<{e + 1} | negative<<{e} | exponent ({e}-bit two's complement)"

    def to_storage(self, codes: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
        if signs is None:
            raise ValueError("power-of-two codes need their signs; the tensor has none")
        c, s = np.asarray(codes).reshape(-1).astype(np.int64), np.asarray(signs).reshape(-1)
        e = self.exponent_bits
        within(self, c[s != 0], -(2 ** (e - 1)), 2 ** (e - 1) - 1, f"{e}-bit exponent")
        exponent = (c & (2**e - 1)).astype(np.uint64)
        zero, negative = (s == 0).astype(np.uint64), (s < 0).astype(np.uint64)
        return (zero << np.uint64(e + 1)) | (negative << np.uint64(e)) | exponent

    def from_storage(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        e = self.exponent_bits
        zero, negative = (words >> np.uint64(e + 1)) & np.uint64(1), (words >> np.uint64(e)) & np.uint64(1)
        if (zero & negative).any():
            raise ValueError("a power-of-two word marks its value both zero and negative")
        signs = np.where(zero == 1, 0, np.where(negative == 1, -1, 1)).astype(np.int8)
        return self.check(sign_extend(words & np.uint64(2**e - 1), e), signs)

    def check(self, codes: np.ndarray, signs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`NumberFormat.check`, with signs; a code is checked only where its sign is nonzero
        (a zero's exponent carries nothing)."""
        if signs is None:
            raise ValueError("power-of-two codes without their signs")
        c, s = np.asarray(codes).astype(np.int64, copy=False), np.asarray(signs).astype(np.int64, copy=False)
        if not np.isin(s, (-1, 0, 1)).all():
            raise ValueError(f"sign {int(s[~np.isin(s, (-1, 0, 1))][0])} is not -1, 0 or +1")
        self._refuse(c, ~self.allows(c) & (s != 0))
        return c.astype(self.code_dtype), s.astype(np.int8)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            exponent_bits=self.exponent_bits,
            encoding="value = sign * 2**exponent; codes hold the exponent, signs -1/0/+1",
        )
        return d

    def __str__(self) -> str:
        return f"po2<{self.bits},[{self.exponent_min},{self.exponent_max}]>"


@dataclass(frozen=True)
class Binary(NumberFormat):
    """Codes -1/+1 (or 0/1 with ``use_01``) times alpha, stored in 1 bit: +1 -> 1, -1 -> 0 (0/1: itself).

    >>> Binary().to_storage(np.array([-1, 1, 1])).tolist(), Binary().storage_rule()
    ([0, 1, 1], '1 bit: +1 -> 1, -1 -> 0')
    """

    kind: ClassVar[str] = "binary"
    bits: int = 1
    use_01: bool = False

    @property
    def code_min(self) -> int:
        return 0 if self.use_01 else -1

    @property
    def code_max(self) -> int:
        return 1

    @property
    def levels(self) -> int:
        return 2

    @property
    def storage_bits(self) -> int:
        return 1

    @property
    def _codes(self) -> tuple[int, int]:
        return (0, 1) if self.use_01 else (-1, 1)

    def allows(self, codes: np.ndarray) -> np.ndarray:
        return np.isin(codes, self._codes)

    def storage_rule(self) -> str:
        return "1 bit: code 0/1 itself" if self.use_01 else "1 bit: +1 -> 1, -1 -> 0"

    def to_storage(self, codes: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
        c = np.asarray(codes).reshape(-1).astype(np.int64)
        if c.size and not self.allows(c).all():
            allowed = "0/1" if self.use_01 else "-1/+1"
            raise ValueError(f"binary codes must be {allowed}, found {np.unique(c)[:5].tolist()}")
        return (c > 0).astype(np.uint64)

    def from_storage(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.check(words.astype(np.int64) if self.use_01 else np.where(words == 1, 1, -1))

    def __str__(self) -> str:
        return "binary01" if self.use_01 else "binary"


@dataclass(frozen=True)
class Ternary(NumberFormat):
    """Codes -1/0/+1 times alpha (stored as 2-bit two's complement: -1 -> ``0b11``)."""

    kind: ClassVar[str] = "ternary"
    bits: int = 2

    @property
    def code_min(self) -> int:
        return -1

    @property
    def code_max(self) -> int:
        return 1

    def __str__(self) -> str:
        return "ternary"


@dataclass(frozen=True)
class LookupTable(NumberFormat):
    """Codes index a table of values: for non-uniform quantizers (u-law).

    ``table`` holds every value the format can produce, ascending.

    >>> f = LookupTable(bits=2, table=(-1.0, 0.0, 0.5))
    >>> f.value_rule(), f.decode(np.array([0, 2]), 2.0).tolist()
    ('value = table[code] * scale', [-2.0, 1.0])
    """

    kind: ClassVar[str] = "lut"
    table: tuple[float, ...] = field(default=(), repr=False)

    @property
    def code_min(self) -> int:
        return 0

    @property
    def code_max(self) -> int:
        return max(len(self.table) - 1, 0)

    def lookup_table(self) -> tuple[float, ...] | None:
        return self.table

    def decode(self, codes: np.ndarray, scale: np.ndarray | float, signs: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(self.table, np.float32)[np.asarray(codes).astype(np.int64)] * np.asarray(scale, np.float32)

    def value_rule(self, scale: str = "scale", table: str = "table") -> str:
        return f"value = {table}[code] * {scale}"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["table"] = [float(v) for v in self.table]
        return d

    def __str__(self) -> str:
        return f"lut{self.bits}[{len(self.table)}]"


@dataclass(frozen=True)
class Float(NumberFormat):
    """Unquantized IEEE float: no codes; what the files hold are the float32 values themselves.

    >>> FLOAT32.c_type, FLOAT32.to_storage(np.array([1.0, -2.0])).tolist()
    ('float', [1065353216, 3221225472])
    """

    kind: ClassVar[str] = "float"
    bits: int = 32

    @property
    def quantized(self) -> bool:
        return False

    @property
    def code_min(self) -> int:
        return 0

    @property
    def code_max(self) -> int:
        return 0

    @property
    def signed(self) -> bool:
        return True

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def c_type(self) -> str:
        return "float"

    def value_rule(self, scale: str = "scale", table: str = "table") -> str:
        return "value = float32(word)"

    def storage_rule(self) -> str:
        return "IEEE-754 float32 bits of the value"

    def to_storage(self, codes: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
        return np.ascontiguousarray(codes, np.float32).reshape(-1).view(np.uint32).astype(np.uint64)

    def from_storage(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return words.astype(np.uint32).view(np.float32), None

    def check(self, codes: np.ndarray, signs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return np.asarray(codes).astype(np.float32, copy=False), None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": self.bits, "signed": True}

    def __str__(self) -> str:
        return f"float{self.bits}"


FLOAT32 = Float()
