"""Number formats: what one integer code means, as small frozen value objects with their behaviour.

A format describes the *codes* of a tensor: their bit width, range, how a
code becomes a real number (:meth:`~NumberFormat.decode`, in words
:meth:`~NumberFormat.value_rule`), how it is stored in a memory word
(:meth:`~NumberFormat.to_storage` and its inverse) and its C type. Writers,
readers, the manifest and the tensors ask the format instead of testing its
kind, so a new format is one class here. Scales (per tensor or per channel)
are data and live on the tensor, not here, so one format object serves many
tensors.

One code is stored as one word of ``storage_bits`` bits (a field of a memory
word; see :mod:`qextract.writers._words` for the packing):

- fixed point, ternary, look-up: two's complement at ``bits`` (ternary -1 ->
  ``0b11``; unsigned formats are plain binary);
- binary {-1,+1}: 1 bit, +1 -> 1 and -1 -> 0 (``use_01``: the 0/1 code itself);
- power of two: ``e + 2`` bits with ``e = exponent_bits``:
  ``(zero << (e+1)) | (negative << e) | (exponent mod 2**e)``;
- float (unquantized): the IEEE-754 float32 bits of the value, 32 bits.

>>> f = FixedPoint(bits=8, integer=3, is_signed=True)
>>> f.code_min, f.code_max, f.fractional_bits, f.ap_type(), f.c_type
(-128, 127, 4, 'ap_fixed<8,4>', 'int8_t')
>>> f.value_rule(), f.storage_rule()
('value = code * scale', "8-bit two's complement")
>>> f.to_storage(np.array([-1, 5])).tolist(), f.from_storage(np.array([255, 5], np.uint64))[0].tolist()
([255, 5], [-1, 5])
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (the examples above use it)

from .base import (
    CODE_RANGE,
    KINDS,
    MAX_STORAGE_BITS,
    NumberFormat,
    c_int_type,
    from_description,
    scale_exponent,
    smallest_int_dtype,
)
from .formats import FLOAT32, Binary, FixedPoint, Float, LookupTable, PowerOfTwo, Ternary

__all__ = [
    "CODE_RANGE",
    "FLOAT32",
    "KINDS",
    "MAX_STORAGE_BITS",
    "Binary",
    "FixedPoint",
    "Float",
    "LookupTable",
    "NumberFormat",
    "PowerOfTwo",
    "Ternary",
    "c_int_type",
    "from_description",
    "scale_exponent",
    "smallest_int_dtype",
]  # fmt: skip
