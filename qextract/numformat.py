"""Number formats: what one integer code means, as small frozen value objects.

A format describes the *codes* of a tensor: their bit width, range and how a
code becomes a real number. Scales (per tensor or per channel) are data and
live on the tensor, not here, so one format object serves many tensors.

>>> f = FixedPoint(bits=8, integer=3, signed=True)
>>> f.code_min, f.code_max, f.fractional_bits, f.ap_type()
(-128, 127, 4, 'ap_fixed<8,4>')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class NumberFormat:
    """Common interface of every format: a kind, a width and a code range."""

    kind: ClassVar[str] = "abstract"
    bits: int

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
            return f"one stored code needs {self.storage_bits} bits, more than the {MAX_STORAGE_BITS} a memory word field holds"
        return None

    def ap_type(self, scale: np.ndarray | float = 1.0) -> str | None:
        """The Vivado/Vitis HLS type holding ``code * scale`` exactly, if one exists."""
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for the manifest and reports)."""
        d = {"kind": self.kind, **asdict(self)}
        d.update(code_min=self.code_min, code_max=self.code_max, signed=self.signed)
        return d

    def __str__(self) -> str:
        return f"{self.kind}{self.bits}"


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
    """

    kind: ClassVar[str] = "po2"
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
        """Exponent, a negative flag and a zero flag (see :mod:`qextract.writers._words`)."""
        return self.exponent_bits + 2

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
    """Codes -1/+1 (or 0/1 with ``use_01``) times alpha."""

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

    def __str__(self) -> str:
        return "binary01" if self.use_01 else "binary"


@dataclass(frozen=True)
class Ternary(NumberFormat):
    """Codes -1/0/+1 times alpha."""

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
    """

    kind: ClassVar[str] = "lut"
    table: tuple[float, ...] = field(default=(), repr=False)

    @property
    def code_min(self) -> int:
        return 0

    @property
    def code_max(self) -> int:
        return max(len(self.table) - 1, 0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["table"] = [float(v) for v in self.table]
        return d

    def __str__(self) -> str:
        return f"lut{self.bits}[{len(self.table)}]"


@dataclass(frozen=True)
class Float(NumberFormat):
    """Unquantized IEEE float: no codes."""

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

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": self.bits, "signed": True}

    def __str__(self) -> str:
        return f"float{self.bits}"


FLOAT32 = Float()
