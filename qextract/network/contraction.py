"""Layers that sum products: Dense, Conv1D/2D, DepthwiseConv2D, SeparableConv1D/2D, and QKeras's folded conv-batchnorm.

In integers: the input's codes at one power-of-two scale, times the weights'
integers (:mod:`.weights`), summed exactly (:mod:`.kernels`); output channel
``o`` has the scale ``2**(E + w_exp[o])``. The bias joins at that scale: where
it is finer, the accumulator is refined by the missing bits first (exact,
and noted per layer: a hardware accumulator at the product's scale would
round that bias). A folded QConv2DBatchnorm is a convolution with the folded,
quantized kernel and bias it computes with at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .result import AccumulatorRange
from .signal import INT_LIMIT, Overflow, Signal, collapse, exponent_scale, is_po2, max_abs, uniform
from .step import U32, Output, Step
from .weights import IntegerTensor


@dataclass
class Contraction(Step):
    """``kind`` is dense, conv, depthwise or separable; ``pointwise`` only for separable."""

    kind: str = "dense"
    kernel: IntegerTensor | None = None
    pointwise: IntegerTensor | None = None
    bias: IntegerTensor | None = None
    strides: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    padding: str = "valid"
    weights_po2: bool = True  # every weight scale a power of two (a float alpha is not)

    # ---------------------------------------------------------------- running

    def run(self, inputs: list[Signal]) -> Output:
        x = inputs[0]
        if x.codes is not None and self._integer_weights():
            try:
                out = self._integer(x)
            except Overflow as e:
                out = self._float(x, notes=(f"computed in float64: {e}",))
        else:
            out = self._float(x)
        assert out.pre is not None
        out.signal = self.activate(out.pre)
        return out

    def _integer_weights(self) -> bool:
        tensors = [t for t in (self.kernel, self.pointwise, self.bias) if t is not None]
        return all(t.integer for t in tensors)

    def _integer(self, x: Signal) -> Output:
        xc, e_in = uniform(x)
        x_max = max_abs(xc)
        acc, exps = self._products(xc, e_in, x_max)
        bound = kernels.bound(x_max, *self._bound_operands())
        shift = 0
        if self.bias is not None:
            acc, exps, shift = self._add_bias(acc, exps, bound)
        scale = collapse(exponent_scale(exps))
        pre = Signal(acc, scale, None, None, True)
        cause = None
        if not (self.weights_po2 and is_po2(x.scale)):
            cause = "float32_scale"
        elif (bound << shift) >= 2**24:
            cause = "float32_accumulator"
        reduce = tuple(range(acc.ndim - 1))
        channels = acc.shape[-1]
        accumulator = AccumulatorRange(
            min=acc.min(axis=reduce) if acc.size else np.zeros(channels, np.int64),
            max=acc.max(axis=reduce) if acc.size else np.zeros(channels, np.int64),
            scale=float(scale) if np.ndim(scale) == 0 else scale,
            input_format=x.format,
            input_scale=float(2.0**e_in),
            bias_shift=shift,
            samples=acc.shape[0],
        )
        notes = ()
        if shift:
            notes = (
                f"bias finer than the products: accumulator refined by {shift} bit(s) to hold it "
                "(an accumulator at the product scale would round the bias)",
            )
        return Output(pre, pre, accumulator, cause, notes)

    def _bound_operands(self) -> tuple[np.ndarray, tuple[int, ...]]:
        """A kernel whose column sums bound every output's sum of |products| (for separable: both combined)."""
        assert self.kernel is not None
        k = self.kernel.ints
        nd = k.ndim - 2
        if self.kind == "dense":
            return k, (0,)
        if self.kind == "conv":
            return k, tuple(range(nd + 1))
        per_channel = np.abs(k).astype(np.float64).sum(axis=tuple(range(nd)))  # (C, M)
        if self.kind == "depthwise":
            return per_channel.reshape(1, -1), (0,)
        assert self.pointwise is not None
        pw = np.abs(self.pointwise.ints).astype(np.float64).reshape(-1, self.pointwise.ints.shape[-1])
        # the pointwise input channel c*M+m carries at most x_max * sum|dw[..., c, m]| (shifted to a common scale)
        spread = self._separable_shifts()
        return (per_channel.reshape(-1, 1) * np.ldexp(1.0, spread)[:, None] * pw), (0,)

    def _pads(self, x_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        nd = len(kernel_shape)
        return kernels.pads_for(self.padding, x_shape[1 : 1 + nd], kernel_shape, self.strides, self.dilation)

    def _products(self, xc: np.ndarray, e_in: int, x_max: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact sums of products, and each output channel's scale exponent."""
        assert self.kernel is not None
        k = self.kernel
        if self.kind == "dense":
            ints, e = k.per_channel(-1, k.ints.shape[-1])
            return kernels.dense(xc, ints, x_max), e_in + e
        nd = k.ints.ndim - 2
        pads = self._pads(xc.shape, k.ints.shape[:nd])
        if self.kind == "conv":
            ints, e = k.per_channel(-1, k.ints.shape[-1])
            return kernels.conv(xc, ints, self.strides, self.dilation, pads, x_max), e_in + e
        c, m = k.ints.shape[-2:]
        ints, e = k.per_channel(-1, m)
        acc = kernels.depthwise(xc, ints, self.strides, self.dilation, pads, x_max)
        exps = np.tile(e_in + e, c)
        if self.kind == "depthwise":
            return acc, exps
        assert self.pointwise is not None
        low = int(exps.min())
        up = exps - low
        dw_max = kernels.bound(x_max, np.abs(ints).reshape(-1, c * m), (0,)) << int(up.max())
        if dw_max >= INT_LIMIT:
            raise Overflow("the depthwise sums outgrow 64 bits at a common scale")
        if up.any():
            acc = acc << up
        pw_ints, pw_e = self.pointwise.per_channel(-1, self.pointwise.ints.shape[-1])
        return kernels.dense(acc, pw_ints.reshape(-1, pw_ints.shape[-1]), dw_max), low + pw_e

    def _separable_shifts(self) -> np.ndarray:
        assert self.kernel is not None
        c, m = self.kernel.ints.shape[-2:]
        _, e = self.kernel.per_channel(-1, m)
        exps = np.tile(e, c)
        return exps - exps.min()

    def _add_bias(self, acc: np.ndarray, exps: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The accumulator plus the bias, at the coarsest power-of-two scale holding both exactly.

        ``bound`` bounds ``|acc|``; where the bias is finer than the products,
        the accumulator is refined (shifted left) to the bias's scale.
        """
        assert self.bias is not None
        b, be = self.bias.per_channel(0, acc.shape[-1])
        up = np.maximum(exps - be, 0)
        new = exps - up
        b_up = be - new
        if (bound << int(up.max())) >= INT_LIMIT or max_abs(b) * 2 ** int(b_up.max()) >= INT_LIMIT // 2:
            raise Overflow("aligning the bias with the accumulator outgrows 64 bits")
        if up.any():
            acc = acc << up
        return acc + (b << b_up), new, int(up.max())

    def _float(self, x: Signal, notes: tuple[str, ...] = ()) -> Output:
        pre = Signal.of_floats(self._float_values(x.values, absolute=False))
        return Output(pre, pre, None, "float_input", notes)

    def _float_values(self, xv: np.ndarray, absolute: bool) -> np.ndarray:
        """The layer before its activation in float64 (on |x| and |weights| when ``absolute``)."""
        assert self.kernel is not None

        def w(t: IntegerTensor) -> np.ndarray:
            return np.abs(t.values) if absolute else t.values

        k = w(self.kernel)
        if self.kind == "dense":
            y = kernels.dense(xv, k)
        else:
            nd = k.ndim - 2
            pads = self._pads(xv.shape, k.shape[:nd])
            if self.kind == "conv":
                y = kernels.conv(xv, k, self.strides, self.dilation, pads)
            else:
                y = kernels.depthwise(xv, k, self.strides, self.dilation, pads)
                if self.kind == "separable":
                    assert self.pointwise is not None
                    pw = w(self.pointwise)
                    y = kernels.dense(y, pw.reshape(-1, pw.shape[-1]))
        if self.bias is not None:
            y = y + w(self.bias)
        return y

    def error_bound(self, inputs: list[Signal], pre: Signal) -> np.ndarray:
        """``(n + 2) u (sum |x w| + |b|)``: float32 summation of ``n`` products, each weight rounded once."""
        assert self.kernel is not None
        n = int(np.prod(self.kernel.ints.shape[:-1]))
        if self.pointwise is not None:
            n += int(np.prod(self.pointwise.ints.shape[:-1]))
        magnitude = self._float_values(np.abs(inputs[0].values), absolute=True)
        return (n + 2) * U32 * magnitude
