"""How the input data is put on a grid: an ``ap_fixed`` type, a QKeras quantizer, or the model's first quantizer.

``ap_fixed<W,I>`` / ``ap_ufixed<W,I>`` take Vivado HLS's optional
quantization and overflow modes (``ap_fixed<16,6,AP_RND_CONV,AP_SAT>``); the
defaults are the type's own, ``AP_TRN`` (floor) and ``AP_WRAP`` (keep the low
bits), as an HLS testbench casting floats to that type gets them. A quantizer
string (``quantized_bits(8,0,1)``) or object rounds as QKeras does, through
the quantizer registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedError, UsageError
from .quantize import _OVERFLOW, _ROUNDING, ap_quantize, quantize
from .signal import Signal

_AP = re.compile(
    r"^\s*(ap_fixed|ap_ufixed)\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?(?:,\s*(\d+)\s*)?>\s*$"
)

FORMS = (
    "'ap_fixed<W,I>', 'ap_ufixed<W,I>' (optionally ',AP_RND_CONV,AP_SAT' modes), "
    "or a QKeras quantizer such as 'quantized_bits(8,0,1)'"
)


@dataclass(frozen=True)
class InputFormat:
    """A parsed input format: ``text`` as given, and either ap_fixed parameters or a quantizer."""

    text: str
    bits: int = 0
    integer: int = 0
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"
    quantizer: Any = None

    @classmethod
    def parse(cls, spec: Any) -> InputFormat | None:
        """``None``, an ``ap_fixed``/``ap_ufixed`` string, a quantizer string or a QKeras quantizer object."""
        if spec is None or isinstance(spec, InputFormat):
            return spec
        if isinstance(spec, str):
            match = _AP.match(spec)
            if match:
                return cls._ap(spec, match)
            if spec.strip().startswith(("ap_", "ac_")):
                raise UsageError(f"input format {spec!r} is not understood; give {FORMS}")
            return cls.from_quantizer(_quantizer(spec), f"input format {spec!r}")
        from ..quantizers import describe, is_quantizer

        if is_quantizer(spec):
            return cls.from_quantizer(spec, f"input format {describe(spec)}")
        raise UsageError(f"input format {spec!r} ({type(spec).__name__}) is not understood; give {FORMS}")

    @classmethod
    def _ap(cls, spec: str, match: re.Match[str]) -> InputFormat:
        kind, w, i, rounding, overflow, saturation = match.groups()
        bits, integer, signed = int(w), int(i), kind == "ap_fixed"
        rounding, overflow = rounding or "AP_TRN", overflow or "AP_WRAP"
        problems = []
        if not 1 <= bits <= 63:
            problems.append(f"width {bits} (1 to 63 bits)")
        if rounding not in _ROUNDING:
            problems.append(f"quantization mode {rounding} (one of {', '.join(_ROUNDING)})")
        if overflow not in _OVERFLOW:
            problems.append(f"overflow mode {overflow} (one of {', '.join(_OVERFLOW)})")
        if saturation not in (None, "0"):
            problems.append(f"saturation bits {saturation} (only 0)")
        if problems:
            raise UsageError(f"input format {spec!r}: unsupported {'; '.join(problems)}")
        return cls(spec.strip(), bits, integer, signed, rounding, overflow)

    @classmethod
    def from_quantizer(cls, q: Any, where: str) -> InputFormat:
        from ..quantizers import describe

        quantize(q, Signal(np.zeros((1, 1), np.int64), np.ones(())), where)  # refuse one without an integer form now
        return cls(describe(q), quantizer=q)

    def apply(self, x: np.ndarray) -> Signal:
        """The data ``x`` (float32 as the model receives it) as codes on this grid."""
        if self.quantizer is not None:
            return quantize(self.quantizer, Signal(None, np.ones(()), np.asarray(x, np.float64), None, True), "input")
        return ap_quantize(x, self.bits, self.integer, self.signed, self.rounding, self.overflow)


def _quantizer(spec: str) -> Any:
    from .._keras import qkeras, quiet_keras

    q = None
    try:
        with quiet_keras():
            q = qkeras().quantizers.get_quantizer(spec)
    except Exception:
        q = None
    from ..quantizers import QUANTIZERS, is_quantizer

    if q is None or not is_quantizer(q):
        raise UsageError(f"input format {spec!r} is not understood; give {FORMS}")
    if type(q).__name__ not in QUANTIZERS:
        raise UnsupportedError(f"input format {spec!r}: quantizer {type(q).__name__} is not supported")
    return q
