"""How wide each accumulator must be: the exact worst case from the real integer weights, not from bit counts.

A layer accumulates ``sum(w_int * x_int) + bias`` at the step ``w_step *
x_step``, where ``w_int`` are the integer weight multipliers of one output
channel (:func:`integer_kernel`) and ``x_int`` the input's integer range
(:func:`input_range`). Its extremes are found term by term: each weight
meets the input code that makes its product largest (``x_max`` where
``w > 0``, else ``x_min``), or smallest. That is exact, and reached by one
input, because every input element is free: QKeras's qtools and hls4ml's
default instead size the accumulator as ``input_bits + weight_bits +
ceil(log2(fan_in))``, which ignores the weights actually trained.

Zero padding contributes 0, which is inside every input range here, so a
position that sees only part of the kernel (``same`` padding at the edges,
a transposed convolution's phases) cannot exceed the full field; every
distinct set of kernel taps an output position sees is still summed, so
inputs smaller than the kernel are exact too. The bias is added at the
accumulator's step; a bias that is not an integer there is said so (the
bound is then rounded outward). The width is the smallest two's complement
holding ``[acc_min, acc_max]``; the ``ap_fixed<W,I>`` type exists when the
step is a power of two ``2**e`` (``I = W + e``).

A separable convolution has two accumulators: the depthwise stage (no
quantizer after it in QKeras, so its output enters the pointwise stage as
is) and the pointwise stage, bounded from the depthwise ranges taken
independently per channel (exact when ``depth_multiplier`` is 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ExactnessError, UnsupportedError, UsageError
from ..kinds import Kind
from ..numformat import NumberFormat, scale_exponent
from ..tensor import LayerRecord, QuantizedTensor
from .integers import input_range, integer_kernel
from .receptive import SAFE, Stage, extremes, in_channels, stages

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AccumulatorBound",
    "input_range",  # re-exported: the integer views the bounds rest on
    "integer_kernel",
    "observe",
    "twos_complement_bits",
    "widths_table",
    "worst_case",
]

SUPPORTED = (
    Kind.DENSE,
    Kind.CONV1D,
    Kind.CONV2D,
    Kind.DEPTHWISE_CONV2D,
    Kind.SEPARABLE_CONV1D,
    Kind.SEPARABLE_CONV2D,
    Kind.CONV2D_TRANSPOSE,
)


@dataclass(frozen=True)
class AccumulatorBound:
    """The exact range of one accumulator: one output channel, or every channel of a layer stage at one step.

    ``acc_min``/``acc_max`` are integer codes at ``step`` (the value of one
    accumulator LSB); a whole-layer row whose channels have steps that are
    not powers of two apart has ``step`` None and holds each channel's codes
    at its own step (``channel_steps``). ``tensor`` names the kernel the
    accumulator multiplies (``depthwise_kernel``, ``pointwise_kernel`` for
    the two stages of a separable convolution).
    """

    layer: str
    tensor: str
    channel: int | None
    acc_min: int
    acc_max: int
    step: float | None
    channel_steps: tuple[float, ...]
    fan_in: int
    input_bits: int
    weight_bits: int
    has_bias: bool
    bias_exact: bool = True
    notes: tuple[str, ...] = ()
    observed_min: int | None = None
    observed_max: int | None = None

    @property
    def bits(self) -> int:
        """The smallest two's complement width holding ``[acc_min, acc_max]``."""
        return twos_complement_bits(self.acc_min, self.acc_max)

    @property
    def qtools_bits(self) -> int:
        """qtools' / hls4ml's width: ``input_bits + weight_bits + ceil(log2(fan_in))``, +1 with a bias."""
        return self.input_bits + self.weight_bits + math.ceil(math.log2(max(self.fan_in, 1))) + int(self.has_bias)

    @property
    def ap_type(self) -> str | None:
        """``ap_fixed<bits, bits + e>`` for a step ``2**e``; None otherwise (see :attr:`ap_problem`)."""
        e = None if self.step is None else scale_exponent(self.step)
        return None if e is None else f"ap_fixed<{self.bits},{self.bits + e}>"

    @property
    def ap_problem(self) -> str | None:
        """Why there is no ``ap_fixed`` type, or None when there is one."""
        if self.step is None:
            return (
                "the channels' steps are not powers of two apart: no one ap_fixed holds them all; accumulate "
                f"integer codes in {self.bits} bits and apply each channel's step afterwards"
            )
        if scale_exponent(self.step) is None:
            return (
                f"the step {self.step!r} is not a power of two, so no ap_fixed holds these values exactly; "
                f"accumulate integer codes in {self.bits} bits and apply the step afterwards"
            )
        return None


