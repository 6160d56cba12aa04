"""Each layer as QONNX nodes computing what the Keras layer computes, op for op where Keras fixes the order.

One emitter per layer kind (:class:`~qextract.kinds.Kind`, for layers with
weights) or Keras class (for layers without), found through the layer
registry and the class's bases, so a QKeras subclass takes its Keras base's
emitter. Weights are stored as the exact values the layer computes with and
re-quantized by a Quant / BipolarQuant node that reproduces them bit for bit
(checked here, in NumPy, as qonnx's executor computes). What no node computes
exactly is refused by layer and quantizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ExactnessError, QExtractError, UnsupportedError
from ..kinds import Kind
from ..layers import LAYERS, class_spec
from ..numformat import Binary, FixedPoint, NumberFormat, PowerOfTwo, Ternary
from ..padding import conv_pads, transpose_crop
from ..quantizers import describe, entry_for, is_quantizer
from ..tensor import LayerRecord, QuantizedTensor
from .qonnx_graph import Graph, Placement, Value


@dataclass(frozen=True)
class Site:
    """One layer being emitted: the graph, the Keras layer, its extracted record, inputs and output shape."""

    g: Graph
    layer: Any
    record: LayerRecord | None
    inputs: list[Value]
    out_shape: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"layer '{self.layer.name}' ({type(self.layer).__name__})"

    def refuse(self, why: str, fix: str = "") -> UnsupportedError:
        return UnsupportedError(f"{self.where}: {why}; QONNX export refuses it{'. Fix: ' + fix if fix else ''}")

    def tensor(self, name: str) -> QuantizedTensor | None:
        if self.record is None or name not in self.record.tensors:
            return None
        return self.record.tensors[name]

    def weight(self, name: str, arrange: Callable[[np.ndarray], np.ndarray]) -> str | None:
        """The tensor ``name`` in ONNX layout (``arrange`` maps the native array there), with its quant node."""
        t = self.tensor(name)
        return None if t is None else _weight(self.g, t, arrange, f"{self.layer.name}/{name}", self.where)


Emitter = Callable[[Site], Value]


# ---------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class Grid:
    """The Quant node that reproduces a weight tensor: bit width, signedness, narrow range, and its own scale.

    ``scale`` None: the tensor's scale (per tensor or per output channel).
    """

    bits: int
    signed: bool
    narrow: bool
    scale: np.ndarray | None = None


def _po2_grid(fmt: Any, values: np.ndarray) -> Grid:
    """Powers of two as codes of one grid: scale ``2**e_lo``, ``e_hi - e_lo + 1`` magnitude bits (+ sign).

    Every value ``+-2**e`` with ``e_lo <= e <= e_hi`` (the tensor's smallest and
    largest exponent) is the integer ``+-2**(e - e_lo)`` times that scale, so the
    Quant node reproduces the values exactly; its bit width is the span of
    exponents the tensor holds, not the po2 format's bits.
    """
    signed = bool(fmt.signed)
    nonzero = np.abs(values[values != 0])
    if nonzero.size == 0:
        return Grid(2, True, True, np.asarray(1.0, np.float32))
    exponents = np.frexp(nonzero)[1] - 1
    lo, hi = int(exponents.min()), int(exponents.max())
    return Grid(hi - lo + 1 + int(signed), signed, signed, np.asarray(np.ldexp(1.0, lo), np.float32))


GRIDS: dict[type[NumberFormat], Callable[[Any, np.ndarray], Grid | None]] = {
    FixedPoint: lambda fmt, values: Grid(fmt.bits, bool(fmt.signed), bool(fmt.symmetric)),
    Ternary: lambda fmt, values: Grid(2, True, True),
    Binary: lambda fmt, values: Grid(1, False, False) if fmt.use_01 else None,  # None: BipolarQuant
    PowerOfTwo: _po2_grid,
}
"""Number format class -> the Quant node of its tensors (a look-up table, u-law, has none: refused)."""


def _weight(g: Graph, t: QuantizedTensor, arrange: Callable[[np.ndarray], np.ndarray], hint: str, where: str) -> str:
    values = np.asarray(arrange(t.values), np.float32)
    init = g.const(hint, values)
    if not t.quantized:
        g.float_tensors.append(hint)
        return init
    what = f"{where}, tensor '{t.name}' ({t.quantizer_str}, {t.format})"
    scale = _channel_scale(np.asarray(arrange(np.broadcast_to(t.broadcast_scale(), t.values.shape))), what)
    grid_of = GRIDS.get(type(t.format))
    if grid_of is None:
        raise UnsupportedError(f"{what}: a {t.format} tensor lies on no uniform grid a Quant node can hold")
    grid = grid_of(t.format, values)
    if grid is None:
        return g.bipolar(init, f"{hint}/quant", scale)
    scale = scale if grid.scale is None else grid.scale
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)  # an all-zero channel: codes 0 either way
    if not np.array_equal(_requantized(values, scale, grid), values):
        raise ExactnessError(f"{what}: a Quant node with scale {scale.ravel()[:4]}... does not reproduce its values")
    return g.quant(init, f"{hint}/quant", scale, grid.bits, grid.signed, grid.narrow)


def _channel_scale(full: np.ndarray, what: str) -> np.ndarray:
    """One scale per tensor (shape ()), or per ONNX axis 0 shaped to broadcast; refused otherwise."""
    full = np.asarray(full, np.float32)
    if full.size == 0 or np.all(full == full.flat[0]):
        return np.asarray(full.flat[0] if full.size else 1.0, np.float32)
    first = full[(slice(None),) + (0,) * (full.ndim - 1)].reshape(-1, *[1] * (full.ndim - 1))
    if np.array_equal(np.broadcast_to(first, full.shape), full):
        return first
    raise UnsupportedError(f"{what}: its scale varies along an axis other than the output channels")


def _requantized(values: np.ndarray, scale: np.ndarray, grid: Grid) -> np.ndarray:
    """What qonnx's Quant computes on ``values``: clip, then round half to even, then times scale (float32)."""
    bits, narrow = grid.bits, int(grid.narrow)
    lo = -(2 ** (bits - 1)) + narrow if grid.signed else 0
    hi = 2 ** (bits - 1) - 1 if grid.signed else 2**bits - 1 - narrow
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.rint(np.clip(values / scale, np.float32(lo), np.float32(hi)))
        return (q * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------- activations


_FLOAT_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def activate(site: Site, v: Value, obj: Any, hint: str) -> Value:
    """``v`` through activation ``obj``: a QKeras quantizer as its QONNX node, or a Keras float function."""
    if obj is None:
        return v
    g = site.g
    if is_quantizer(obj):
        try:
            form = entry_for(obj, site.where).qonnx(obj)
        except QExtractError as e:
            raise type(e)(f"{site.where}, activation {describe(obj)}: {e}") from None
        if form.op == "BipolarQuant":
            name = g.bipolar(v.name, hint, form.scale)
        else:
            rounding = form.rounding.qonnx
            if rounding is None:
                raise site.refuse(f"activation {describe(obj)} rounds {form.rounding.value}, which no Quant mode does")
            name = g.quant(v.name, hint, form.scale, form.bits, form.signed, form.narrow, rounding)
        if form.alpha is not None:
            name = g.add("Mul", [name, g.const(f"{hint}/alpha", form.alpha)], f"{hint}/alpha")
        g.quantized.add(name)
        return replace(v, name=name)
    fname = getattr(obj, "__name__", None)
    if fname == "linear":
        return v
    if fname in _FLOAT_ACTIVATIONS and obj is _keras_activation(fname):
        attrs: dict[str, Any] = {"axis": v.channel_axis()} if fname == "softmax" else {}
        return replace(v, name=g.add(_FLOAT_ACTIVATIONS[fname], [v.name], hint, **attrs))
    raise site.refuse(
        f"activation {fname or obj!r} is not one qextract writes as ONNX",
        f"one of linear, {', '.join(_FLOAT_ACTIVATIONS)} or a QKeras quantizer",
    )


def _keras_activation(name: str) -> Any:
    from .._keras import tf

    return tf().keras.activations.get(name)


def _activated(site: Site, v: Value) -> Value:
    return activate(site, v, getattr(site.layer, "activation", None), f"{site.layer.name}/act")


# ---------------------------------------------------------------------------------------------- weighted layers


def _channels_last(site: Site) -> None:
    if getattr(site.layer, "data_format", "channels_last") != "channels_last":
        raise site.refuse("data_format='channels_first' is not supported", "channels_last (Keras's default)")


def _pads(site: Site, x: Value, window: Any, strides: Any, dilation: Any) -> list[int]:
    pairs = conv_pads(site.layer.padding, tuple(x.shape[:-1]), tuple(window), tuple(strides), tuple(dilation))
    return [b for b, _ in pairs] + [a for _, a in pairs]


def _kernel_oi(rank: int) -> Callable[[np.ndarray], np.ndarray]:
    """Keras (k..., I, O) -> ONNX (O, I, k...)."""
    return lambda k: k.transpose(rank + 1, rank, *range(rank))


def _depthwise_oi(k: np.ndarray) -> np.ndarray:
    """Keras depthwise (k..., C, M) -> ONNX (C*M, 1, k...), output channel c*M + m as in TensorFlow."""
    flat = k.reshape(*k.shape[:-2], -1)
    return np.moveaxis(flat, -1, 0)[:, None]


def _conv_node(site: Site, x: Value, weights: list[str], window: Any, group: int, pointwise: bool = False) -> str:
    layer, rank = site.layer, len(window)
    ones = [1] * rank
    strides, dilation = (ones, ones) if pointwise else (list(layer.strides), list(layer.dilation_rate))
    pads = [0] * 2 * rank if pointwise else _pads(site, x, window, strides, dilation)
    hint = f"{layer.name}/pointwise" if pointwise else layer.name
    return site.g.add(
        "Conv", [x.name, *weights], hint, kernel_shape=list(window), strides=strides, dilations=dilation, pads=pads,
        group=group,
    )  # fmt: skip


def _bias(site: Site) -> list[str]:
    b = site.weight("bias", lambda a: a)
    return [] if b is None else [b]


def _conv(site: Site) -> Value:
    _channels_last(site)
    x = site.g.channels_first(site.inputs[0])
    rank = len(site.layer.kernel_size)
    kernel = site.weight("kernel", _kernel_oi(rank))
    assert kernel is not None
    y = _conv_node(site, x, [kernel, *_bias(site)], site.layer.kernel_size, int(getattr(site.layer, "groups", 1)))
    return _activated(site, Value(y, site.out_shape, Placement.CHANNELS_FIRST))


def _depthwise(site: Site) -> Value:
    _channels_last(site)
    x = site.g.channels_first(site.inputs[0])
    kernel = site.weight("depthwise_kernel", _depthwise_oi)
    assert kernel is not None
    y = _conv_node(site, x, [kernel, *_bias(site)], site.layer.kernel_size, x.shape[-1])
    return _activated(site, Value(y, site.out_shape, Placement.CHANNELS_FIRST))


def _separable(site: Site) -> Value:
    """Depthwise then pointwise (1x1) convolution, each rounded to float32 as TensorFlow's separable_conv2d does."""
    _channels_last(site)
    x = site.g.channels_first(site.inputs[0])
    rank = len(site.layer.kernel_size)
    depthwise = site.weight("depthwise_kernel", _depthwise_oi)
    pointwise = site.weight("pointwise_kernel", _kernel_oi(rank))
    assert depthwise is not None and pointwise is not None
    mid = _conv_node(site, x, [depthwise], site.layer.kernel_size, x.shape[-1])
    inner = Value(mid, (*site.out_shape[:-1], x.shape[-1] * int(site.layer.depth_multiplier)), Placement.CHANNELS_FIRST)
    y = _conv_node(site, inner, [pointwise, *_bias(site)], [1] * rank, 1, pointwise=True)
    return _activated(site, Value(y, site.out_shape, Placement.CHANNELS_FIRST))


def _conv_transpose(site: Site) -> Value:
    _channels_last(site)
    layer = site.layer
    if any(d != 1 for d in layer.dilation_rate) or getattr(layer, "output_padding", None) is not None:
        raise site.refuse("dilation or output_padding on a transposed convolution is not supported")
    x = site.g.channels_first(site.inputs[0])
    kernel = site.weight("kernel", lambda k: k.transpose(3, 2, 0, 1))  # Keras (H,W,O,I) -> ONNX (I,O,H,W)
    assert kernel is not None
    begins, ends, extra = [], [], []
    for n, k, s in zip(x.shape[:-1], layer.kernel_size, layer.strides):
        _, crop, out = transpose_crop(n, k, s, layer.padding)
        full = (n - 1) * s + k
        begins.append(crop)
        ends.append(max(full - out, 0) - crop)
        extra.append(max(out - full, 0))  # a stride beyond the kernel: zeros at the end, as TensorFlow writes
    y = site.g.add(
        "ConvTranspose", [x.name, kernel, *_bias(site)], layer.name, kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides), pads=begins + ends, output_padding=extra,
    )  # fmt: skip
    return _activated(site, Value(y, site.out_shape, Placement.CHANNELS_FIRST))


