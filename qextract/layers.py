"""Registry: QKeras layer class -> its named weight tensors with their quantizers.

Weights are paired with quantizers *by attribute name*, following each
layer's own ``call`` (never ``get_quantizers()`` by position, which slips for
batch norm with ``center=False``). A quantizer is applied only where the
layer's ``call`` applies it: that condition is part of each binding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnsupportedError


@dataclass(frozen=True)
class TensorSource:
    """A raw float tensor and the quantizer the layer applies to it (or None)."""

    name: str
    raw: np.ndarray
    quantizer: Any = None


@dataclass(frozen=True)
class Binding:
    """``name`` is the weight ``weight`` of ``owner``, quantized by ``quantizer`` if ``enabled``.

    ``owner`` is an attribute path from the layer ("" for the layer itself,
    "cell" for recurrent layers). ``enabled`` names the attribute whose truth
    decides, in the layer's ``call``, whether the quantizer is applied.
    """

    name: str
    quantizer: str | None = None
    enabled: str | None = None
    weight: str | None = None
    present: str | None = None  # attribute that must be true for the weight to exist

    def source(self, owner: Any) -> TensorSource | None:
        if self.present and not getattr(owner, self.present):
            return None
        var = getattr(owner, self.weight or self.name, None)
        if var is None:
            return None
        quantizer = None
        if self.quantizer and (self.enabled is None or getattr(owner, self.enabled, None)):
            quantizer = getattr(owner, self.quantizer)
        return TensorSource(self.name, np.asarray(var, dtype=np.float32), quantizer)


def _kernel_bias(kernel: str = "kernel", quantizer: str = "kernel_quantizer") -> tuple[Binding, ...]:
    return (
        Binding(kernel, f"{quantizer}_internal", quantizer),
        Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
    )


@dataclass(frozen=True)
class LayerSpec:
    """How to read one layer class: its kind and where its tensors come from."""

    kind: str
    bindings: tuple[Binding, ...] = ()
    owner: str = ""
    custom: Callable[[Any], list[TensorSource]] | None = None
    activations: tuple[str, ...] = ("activation",)

    def sources(self, layer: Any) -> list[TensorSource]:
        if self.custom is not None:
            return self.custom(layer)
        owner = _attr_path(layer, self.owner)
        return [s for b in self.bindings if (s := b.source(owner)) is not None]

    def activation_objects(self, layer: Any) -> Iterator[tuple[str, Any]]:
        owner = _attr_path(layer, self.owner)
        for attr in self.activations:
            obj = getattr(owner, attr, None)
            if obj is not None:
                yield attr.replace("_quantizer_internal", "").replace("quantizer", "activation"), obj


def _attr_path(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


def _folded(kernel_name: str, quantizer: str) -> Callable[[Any], list[TensorSource]]:
    """Folded conv-batchnorm: the layer quantizes ``get_folded_weights()`` (moving statistics)."""

    def sources(layer: Any) -> list[TensorSource]:
        if not layer.batchnorm.center:
            raise UnsupportedError(
                f"layer '{layer.name}' ({type(layer).__name__}) has center=False: QKeras's own "
                "folding then adds None and fails. Fix: build it with center=True."
            )
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_folded_weights())
        kq = getattr(layer, f"{quantizer}_internal") if getattr(layer, quantizer) is not None else None
        bq = layer.bias_quantizer_internal if layer.bias_quantizer is not None else None
        return [TensorSource(kernel_name, kernel, kq), TensorSource("bias", bias, bq)]

    return sources


def _average_multiplier(layer: Any) -> list[TensorSource]:
    """QAveragePooling: the layer multiplies the window sum by quantizer(1 / pool_area)."""
    if not layer.average_quantizer:
        return []
    if hasattr(layer, "pool_size"):
        pool = layer.pool_size
        area = pool * pool if isinstance(pool, int) else int(np.prod(pool))
    else:
        shape = layer.input_shape
        area = shape[1] * shape[2] if layer.data_format == "channels_last" else shape[2] * shape[3]
    value = np.asarray(1.0 / area, dtype=np.float32)
    return [TensorSource("average_multiplier", value, layer.average_quantizer_internal)]


def _bidirectional(layer: Any) -> list[TensorSource]:
    out = []
    for direction, inner in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
        spec = spec_for(inner)
        out += [TensorSource(f"{direction}/{s.name}", s.raw, s.quantizer) for s in spec.sources(inner)]
    return out


_RNN = (
    Binding("kernel", "kernel_quantizer_internal", "kernel_quantizer"),
    Binding("recurrent_kernel", "recurrent_quantizer_internal", "recurrent_quantizer"),
    Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
)
_RNN_ACTIVATIONS = ("activation", "recurrent_activation", "state_quantizer_internal")
_SEPARABLE = (
    Binding("depthwise_kernel", "depthwise_quantizer_internal", "depthwise_quantizer"),
    Binding("pointwise_kernel", "pointwise_quantizer_internal", "pointwise_quantizer"),
    Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
)

LAYERS: dict[str, LayerSpec] = {
    "QDense": LayerSpec("dense", _kernel_bias()),
    "QConv1D": LayerSpec("conv1d", _kernel_bias()),
    "QConv2D": LayerSpec("conv2d", _kernel_bias()),
    "QConv2DTranspose": LayerSpec("conv2d_transpose", _kernel_bias()),
    "QDepthwiseConv2D": LayerSpec("depthwise_conv2d", _kernel_bias("depthwise_kernel", "depthwise_quantizer")),
    "QSeparableConv1D": LayerSpec("separable_conv1d", _SEPARABLE),
    "QSeparableConv2D": LayerSpec("separable_conv2d", _SEPARABLE),
    "QBatchNormalization": LayerSpec(
        "batchnorm",
        (
            Binding("gamma", "gamma_quantizer_internal", "gamma_quantizer", present="scale"),
            Binding("beta", "beta_quantizer_internal", "beta_quantizer", present="center"),
            Binding("moving_mean", "mean_quantizer_internal", "mean_quantizer"),
            Binding("moving_variance", "variance_quantizer_internal", "variance_quantizer"),
        ),
        activations=(),
    ),
    "QConv2DBatchnorm": LayerSpec("conv2d", custom=_folded("kernel", "kernel_quantizer")),
    "QDepthwiseConv2DBatchnorm": LayerSpec(
        "depthwise_conv2d", custom=_folded("depthwise_kernel", "depthwise_quantizer")
    ),
    "QSimpleRNN": LayerSpec("simple_rnn", _RNN, owner="cell", activations=("activation", "state_quantizer_internal")),
    "QLSTM": LayerSpec("lstm", _RNN, owner="cell", activations=_RNN_ACTIVATIONS),
    "QGRU": LayerSpec("gru", _RNN, owner="cell", activations=_RNN_ACTIVATIONS),
    "QBidirectional": LayerSpec("bidirectional", custom=_bidirectional, activations=()),
    "QActivation": LayerSpec("activation", activations=("quantizer",)),
    "QAdaptiveActivation": LayerSpec("activation", activations=("quantizer",)),
    "QAveragePooling2D": LayerSpec(
        "pooling", custom=_average_multiplier, activations=("activation", "average_quantizer_internal")
    ),
    "QGlobalAveragePooling2D": LayerSpec(
        "pooling", custom=_average_multiplier, activations=("activation", "average_quantizer_internal")
    ),
}
"""Every supported QKeras layer class name -> how to read it. Add a layer here."""

# Plain Keras layers: kind by their (first registered) base class, weights as floats.
_KERAS_KINDS = {
    # Subclasses with another weight layout come first: their own name is found before their base's.
    "Conv1DTranspose": "other",
    "Conv3DTranspose": "other",
    "Dense": "dense",
    "Conv1D": "conv1d",
    "Conv2D": "conv2d",
    "Conv2DTranspose": "conv2d_transpose",
    "DepthwiseConv2D": "depthwise_conv2d",
    "SeparableConv1D": "separable_conv1d",
    "SeparableConv2D": "separable_conv2d",
    "BatchNormalization": "batchnorm",
    "SimpleRNN": "simple_rnn",
    "LSTM": "lstm",
    "GRU": "gru",
    "Bidirectional": "bidirectional",
}


def _plain(layer: Any) -> list[TensorSource]:
    """Unquantized tensors of a plain Keras layer, named after their variables."""
    sources = []
    for var in layer.weights:
        name = var.name.split("/")[-1].split(":")[0]
        sources.append(TensorSource(name, np.asarray(var, dtype=np.float32)))
    return sources


def _is_qkeras(layer: Any) -> bool:
    return type(layer).__module__.startswith("qkeras")


def spec_for(layer: Any) -> LayerSpec:
    """The spec for ``layer``; QKeras classes must be registered, plain Keras ones are floats."""
    name = type(layer).__name__
    if name in LAYERS:
        return LAYERS[name]
    if _is_qkeras(layer):
        raise UnsupportedError(
            f"layer '{layer.name}' is a {name}, which qextract does not support yet; "
            f"supported QKeras layers: {', '.join(sorted(LAYERS))}. Fix: add it to qextract.layers.LAYERS."
        )
    kind = next((_KERAS_KINDS[c.__name__] for c in type(layer).__mro__ if c.__name__ in _KERAS_KINDS), "other")
    if kind == "bidirectional":  # both directions' variables are named kernel, recurrent_kernel, bias
        return LayerSpec(kind, custom=_bidirectional, activations=())
    return LayerSpec(kind, custom=_plain)
