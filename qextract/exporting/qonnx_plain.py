"""Layers without weights as ONNX nodes: shapes, pooling, padding, merges and activation layers.

Keyed by Keras class name; a layer takes the entry of the nearest of its
classes (``QAveragePooling2D`` is an ``AveragePooling2D`` here, followed by
its quantized ``1/area`` multiplier).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .qonnx_graph import Placement, Value
from .qonnx_layers import Emitter, Site, _channels_last, _pads, activate


def _identity(site: Site) -> Value:
    return site.inputs[0]


def _flatten(site: Site) -> Value:
    """Flatten channels-first data as it lies (C,H,W order): the next Dense takes its kernel rows in that order."""
    x = site.inputs[0]
    if getattr(site.layer, "data_format", "channels_last") != "channels_last":
        raise site.refuse("Flatten(data_format='channels_first') is not supported")
    if len(x.shape) <= 1:
        return x
    y = site.g.add("Flatten", [x.name], site.layer.name, axis=1)
    if x.placement is Placement.CHANNELS_FIRST:
        return Value(y, site.out_shape, Placement.FLAT_CHANNELS_FIRST, flat_from=x.shape)
    return Value(y, site.out_shape)


def _reshape(site: Site) -> Value:
    x = site.g.keras(site.inputs[0])
    return Value(site.g.reshape(x.name, (site.g.batch, *site.out_shape), site.layer.name), site.out_shape)


def _activation_layer(site: Site) -> Value:
    return activate(site, site.inputs[0], site.layer.activation, site.layer.name)


def _relu_layer(site: Site) -> Value:
    layer, x = site.layer, site.inputs[0]
    if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        raise site.refuse("ReLU with a negative_slope or threshold", "a plain ReLU, or quantized_relu")
    if layer.max_value is None:
        return replace(x, name=site.g.add("Relu", [x.name], layer.name))
    low, high = site.g.const(f"{layer.name}/min", 0.0), site.g.const(f"{layer.name}/max", float(layer.max_value))
    return replace(x, name=site.g.add("Clip", [x.name, low, high], layer.name))


def _softmax_layer(site: Site) -> Value:
    x = site.inputs[0]
    if list(np.atleast_1d(site.layer.axis)) not in ([-1], [len(x.shape)]):
        raise site.refuse(f"Softmax over axis {site.layer.axis} (only the last axis is supported)")
    return replace(x, name=site.g.add("Softmax", [x.name], site.layer.name, axis=x.channel_axis()))


def _pool(op: str) -> Emitter:
    def emit(site: Site) -> Value:
        _channels_last(site)
        layer = site.layer
        x = site.g.channels_first(site.inputs[0])
        window, strides = list(layer.pool_size), list(layer.strides)
        pads = _pads(site, x, window, strides, [1] * len(window))
        # TensorFlow's "same" average leaves the padding out of the count (count_include_pad=0, ONNX's default).
        y = site.g.add(op, [x.name], layer.name, kernel_shape=window, strides=strides, pads=pads)
        return _multiplied(site, Value(y, site.out_shape, Placement.CHANNELS_FIRST), int(np.prod(window)))

    return emit


def _global_pool(op: str) -> Emitter:
    def emit(site: Site) -> Value:
        _channels_last(site)
        x = site.g.channels_first(site.inputs[0])
        y = site.g.add(op, [x.name], site.layer.name)
        if getattr(site.layer, "keepdims", False):
            v = Value(y, site.out_shape, Placement.CHANNELS_FIRST)
        else:
            v = Value(site.g.add("Flatten", [y], f"{site.layer.name}/flatten", axis=1), site.out_shape)
        return _multiplied(site, v, int(np.prod(x.shape[:-1])))

    return emit


def _multiplied(site: Site, v: Value, area: int) -> Value:
    """QKeras's average pooling: the average times the area, times the quantized ``1/area``; then its activation.

    Plain Keras pooling has neither the multiplier nor an activation.
    """
    multiplier = site.tensor("average_multiplier")
    if multiplier is not None:
        g, name = site.g, site.layer.name
        summed = g.add("Mul", [v.name, g.const(f"{name}/area", float(area))], f"{name}/sum")
        v = replace(v, name=g.add("Mul", [summed, g.const(f"{name}/multiplier", multiplier.values)], f"{name}/mult"))
    return activate(site, v, getattr(site.layer, "activation", None), f"{site.layer.name}/act")


def _zero_padding(site: Site) -> Value:
    _channels_last(site)
    x = site.g.channels_first(site.inputs[0])
    pairs = [tuple(p) for p in np.atleast_2d(np.asarray(site.layer.padding)).reshape(-1, 2)]
    pads = [0, 0, *[b for b, _ in pairs], 0, 0, *[a for _, a in pairs]]
    y = site.g.add("Pad", [x.name, site.g.const(f"{site.layer.name}/pads", pads, np.int64)], site.layer.name)
    return Value(y, site.out_shape, Placement.CHANNELS_FIRST)


def _aligned(site: Site) -> list[Value]:
    """The inputs in one placement: as they are where they agree, else each in Keras order."""
    ins = site.inputs
    if len({(v.placement, v.flat_from) for v in ins}) == 1:
        return ins
    return [site.g.keras(v) for v in ins]


def _merge(op: str) -> Emitter:
    """Keras merges fold left to right (``out = x0; out = out op x1; ...``), one node per step as here."""

    def emit(site: Site) -> Value:
        ins = _aligned(site)
        if len({v.shape for v in ins}) != 1:
            raise site.refuse(f"a merge of shapes {[v.shape for v in ins]} (broadcasting is not supported)")
        out = ins[0].name
        for i, v in enumerate(ins[1:], start=1):
            hint = site.layer.name if i == len(ins) - 1 else f"{site.layer.name}/{i}"
            out = site.g.add(op, [out, v.name], hint)
        return replace(ins[0], name=out)

    return emit


def _concatenate(site: Site) -> Value:
    ins = _aligned(site)
    if ins[0].placement is Placement.FLAT_CHANNELS_FIRST:
        ins = [site.g.keras(v) for v in ins]
    rank = len(ins[0].shape)
    axis = site.layer.axis % (rank + 1)
    if ins[0].placement is Placement.CHANNELS_FIRST:
        axis = 1 if axis == rank else axis + 1
    y = site.g.add("Concat", [v.name for v in ins], site.layer.name, axis=axis)
    return Value(y, site.out_shape, ins[0].placement)


_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout")

BY_CLASS: dict[str, Emitter] = {
    **dict.fromkeys(_IDENTITY, _identity),
    "ActivityRegularization": _identity,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Activation": _activation_layer,
    "ReLU": _relu_layer,
    "Softmax": _softmax_layer,
    "MaxPooling1D": _pool("MaxPool"),
    "MaxPooling2D": _pool("MaxPool"),
    "AveragePooling1D": _pool("AveragePool"),
    "AveragePooling2D": _pool("AveragePool"),
    "GlobalMaxPooling1D": _global_pool("GlobalMaxPool"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "GlobalAveragePooling1D": _global_pool("GlobalAveragePool"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"),
    "ZeroPadding1D": _zero_padding,
    "ZeroPadding2D": _zero_padding,
    "Add": _merge("Add"),
    "Subtract": _merge("Sub"),
    "Multiply": _merge("Mul"),
    "Maximum": _merge("Max"),
    "Minimum": _merge("Min"),
    "Concatenate": _concatenate,
}
"""Layers without weights, by Keras class name (found through a layer's bases)."""
