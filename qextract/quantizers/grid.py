"""Codes on a uniform grid: the integers whose products with a scale are a quantizer's values.

Shared by every entry whose values are ``code * scale`` (fixed point, relu,
tanh/sigmoid, binary, ternary).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..numformat import NumberFormat
from ..tensor import along
from .entry import Encoding


def squeeze_scale(scale: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """QKeras keeps per-channel scales with keepdims; return () or (C,) and the axis."""
    if hasattr(scale, "numpy"):
        scale = scale.numpy()
    s = np.asarray(scale, dtype=np.float32)
    if s.size == 1:
        return s.reshape(()), None
    if s.ndim == 1 and len(shape) >= 1 and s.shape[0] == shape[-1]:
        return s, len(shape) - 1
    axes = [i for i, n in enumerate(s.shape) if n != 1]
    if len(axes) == 1 and s.ndim == len(shape) and s.shape[axes[0]] == shape[axes[0]]:
        return s.reshape(-1), axes[0]
    raise UnsupportedError(f"a scale of shape {s.shape} for a tensor of shape {shape} is not per-channel")


def codes_on_grid(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Integer codes of ``values`` on a broadcast grid ``scale``, as integral floats (0 where the scale is 0).

    Computed in float64, where no rounding hides a code of any width QKeras
    offers (a float32 quotient cannot even hold every 25-bit integer). With a
    power-of-two scale ``values / scale`` is exact: the code is the one integer
    whose product with the scale *is* the value. With any other scale the
    layer's value is ``float32(code * scale)`` and the quotient lies within
    ``|code| * 2**-24`` of the code; where its nearest integer misses, the
    neighbour whose float32 product is the value is taken. The caller checks
    the range exactly and refuses a code another code would give too.
    """
    v = np.asarray(values, np.float32)
    s = np.asarray(scale, np.float32)
    if s.size and np.all(np.frexp(s)[0] == 0.5):
        # Every scale a nonzero power of two (the common case): the float32 quotient is exact already,
        # so the code is its rint, with no float64 copy and no product check (the caller checks anyway).
        with np.errstate(over="ignore", invalid="ignore"):
            return np.rint(v / s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        codes = np.where(s == 0, 0.0, np.rint(v.astype(np.float64) / s.astype(np.float64)))
        miss = _product(codes, s) != v
        for step in (-1.0, 1.0):
            if not miss.any():
                break
            hit = miss & (_product(codes + step, s) == v)
            codes = np.where(hit, codes + step, codes)
            miss &= ~hit
    return codes


def _product(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``float32(code) * scale`` in float32: what a layer computes with, and how every reader decodes."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(codes).astype(np.float32) * np.asarray(scale, np.float32)


def grid_encoding(fmt: NumberFormat, values: np.ndarray, scale: Any, axis: int | None = None) -> Encoding:
    """The codes of ``values`` on the grid ``scale`` (QKeras-shaped, or (C,) along ``axis``)."""
    s, axis = squeeze_scale(scale, values.shape) if axis is None else (np.asarray(scale, np.float32), axis)
    codes = codes_on_grid(values, along(s, axis, values.ndim))
    return Encoding(fmt, codes, s, axis)


def output_scale(scale: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """A configured output scale (alpha times step) as () or (C,) along the last axis of ``shape``."""
    s = np.asarray(scale, np.float32)
    if s.size == 1:
        return s.reshape(()), None
    return s.reshape(-1), len(shape) - 1