def twos_complement_bits(lo: int, hi: int) -> int:
    """The smallest ``W`` with ``-2**(W-1) <= lo`` and ``hi <= 2**(W-1) - 1`` (at least 1).

    >>> twos_complement_bits(-128, 127), twos_complement_bits(0, 128), twos_complement_bits(0, 0)
    (8, 9, 1)
    """
    lo, hi = int(lo), int(hi)
    return max(1, hi.bit_length() + 1 if hi > 0 else 1, (-lo - 1).bit_length() + 1 if lo < 0 else 1)


def worst_case(
    record: LayerRecord, input_format: NumberFormat, input_scale: float | np.ndarray, *, per_channel: bool = False
) -> list[AccumulatorBound]:
    """The exact accumulator range of ``record``'s layer fed by ``input_format`` codes at ``input_scale``.

    One bound per accumulation stage (two for a separable convolution), or
    one per output channel of each stage with ``per_channel``. Dense,
    Conv1D/2D, DepthwiseConv2D, SeparableConv1D/2D and Conv2DTranspose;
    any other kind is an UnsupportedError naming the layer.
    """
    where = f"layer '{record.name}' ({record.class_name})"
    if record.kind not in SUPPORTED:
        kinds = ", ".join(k.value for k in SUPPORTED)
        raise UnsupportedError(f"{where}: no accumulator bound for kind {record.kind}; supported: {kinds}")
    lo, hi, x_step = input_range(input_format, input_scale, f"{where} input")
    if lo > 0 or hi < 0:  # zero padding adds 0: it must be a possible term for the bound to hold at the edges
        raise UnsupportedError(f"{where}: the input range [{lo}, {hi}] excludes 0, which zero padding feeds")
    lo_c = np.full(in_channels(record), lo, np.int64)
    hi_c = np.full_like(lo_c, hi)
    in_bits, out = input_format.bits, []
    steps = stages(record)
    for i, stage in enumerate(steps):
        last = i == len(steps) - 1
        amin, amax = extremes(stage, lo_c, hi_c)
        bias = record.tensors.get("bias") if last else None
        rows = _rows(record, stage, amin, amax, x_step, in_bits, bias)
        out.extend(rows if per_channel else [_layer_row(rows)])
        if not last:  # the next stage sums this one's accumulators, on one grid
            lo_c, hi_c, x_step = _aligned(where, stage, amin, amax, x_step)
            in_bits = _layer_row(rows).bits
    return out


def _rows(
    record: LayerRecord,
    stage: Stage,
    amin: np.ndarray,
    amax: np.ndarray,
    x_step: float,
    in_bits: int,
    bias: QuantizedTensor | None,
) -> list[AccumulatorBound]:
    """One bound per output channel, the bias added at the channel's step (exactly, as a fraction)."""
    rows = []
    for o in range(amin.shape[0]):
        step = Fraction(float(stage.w_step[o])) * Fraction(x_step)
        lo, hi, exact, notes = int(amin[o]), int(amax[o]), True, stage.notes
        if bias is not None:
            b = Fraction(float(np.asarray(bias.values).reshape(-1)[o])) / step
            exact = b.denominator == 1
            lo, hi = lo + math.floor(b), hi + math.ceil(b)
            if not exact:
                notes = (*notes, f"the bias is {float(b)!r} steps, not an integer: bounds rounded outward")
        rows.append(
            AccumulatorBound(
                record.name,
                stage.tensor,
                o,
                lo,
                hi,
                float(step),
                (float(step),),
                stage.fan_in,
                in_bits,
                stage.weight_bits,
                bias is not None,
                exact,
                notes,
            )
        )
    return rows