def _dense(site: Site) -> Value:
    x = site.inputs[0]
    if len(x.shape) != 1:
        raise site.refuse(f"a Dense on an input of shape {x.shape} (rank > 2)", "Flatten before the Dense")
    order = x.feature_order()  # a Flatten of channels-first data: the kernel's rows in that order
    kernel = site.weight("kernel", lambda k: k[order].T)
    assert kernel is not None
    y = site.g.add("Gemm", [x.name, kernel, *_bias(site)], site.layer.name, transB=1)
    return _activated(site, Value(y, site.out_shape))


def _batchnorm(site: Site) -> Value:
    """QBatchNormalization as QKeras computes it (tf.nn.batch_normalization): ``x * inv + (beta - mean * inv)``.

    ``inv = rsqrt(variance + epsilon) * gamma`` is computed here by
    TensorFlow's own ops on the quantized parameters, so the two constants
    are the float32 numbers the layer multiplies and adds.
    """
    layer, x = site.layer, site.inputs[0]
    if type(layer).__name__ not in LAYERS:
        raise site.refuse(
            "Keras's BatchNormalization runs TensorFlow's fused kernel, whose float32 rounding no ONNX graph "
            "reproduces bit for bit",
            "QBatchNormalization, or fold it into the convolution (QConv2DBatchnorm)",
        )
    if list(layer.axis) != [len(x.shape)]:
        raise site.refuse(f"batch norm over axis {list(layer.axis)} (only the last axis is supported)")
    inv, offset = _batchnorm_constants(site)
    scaled = site.g.add("Mul", [x.name, site.g.per_channel(x, inv, f"{layer.name}/inv")], f"{layer.name}/mul")
    y = site.g.add("Add", [scaled, site.g.per_channel(x, offset, f"{layer.name}/offset")], layer.name)
    return replace(x, name=y)


