"""Output shapes from a layer's stored configuration, as Keras computes them (``compute_output_shape``).

The NumPy engine records each layer's input and output shape as the Keras path
reads them from the model's graph; without Keras they are derived here, layer by
layer from the model's input, and checked against the shape each layer was
built with where the file records it (``build_config``). A class without a rule
here cannot be placed: :class:`~qextract.errors.NeedsQKeras` names it.
Channels-last only, as the rest of qextract's layouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import NeedsQKeras

__all__ = ["Shape", "output_shape"]

Shape = tuple[Any, ...]
"""A Keras shape: batch first, ``None`` where unknown."""


def output_shape(class_name: str, config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    """The shape ``class_name`` with ``config`` outputs for ``inputs`` (one shape per inbound tensor)."""
    rule = _RULES.get(class_name)
    if rule is None:
        raise NeedsQKeras(f"layer class {class_name}, whose output shape the NumPy engine has no rule for")
    if config.get("data_format", "channels_last") != "channels_last":
        raise NeedsQKeras(f"data_format={config.get('data_format')!r} (the NumPy engine places channels_last only)")
    if class_name not in _MERGES and len(inputs) != 1:
        raise NeedsQKeras(f"a {class_name} with {len(inputs)} inputs")
    return tuple(rule(config, inputs))


def _same(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    return inputs[0]


def _dense(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    return (*inputs[0][:-1], int(config["units"]))


def _length(n: Any, window: int, padding: str, stride: int, dilation: int = 1) -> Any:
    """Keras's ``conv_output_length``."""
    if n is None:
        return None
    dilated = (window - 1) * dilation + 1
    if padding in ("same", "causal"):
        out = n
    elif padding == "valid":
        out = n - dilated + 1
    elif padding == "full":
        out = n + dilated - 1
    else:
        raise NeedsQKeras(f"padding={padding!r}")
    return (out + stride - 1) // stride


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * rank