def _layer_row(rows: list[AccumulatorBound]) -> AccumulatorBound:
    """Every channel in one bound: at their common step, or the finest when steps are powers of two apart."""
    steps = np.array([r.step for r in rows], np.float64)
    lows, highs = [r.acc_min for r in rows], [r.acc_max for r in rows]
    mant, expo = np.frexp(steps)
    notes = tuple(dict.fromkeys(n for r in rows for n in r.notes))
    step: float | None = float(steps[0])
    if (mant == mant[0]).all() and not (expo == expo[0]).all():
        e = int(expo.min())
        lows = [lo << int(k - e) for lo, k in zip(lows, expo)]
        highs = [hi << int(k - e) for hi, k in zip(highs, expo)]
        step = math.ldexp(float(mant[0]), e)
        notes = (*notes, f"channels at steps a power of two apart, put on the finest, {step!r}")
    elif not (steps == steps[0]).all():
        step = None
    first = rows[0]
    return replace(
        first,
        channel=None,
        acc_min=min(lows),
        acc_max=max(highs),
        step=step,
        channel_steps=tuple(float(s) for s in steps),
        bias_exact=all(r.bias_exact for r in rows),
        notes=notes,
    )


def _aligned(
    where: str, stage: Stage, amin: np.ndarray, amax: np.ndarray, x_step: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """A stage's per-channel ranges as the next stage's input: integer ranges on one common step."""
    steps = stage.w_step * x_step
    mant, expo = np.frexp(steps)
    if not (mant == mant[0]).all():
        raise UnsupportedError(f"{where}: the {stage.tensor} channels' steps are not powers of two apart")
    shift = (expo - expo.min()).astype(np.int64)
    lo = np.array([int(a) << int(s) for a, s in zip(amin, shift)], dtype=object)
    hi = np.array([int(a) << int(s) for a, s in zip(amax, shift)], dtype=object)
    if max(abs(int(v)) for v in (*lo, *hi)) < SAFE:
        lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    return lo, hi, math.ldexp(float(mant[0]), int(expo.min()))


def observe(bounds: Sequence[AccumulatorBound], accumulators: dict[str, np.ndarray]) -> list[AccumulatorBound]:
    """``bounds`` with the observed range filled in from integer accumulators, keyed ``<layer>/<tensor>``.

    Each array is ``(N, ..., O)``: every channel's codes at its own step
    (``channel_steps``), as a simulation computes them. ExactnessError when
    an observed value lies outside the worst case (the two disagree).
    """
    out = []
    for b in bounds:
        acc = accumulators.get(f"{b.layer}/{b.tensor}")
        if acc is None:
            out.append(b)
            continue
        codes = np.asarray(acc)
        if b.channel is not None:
            codes = codes[..., b.channel]
        elif b.step is not None:
            shift = np.array([round(math.log2(s / b.step)) for s in b.channel_steps], np.int64)
            codes = codes.astype(object) * (2 ** shift.astype(object)) if shift.any() else codes
        lo, hi = int(np.min(codes)), int(np.max(codes))
        if lo < b.acc_min or hi > b.acc_max:
            raise ExactnessError(
                f"layer '{b.layer}' {b.tensor}: accumulators observed in [{lo}, {hi}], outside the worst case "
                f"[{b.acc_min}, {b.acc_max}]; the simulation and the bound disagree"
            )
        out.append(replace(b, observed_min=lo, observed_max=hi))
    return out


def widths_table(bounds: Sequence[AccumulatorBound]) -> pd.DataFrame:
    """One row per bound: layer, tensor, (channel), acc_min, acc_max, bits, ap_type, qtools_bits, fan_in, step, note.

    ``channel`` appears when any bound is per channel, ``observed_min`` and
    ``observed_max`` when any was observed. ``note`` says why there is no
    ap_type, and anything the bound assumed.
    """
    import pandas as pd

    if not all(isinstance(b, AccumulatorBound) for b in bounds):
        raise UsageError("widths_table takes the AccumulatorBound list worst_case returns")
    per_channel = any(b.channel is not None for b in bounds)
    observed = any(b.observed_min is not None for b in bounds)
    rows = []
    for b in bounds:
        row: dict[str, Any] = {"layer": b.layer, "tensor": b.tensor}
        if per_channel:
            row["channel"] = b.channel
        row.update(acc_min=b.acc_min, acc_max=b.acc_max, bits=b.bits, ap_type=b.ap_type, qtools_bits=b.qtools_bits)
        row.update(fan_in=b.fan_in, step=b.step)
        if observed:
            row.update(observed_min=b.observed_min, observed_max=b.observed_max)
        row["note"] = "; ".join(filter(None, (b.ap_problem, *b.notes)))
        rows.append(row)
    columns = [
        "layer",
        "tensor",
        *(["channel"] if per_channel else []),
        "acc_min",
        "acc_max",
        "bits",
        "ap_type",
        "qtools_bits",
        "fan_in",
        "step",
        *(["observed_min", "observed_max"] if observed else []),
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)