def _batchnorm_constants(site: Site) -> tuple[np.ndarray, np.ndarray]:
    from .._keras import tf

    t = tf()

    def value(name: str) -> Any:
        tensor = site.tensor(name)
        return None if tensor is None else t.constant(tensor.values)

    gamma, beta, mean, variance = (value(n) for n in ("gamma", "beta", "moving_mean", "moving_variance"))
    inv = t.math.rsqrt(variance + site.layer.epsilon)
    if gamma is not None:
        inv *= gamma
    offset = beta - mean * inv if beta is not None else -mean * inv
    return np.asarray(inv, np.float32), np.asarray(offset, np.float32)


def _qactivation(site: Site) -> Value:
    return activate(site, site.inputs[0], site.layer.quantizer, site.layer.name)


BY_KIND: dict[Kind, Emitter] = {
    Kind.DENSE: _dense,
    Kind.CONV1D: _conv,
    Kind.CONV2D: _conv,
    Kind.CONV2D_TRANSPOSE: _conv_transpose,
    Kind.DEPTHWISE_CONV2D: _depthwise,
    Kind.SEPARABLE_CONV1D: _separable,
    Kind.SEPARABLE_CONV2D: _separable,
    Kind.BATCHNORM: _batchnorm,
    Kind.ACTIVATION: _qactivation,
}
"""Layers with weights (and QActivation), by the kind the layer registry gives them."""


def emitter_for(layer: Any) -> Emitter | None:
    """The emitter of ``layer``: by its registry kind, else by the nearest of its classes in :data:`BY_CLASS`."""
    from .qonnx_plain import BY_CLASS

    kind = class_spec(layer).kind
    if kind in BY_KIND and not (kind is Kind.ACTIVATION and type(layer).__name__ != "QActivation"):
        return BY_KIND[kind]
    return next((BY_CLASS[c.__name__] for c in type(layer).__mro__ if c.__name__ in BY_CLASS), None)
