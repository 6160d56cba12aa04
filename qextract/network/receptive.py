"""Which kernel taps each output position sums, and the extreme sums over them.

A layer kind becomes one or two :class:`Stage` (integer weights in the
order ``(taps..., I, O)``, or ``(taps..., C, M)`` for a depthwise stage) with,
per spatial axis, each distinct set of taps an output position sees: all of
them inside the input, fewer at a zero-padded edge, one phase of the stride
for a transposed convolution. :func:`extremes` sums, per output channel and
per tap set, each weight's largest (smallest) product with the input range,
and keeps the largest (smallest) over the tap sets.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..kinds import Kind
from ..padding import conv_pads, transpose_crop
from ..tensor import LayerRecord
from .integers import integer_kernel

SAFE = 2**62
"""Below this, int64 sums of products cannot overflow; above it the sums are Python integers."""


@dataclass(frozen=True, eq=False)
class Stage:
    """One accumulation: integer weights ``(taps..., I, O)`` (depthwise: ``(taps..., C, M)``), and the tap sets
    output positions see along each spatial axis."""

    tensor: str
    w: np.ndarray
    w_step: np.ndarray
    depthwise: bool
    masks: list[list[np.ndarray]]
    weight_bits: int
    notes: tuple[str, ...] = ()

    @property
    def fan_in(self) -> int:
        """Terms summed into one output at most: taps of the largest tap set times summed channels."""
        taps = math.prod(max(int(m.sum()) for m in axis) for axis in self.masks)
        return taps * (1 if self.depthwise else int(self.w.shape[-2]))


def in_channels(record: LayerRecord) -> int:
    t = record.tensors.get("depthwise_kernel") or record.tensors["kernel"]
    return int(t.shape[-1] if record.kind == Kind.CONV2D_TRANSPOSE else t.shape[-2])


def stages(record: LayerRecord) -> list[Stage]:
    kind, cfg = record.kind, record.config
    if kind == Kind.DENSE:
        t = record["kernel"]
        w, step = integer_kernel(t)
        return [Stage("kernel", w, step, False, [], t.format.bits)]
    if kind == Kind.CONV2D_TRANSPOSE:
        if any(d != 1 for d in cfg.get("dilation_rate", [1])) or cfg.get("output_padding") is not None:
            raise UnsupportedError(f"layer '{record.name}': a transposed convolution with dilation or output_padding")
        t = record["kernel"]
        w, step = integer_kernel(t, (-2,))
        masks, notes = _transpose_masks(cfg, w.shape[:-2])
        return [Stage("kernel", w.swapaxes(-1, -2), step, False, masks, t.format.bits, notes)]
    if kind in (Kind.CONV1D, Kind.CONV2D):
        t = record["kernel"]
        w, step = integer_kernel(t)
        masks, notes = _conv_masks(cfg, w.shape[:-2])
        return [Stage("kernel", w, step, False, masks, t.format.bits, notes)]
    t = record["depthwise_kernel"]
    w, step = integer_kernel(t, (-2, -1))
    masks, notes = _conv_masks(cfg, w.shape[:-2])
    stages = [Stage("depthwise_kernel", w, step, True, masks, t.format.bits, notes)]
    if kind != Kind.DEPTHWISE_CONV2D:
        p = record["pointwise_kernel"]
        pw, pstep = integer_kernel(p)
        note = (
            ()
            if w.shape[-1] == 1
            else (
                "bounded from the depthwise ranges taken independently per channel (exact when depth_multiplier is 1)",
            )
        )
        stages.append(Stage("pointwise_kernel", pw.reshape(pw.shape[-2:]), pstep, False, [], p.format.bits, note))
    return stages


def _geometry(cfg: Any, taps: tuple[int, ...], name: str, default: int) -> list[int]:
    value = cfg.get(name)
    return [default] * len(taps) if value is None else [int(v) for v in value]


def _input_sizes(cfg: Any, taps: tuple[int, ...]) -> list[int | None]:
    shape = cfg.get("input_shape")
    if not shape or len(shape) != len(taps) + 2:
        return [None] * len(taps)
    return [None if n is None else int(n) for n in shape[1:-1]]


def _conv_masks(cfg: Any, taps: tuple[int, ...]) -> tuple[list[list[np.ndarray]], tuple[str, ...]]:
    """Per spatial axis, each distinct set of taps an output position sees (zero padding drops the others)."""
    strides, dilation = _geometry(cfg, taps, "strides", 1), _geometry(cfg, taps, "dilation_rate", 1)
    sizes = _input_sizes(cfg, taps)
    if any(n is None for n in sizes):
        return [[np.ones(k, bool)] for k in taps], ("input size unknown: the full receptive field is assumed",)
    known = [int(n) for n in sizes if n is not None]
    pads = conv_pads(str(cfg.get("padding", "valid")), tuple(known), taps, tuple(strides), tuple(dilation))
    masks = []
    for n, k, s, d, (before, after) in zip(known, taps, strides, dilation, pads):
        out = (n + before + after - ((k - 1) * d + 1)) // s + 1
        seen = {tuple(0 <= p * s - before + t * d < n for t in range(k)) for p in range(max(out, 0))}
        masks.append([np.array(m, bool) for m in sorted(seen)])
    return masks, ()


def _transpose_masks(cfg: Any, taps: tuple[int, ...]) -> tuple[list[list[np.ndarray]], tuple[str, ...]]:
    """Per spatial axis, the taps landing on each output position: ``out[i*s + t] += x[i] * w[t]``, then cropped."""
    strides, sizes = _geometry(cfg, taps, "strides", 1), _input_sizes(cfg, taps)
    padding = str(cfg.get("padding", "valid"))
    masks: list[list[np.ndarray]] = []
    notes: tuple[str, ...] = ()
    for n, k, s in zip(sizes, taps, strides):
        if n is None:
            masks.append([np.arange(k) % s == r for r in range(s)])
            notes = ("input size unknown: every phase of the stride is assumed to see all its taps",)
            continue
        _, crop, out = transpose_crop(n, k, s, padding)
        seen = {tuple((q + crop - t) % s == 0 and 0 <= (q + crop - t) // s < n for t in range(k)) for q in range(out)}
        masks.append([np.array(m, bool) for m in sorted(seen)])
    return masks, notes


def extremes(stage: Stage, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the smallest and largest sum any output position can reach (int64 or Python ints)."""
    w = stage.w
    top = int(np.abs(w).max(initial=0)) * max(int(np.abs(lo).max(initial=0)), int(np.abs(hi).max(initial=0)))
    if top * max(1, int(np.prod(w.shape[:-1]))) >= SAFE:
        w, lo, hi = w.astype(object), lo.astype(object), hi.astype(object)
    lo_b, hi_b = lo[:, None], hi[:, None]
    up, down = np.where(w > 0, w * hi_b, w * lo_b), np.where(w > 0, w * lo_b, w * hi_b)
    spatial = w.shape[:-2]
    if stage.depthwise:
        up, down = up.reshape(*spatial, -1), down.reshape(*spatial, -1)
    else:
        up, down = up.sum(axis=-2), down.sum(axis=-2)
    highs, lows = [], []
    for combo in itertools.product(*stage.masks):
        index = np.ix_(*[np.flatnonzero(m) for m in combo])
        highs.append(up[index].reshape(-1, up.shape[-1]).sum(axis=0))
        lows.append(down[index].reshape(-1, down.shape[-1]).sum(axis=0))
    return np.stack(lows).min(axis=0), np.stack(highs).max(axis=0)
