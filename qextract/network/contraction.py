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

from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .result import AccumulatorRange
from .signal import INT_LIMIT, Overflow, Signal, channel_range, collapse, exponent_scale, is_po2, max_abs, uniform
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
    _cache: tuple[np.ndarray, np.ndarray, int] | None = field(default=None, init=False, repr=False)

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
        x_max = x.code_bound() if xc is x.codes else max_abs(xc)
        k, w_exp, column = self._effective()
        products = x_max * column + 1
        exps, b, up = self._bias_units(e_in + w_exp)
        shift = int(up.max()) if up.size else 0
        limit = (products << shift) + max_abs(b)
        acc = self._contract(xc, k, kernels.exact_dtype(products if shift else limit))
        if shift:  # the bias is finer than the products: refine the accumulator to its scale first
            acc = acc.astype(np.int64) << up
        if self.bias is not None:
            acc += b.astype(acc.dtype)
        lo, hi = channel_range(acc)
        acc = acc.astype(np.int64, copy=False)
        scale = collapse(exponent_scale(exps))
        span = (int(lo.min()), int(hi.max())) if lo.size else (0, 0)
        pre = Signal(acc, scale, None, None, True, span)
        cause = None
        if not (self.weights_po2 and is_po2(x.scale)):
            cause = "float32_scale"
        elif limit >= 2**24:
            cause = "float32_accumulator"
        accumulator = AccumulatorRange(
            min=lo.astype(np.int64),
            max=hi.astype(np.int64),
            scale=float(scale) if np.ndim(scale) == 0 else scale,
            input_format=x.format,
            input_scale=float(2.0**e_in),
            bias_shift=shift,
            samples=acc.shape[0],
        )
        notes: tuple[str, ...] = ()
        if shift:
            notes = (
                f"bias finer than the products: accumulator refined by {shift} bit(s) to hold it "
                "(an accumulator at the product scale would round the bias)",
            )
        return Output(pre, pre, accumulator, cause, notes)

    def _effective(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The layer as one integer kernel, each output channel's exponent (before the input's), and the
        largest sum of ``|kernel|`` into one output (so ``x_max`` times it bounds every accumulator).

        A depthwise kernel with few channels becomes its block-diagonal
        convolution kernel; a separable layer the convolution it equals,
        ``sum_m dw[..., c, m] * pw[c*M + m, o]`` (its per-channel depthwise
        scales moved into the integers). Computed once.
        """
        if self._cache is not None:
            return self._cache
        assert self.kernel is not None
        k = self.kernel
        if self.kind in ("dense", "conv"):
            ints, e = k.per_channel(-1, k.ints.shape[-1])
        else:
            c, m = k.ints.shape[-2:]
            dw, de = k.per_channel(-1, m)
            exps = np.tile(de, c)
            if self.kind == "depthwise":
                ints, e = (kernels.block_diagonal(dw) if c * m <= kernels.DENSE_DEPTHWISE else dw), exps
            else:
                assert self.pointwise is not None
                pw, e_pw = self.pointwise.per_channel(-1, self.pointwise.ints.shape[-1])
                up = (exps - exps.min()).reshape(c, m)
                scaled = dw.astype(np.int64) << up
                pw3 = pw.reshape(c, m, -1).astype(np.int64)
                if max_abs(scaled) * int(np.abs(pw3).sum(axis=1).max(initial=0)) >= INT_LIMIT:
                    raise Overflow("the separable layer's combined kernel outgrows 64 bits")
                ints, e = np.einsum("...cm,cmo->...co", scaled, pw3), int(exps.min()) + e_pw
        self._cache = (ints, np.asarray(e, np.int64), kernels.column_sum(ints, tuple(range(ints.ndim - 1))))
        return self._cache

    def _contract(self, xc: np.ndarray, k: np.ndarray, dtype: type) -> np.ndarray:
        if self.kind == "dense":
            return kernels.dense(xc, k, dtype)
        nd = k.ndim - 2
        pads = self._pads(xc.shape, k.shape[:nd])
        if self.kind == "depthwise" and not self._block_diagonal():
            return kernels.depthwise(xc, k, self.strides, self.dilation, pads, dtype)
        return kernels.conv(xc, k, self.strides, self.dilation, pads, dtype)

    def _block_diagonal(self) -> bool:
        assert self.kernel is not None
        c, m = self.kernel.ints.shape[-2:]
        return c * m <= kernels.DENSE_DEPTHWISE

    def _pads(self, x_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        nd = len(kernel_shape)
        return kernels.pads_for(self.padding, x_shape[1 : 1 + nd], kernel_shape, self.strides, self.dilation)

    def _bias_units(self, exps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The accumulator exponents once the bias fits, the bias in their units, and the refinement per channel.

        Where the bias is finer than the products (its exponent lower), the
        accumulator takes the bias's exponent and its products are shifted up.
        """
        if self.bias is None:
            return exps, np.zeros(0, np.int64), np.zeros(0, np.int64)
        b, be = self.bias.per_channel(0, exps.shape[0])
        up = np.maximum(exps - be, 0)
        new = exps - up
        b_up = be - new
        if max_abs(b) * 2 ** int(b_up.max()) >= INT_LIMIT // 2:
            raise Overflow("aligning the bias with the accumulator outgrows 64 bits")
        return new, b.astype(np.int64) << b_up, up

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