def _spatial(config: Mapping[str, Any], shape: Shape, window_key: str) -> list[Any]:
    rank = len(shape) - 2
    window = _tuple(config[window_key], rank)
    strides = _tuple(config.get("strides") or window, rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    padding = str(config.get("padding", "valid")).lower()
    return [_length(n, k, padding, s, d) for n, k, s, d in zip(shape[1:-1], window, strides, dilation)]


def _conv(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    return (inputs[0][0], *_spatial(config, inputs[0], "kernel_size"), int(config["filters"]))


def _depthwise(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    channels = inputs[0][-1]
    multiplier = int(config.get("depth_multiplier", 1))
    return (
        inputs[0][0],
        *_spatial(config, inputs[0], "kernel_size"),
        None if channels is None else channels * multiplier,
    )


def _transpose(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    shape = inputs[0]
    rank = len(shape) - 2
    kernel, strides = _tuple(config["kernel_size"], rank), _tuple(config.get("strides", 1), rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    extra = config.get("output_padding")
    extras = (None,) * rank if extra is None else _tuple(extra, rank)
    padding = str(config.get("padding", "valid")).lower()
    out: list[Any] = []
    for n, k, s, d, e in zip(shape[1:-1], kernel, strides, dilation, extras):
        k = k + (k - 1) * (d - 1)
        if n is None:
            out.append(None)
        elif e is None:
            out.append({"valid": n * s + max(k - s, 0), "full": n * s - (s + k - 2), "same": n * s}[padding])
        else:
            pad = {"same": k // 2, "valid": 0, "full": k - 1}[padding]
            out.append((n - 1) * s + k - 2 * pad + e)
    return (shape[0], *out, int(config["filters"]))


def _pool(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    return (inputs[0][0], *_spatial(config, inputs[0], "pool_size"), inputs[0][-1])


def _global_pool(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    shape = inputs[0]
    if config.get("keepdims"):
        return (shape[0], *([1] * (len(shape) - 2)), shape[-1])
    return (shape[0], shape[-1])


def _flatten(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    rest = inputs[0][1:]
    return (inputs[0][0], None if None in rest else math.prod(rest))


def _zero_padding(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    shape = inputs[0]
    rank = len(shape) - 2
    pad = config["padding"]
    pairs: list[tuple[int, ...]] = (
        [(pad, pad)] * rank if isinstance(pad, int) else [(p, p) if isinstance(p, int) else tuple(p) for p in pad]
    )
    if rank == 1 and len(pairs) == 2 and all(isinstance(p, int) for p in pad):
        pairs = [tuple(pad)]
    return (shape[0], *[None if n is None else n + sum(p) for n, p in zip(shape[1:-1], pairs)], shape[-1])


def _reshape(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    target: list[int | None] = [int(d) for d in config["target_shape"]]
    if -1 in target:
        known = math.prod(d for d in target if d is not None and d != -1)
        rest = inputs[0][1:]
        target[target.index(-1)] = None if None in rest else math.prod(rest) // known
    return (inputs[0][0], *target)


def _upsampling(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    shape = inputs[0]
    size = _tuple(config.get("size", 2), len(shape) - 2)
    return (shape[0], *[None if n is None else n * s for n, s in zip(shape[1:-1], size)], shape[-1])


def _merge(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    if len(inputs) < 2 or any(s != inputs[0] for s in inputs):
        raise NeedsQKeras("a merge of inputs of different shapes")
    return inputs[0]


def _concatenate(config: Mapping[str, Any], inputs: list[Shape]) -> Shape:
    axis = int(config.get("axis", -1)) % len(inputs[0])
    if any(len(s) != len(inputs[0]) for s in inputs):
        raise NeedsQKeras("a concatenation of inputs of different ranks")
    sizes = [s[axis] for s in inputs]
    out = list(inputs[0])
    out[axis] = None if None in sizes else sum(sizes)
    return tuple(out)


_Rule = Callable[[Mapping[str, Any], list[Shape]], Shape]
_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}
_RULES: dict[str, _Rule] = {
    **dict.fromkeys(
        (
            "Activation",
            "QActivation",
            "BatchNormalization",
            "QBatchNormalization",
            "Dropout",
            "SpatialDropout1D",
            "SpatialDropout2D",
            "GaussianNoise",
            "GaussianDropout",
            "AlphaDropout",
            "ReLU",
            "LeakyReLU",
            "PReLU",
            "ELU",
            "Softmax",
            "ThresholdedReLU",
            "LayerNormalization",
            "QAdaptiveActivation",
        ),
        _same,
    ),
    **dict.fromkeys(("Dense", "QDense"), _dense),
    **dict.fromkeys(
        (
            "Conv1D",
            "Conv2D",
            "QConv1D",
            "QConv2D",
            "QConv2DBatchnorm",
            "SeparableConv1D",
            "SeparableConv2D",
            "QSeparableConv1D",
            "QSeparableConv2D",
        ),
        _conv,
    ),
    **dict.fromkeys(("DepthwiseConv2D", "QDepthwiseConv2D", "QDepthwiseConv2DBatchnorm"), _depthwise),
    **dict.fromkeys(("Conv2DTranspose", "QConv2DTranspose"), _transpose),
    **dict.fromkeys(
        ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "QAveragePooling2D"), _pool
    ),
    **dict.fromkeys(
        (
            "GlobalAveragePooling1D",
            "GlobalAveragePooling2D",
            "GlobalMaxPooling1D",
            "GlobalMaxPooling2D",
            "QGlobalAveragePooling2D",
        ),
        _global_pool,
    ),
    "Flatten": _flatten,
    "ZeroPadding1D": _zero_padding,
    "ZeroPadding2D": _zero_padding,
    "Reshape": _reshape,
    "UpSampling1D": _upsampling,
    "UpSampling2D": _upsampling,
    **dict.fromkeys(_MERGES - {"Concatenate"}, _merge),
    "Concatenate": _concatenate,
}


def placeable(class_name: str) -> bool:
    """True for a class whose output shape :func:`output_shape` knows."""
    return class_name in _RULES
