"""Layers that move or combine values without arithmetic of their own: Flatten, Reshape, Dropout, Add, Concatenate.

Codes move with their per-channel scales (a Flatten of ``(H, W, C)`` repeats
the ``C`` scales ``H*W`` times along the flat axis). Add and Concatenate of
tensors on different grids bring them to one power-of-two grid first, in
integers, as a hardware adder aligns its operands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .signal import INT_LIMIT, Overflow, Signal, collapse, exponent_scale, is_po2, max_abs, uniform
from .step import U32, Output, Step, is_float_function


@dataclass
class Identity(Step):
    """Dropout and friends at inference; an ``activation`` (Activation, ReLU, QActivation) applied to the input."""

    def run(self, inputs: list[Signal]) -> Output:
        x = inputs[0]
        if x.codes is not None and not x.exact:  # passing codes on is exact, whatever computed them
            x = Signal(x.codes, x.scale, None, x.format, True, x.span)
        float_input = (x.codes is None and self.quantizer is None) or is_float_function(self.activation)
        return Output(self.activate(x), x, None, "float_input" if float_input else None)


@dataclass
class Reshape(Step):
    """Flatten (``target`` None) or Reshape to ``target`` (per sample)."""

    target: tuple[int, ...] | None = None

    def run(self, inputs: list[Signal]) -> Output:
        x = inputs[0]
        target = (-1,) if self.target is None else self.target
        n = x.shape[0]
        if x.codes is None:
            out = Signal.of_floats(x.values.reshape(n, *target))
            return Output(out, out, None, "float_input")
        scale = np.asarray(x.scale)
        codes = x.codes.reshape(n, *target)
        fmt, span = x.format, x.span
        if scale.ndim and self.target is None:
            scale = np.tile(scale, int(np.prod(x.shape[1:-1])))  # the channel axis ran fastest: C scales repeat
        elif scale.ndim and codes.shape[-1] != scale.shape[0]:
            c, e = uniform(x)  # the last axis changed size: one scale for all
            codes, scale, fmt, span = c.reshape(n, *target), exponent_scale(e), None, None
        out = Signal(codes, collapse(scale), None, fmt, True, span)
        return Output(out, out, None, None)


@dataclass
class Merge(Step):
    """``mode`` add or concatenate (along ``axis``)."""

    mode: str = "add"
    axis: int = -1

    def run(self, inputs: list[Signal]) -> Output:
        if all(s.codes is not None for s in inputs):
            try:
                return self._integer(inputs)
            except Overflow:
                pass
        values = [s.values for s in inputs]
        y = np.sum(values, axis=0) if self.mode == "add" else np.concatenate(values, axis=self.axis)
        pre = Signal.of_floats(y)
        return Output(self.activate(pre), pre, None, "float_input")

    def _integer(self, inputs: list[Signal]) -> Output:
        exact = True
        po2 = all(is_po2(s.scale) for s in inputs)
        if self.mode == "concatenate" and self.axis % len(inputs[0].shape) == len(inputs[0].shape) - 1:
            scales = [np.broadcast_to(np.asarray(s.scale, np.float64), (s.shape[-1],)) for s in inputs]
            codes = np.concatenate([s.codes for s in inputs], axis=-1)
            formats = {s.format for s in inputs}
            fmt = formats.pop() if len(formats) == 1 else None
            pre = Signal(codes, collapse(np.concatenate(scales)), None, fmt, exact)
            return Output(self.activate(pre), pre, None, None)
        aligned = [uniform(s) for s in inputs]
        low = min(e for _, e in aligned)
        parts = []
        for c, e in aligned:
            if max_abs(c) * 2 ** (e - low) >= INT_LIMIT // len(aligned):
                raise Overflow("aligning the operands outgrows 64 bits")
            parts.append(c << (e - low))
        if self.mode == "add":
            codes = parts[0].copy()
            for p in parts[1:]:
                codes = codes + p
        else:
            codes = np.concatenate(parts, axis=self.axis)
        pre = Signal(codes, exponent_scale(low), None, None, exact)
        cause = None
        if not po2:
            cause = "float32_scale"
        elif self.mode == "add" and sum(max_abs(p) for p in parts) >= 2**24:
            cause = "float32_accumulator"
        return Output(self.activate(pre), pre, None, cause)

    def error_bound(self, inputs: list[Signal], pre: Signal) -> np.ndarray:
        if self.mode != "add":
            return np.zeros(pre.shape)
        return (len(inputs) + 1) * U32 * np.sum([np.abs(s.values) for s in inputs], axis=0)
