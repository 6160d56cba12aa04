"""What a simulation returns: one :class:`LayerResult` per layer, and the accumulator ranges it observed.

Plain data (NumPy only), so that golden vectors, accumulator widths and
reports can read a simulation without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..numformat import NumberFormat

Scale = np.ndarray | float
"""A per-tensor scale (float) or a per-channel one ((C,), along the last axis)."""


@dataclass(frozen=True)
class AccumulatorRange:
    """The accumulator codes a layer produced on the data: per output channel, their scale, and what fed them.

    ``min`` and ``max`` are int64 ``(C,)`` arrays over every sample and
    position seen, after the bias (the value entering the activation is
    ``code * scale``). The accumulator of a contraction is
    ``sum(x_code * w_int) + b_int``: ``x_code`` are the input's codes at the
    one power-of-two scale ``input_scale`` (a per-channel input scale is folded
    into the codes first), ``w_int`` and ``b_int`` the integer weights of
    :func:`qextract.network.weights.integer_weights`. ``bias_shift`` is how many
    bits (per channel, at most) the accumulator was refined below the product
    scale to hold a bias finer than it (0 when the bias is on the product grid,
    the case hardware accumulators assume). ``samples`` counts the samples
    observed.
    """

    min: np.ndarray
    max: np.ndarray
    scale: Scale
    input_format: NumberFormat | None
    input_scale: float
    bias_shift: int = 0
    samples: int = 0

    @property
    def lo(self) -> int:
        """The lowest accumulator code seen in any channel."""
        return int(self.min.min()) if self.min.size else 0

    @property
    def hi(self) -> int:
        """The highest accumulator code seen in any channel."""
        return int(self.max.max()) if self.max.size else 0

    def merged(self, other: AccumulatorRange) -> AccumulatorRange:
        """The range over both batches (same layer, same scale)."""
        return replace(
            self,
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
            bias_shift=max(self.bias_shift, other.bias_shift),
            samples=self.samples + other.samples,
        )


@dataclass(frozen=True, eq=False)
class LayerResult:
    """One layer's output on the data, as the integer network computes it.

    ``values`` (float64) is the output; where ``codes`` (int64) is given,
    ``values == codes * scale`` exactly (computed on first access, so a coded
    layer holds one array until asked) and ``format`` is the codes' number
    format (None for an accumulator, whose width :mod:`.accumulators` derives).
    ``scale`` is a float or a ``(C,)`` array along the last axis.
    ``exact_integer`` is False where the layer computed in floating point
    (inputs on no grid, batch norm, softmax): ``codes`` may then still be set
    (a quantizer rounded the float result), but the result emulates QKeras's
    float32 arithmetic rather than integer arithmetic.
    ``inputs`` names the layers feeding it (the model input by its name).
    ``accumulator`` is the observed accumulator range of layers that
    accumulate products (None otherwise). ``notes`` say what was aligned or
    approximated. ``floats`` holds the values of a layer without codes.
    """

    name: str
    codes: np.ndarray | None
    scale: Scale
    format: NumberFormat | None
    exact_integer: bool
    inputs: tuple[str, ...] = ()
    accumulator: AccumulatorRange | None = None
    class_name: str = ""
    notes: tuple[str, ...] = field(default=(), repr=False)
    floats: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def values(self) -> np.ndarray:
        """The output, float64: ``codes * scale``, or the float values."""
        if self.codes is None:
            assert self.floats is not None
            return self.floats
        return self.codes * np.asarray(self.scale, np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.codes if self.codes is not None else self.floats).shape)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        what = str(self.format) if self.format is not None else ("accumulator" if self.codes is not None else "float")
        scale = f"{float(self.scale):g}" if np.ndim(self.scale) == 0 else f"per-channel[{np.shape(self.scale)[0]}]"
        return (
            f"LayerResult('{self.name}', shape={self.shape}, {what}, scale={scale}, exact_integer={self.exact_integer})"
        )


def concatenate(parts: Sequence[LayerResult]) -> LayerResult:
    """The results of consecutive batches of one layer as one result (samples along axis 0).

    Batches on different grids (a float fallback in one of them) give float values.
    """
    first = parts[0]
    if len(parts) == 1:
        return first
    acc = first.accumulator
    for p in parts[1:]:
        if acc is not None and p.accumulator is not None:
            acc = acc.merged(p.accumulator)
    coded = all(p.codes is not None for p in parts) and all(np.array_equal(p.scale, first.scale) for p in parts)
    return replace(
        first,
        codes=np.concatenate([p.codes for p in parts]) if coded else None,
        floats=None if coded else np.concatenate([p.values for p in parts]),
        format=first.format if coded else None,
        exact_integer=coded and all(p.exact_integer for p in parts),
        accumulator=acc,
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
    )
