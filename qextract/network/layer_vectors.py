"""One layer's golden vectors: its input and output for N samples, as codes on a grid, checked on construction.

:class:`LayerVectors` is what :func:`~qextract.network.vectors.write_vectors`
writes and :func:`~qextract.network.vectors.read_vectors` gives back; every
array is checked against its number format when one is made, so that
nothing unchecked ever reaches a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from ..numformat import NumberFormat
from ..writers import Codes
from .vector_manifest import SIDES

__all__ = ["LayerVectors"]


@dataclass(frozen=True, eq=False)
class LayerVectors:
    """One layer's input and output for N samples, as integer codes on a grid (or float values off it).

    ``*_codes``: int64, shape ``(N, ...)`` channels last; ``*_scale``: one
    number, or one per channel (the last axis); ``value = decode(code) *
    scale`` as the format says. A side not on a grid has format
    :data:`~qextract.numformat.FLOAT32`, codes None and float ``*_values``
    (written as float32, flagged ``exact_integer: false``). Powers of two
    carry ``*_signs`` (-1/0/+1) beside their exponent codes. Everything is
    checked on construction (UsageError naming the layer and side).
    """

    name: str
    input_codes: np.ndarray | None
    input_format: NumberFormat
    input_scale: np.ndarray | float
    output_codes: np.ndarray | None
    output_format: NumberFormat
    output_scale: np.ndarray | float
    input_values: np.ndarray | None = None
    output_values: np.ndarray | None = None
    input_signs: np.ndarray | None = None
    output_signs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"a layer's vectors need its name, not {self.name!r}")
        for side in SIDES:
            for attr, value in zip(("codes", "scale", "values", "signs"), _checked(self, side)):
                object.__setattr__(self, f"{side}_{attr}", value)
        n_in, n_out = self.shape("input")[0], self.shape("output")[0]
        if n_in != n_out:
            raise UsageError(f"layer '{self.name}': {n_in} input samples but {n_out} output samples")

    @property
    def samples(self) -> int:
        return self.shape("input")[0]

    def shape(self, side: str) -> tuple[int, ...]:
        array = getattr(self, f"{side}_codes")
        return tuple((array if array is not None else getattr(self, f"{side}_values")).shape)

    def values(self, side: str) -> np.ndarray:
        """The real values of ``side``, float32, as the layer computes with them (the format's decode)."""
        fmt: NumberFormat = getattr(self, f"{side}_format")
        codes = getattr(self, f"{side}_codes")
        if codes is None:
            return np.asarray(getattr(self, f"{side}_values"), np.float32)
        return fmt.decode(codes, getattr(self, f"{side}_scale"), getattr(self, f"{side}_signs"))

    def stored(self, side: str, samples: int | None = None) -> Codes:
        """What the files hold for ``side`` (codes in the format's dtype, or float32 values), first ``samples``."""
        fmt: NumberFormat = getattr(self, f"{side}_format")
        cut = slice(None, samples)
        codes, signs = getattr(self, f"{side}_codes"), getattr(self, f"{side}_signs")
        if codes is None:
            return Codes(np.asarray(getattr(self, f"{side}_values"), np.float32)[cut])
        return Codes(codes[cut].astype(fmt.code_dtype), None if signs is None else signs[cut].astype(np.int8))

    def __repr__(self) -> str:
        sides = ", ".join(f"{s} {self.shape(s)} {getattr(self, f'{s}_format')}" for s in SIDES)
        return f"LayerVectors('{self.name}': {sides})"


def _checked(lv: LayerVectors, side: str) -> tuple[Any, ...]:
    """``side``'s (codes int64, scale float64, values float32, signs int8), checked against its format."""
    where = f"layer '{lv.name}' {side}"
    fmt = getattr(lv, f"{side}_format")
    codes, scale, values, signs = (getattr(lv, f"{side}_{a}") for a in ("codes", "scale", "values", "signs"))
    if not isinstance(fmt, NumberFormat):
        raise UsageError(f"{where}: format must be a NumberFormat, not {type(fmt).__name__}")
    if not fmt.quantized:
        if codes is not None or values is None:
            raise UsageError(f"{where}: format {fmt} is not on a grid; give its float values, not codes")
        v = np.asarray(values)
        if v.ndim < 1 or not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
            raise UsageError(
                f"{where}: values must be a finite float array of shape (N, ...), found {v.dtype}{list(v.shape)}"
            )
        return None, np.ones((), np.float64), v.astype(np.float32), None
    if codes is None or values is not None:
        raise UsageError(
            f"{where}: format {fmt} is on a grid; give its codes and no values (they follow from the codes)"
        )
    c = np.asarray(codes)
    if c.ndim < 1 or not (np.issubdtype(c.dtype, np.integer) or c.dtype == bool):
        raise UsageError(f"{where}: codes must be an integer array of shape (N, ...), found {c.dtype}{list(c.shape)}")
    if fmt.has_signs != (signs is not None):
        raise UsageError(f"{where}: format {fmt} {'needs' if fmt.has_signs else 'takes no'} signs")
    s = None if signs is None else np.asarray(signs)
    if s is not None and s.shape != c.shape:
        raise UsageError(f"{where}: signs {list(s.shape)} do not match codes {list(c.shape)}")
    try:
        fmt.check(c.astype(np.int64), s)
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    sc = np.asarray(scale, np.float64)
    if sc.ndim == 1 and sc.size == 1:
        sc = sc.reshape(())
    if not (sc.ndim == 0 or (sc.ndim == 1 and sc.size == c.shape[-1] and c.ndim > 1)):
        raise UsageError(f"{where}: scale {list(sc.shape)} is neither one number nor one per channel ({c.shape[-1]})")
    if not (np.isfinite(sc).all() and (sc > 0).all()):
        raise UsageError(f"{where}: scale must be positive and finite")
    return c.astype(np.int64), sc, None, None if s is None else s.astype(np.int8)
