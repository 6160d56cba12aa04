"""Registry: QKeras layer class -> its named weight tensors with their quantizers.

Weights are paired with quantizers *by attribute name*, following each
layer's own ``call`` (never ``get_quantizers()`` by position, which slips for
batch norm with ``center=False``). A quantizer is applied only where the
layer's ``call`` applies it: that condition is part of each binding.

Each tensor carries the model variables it was read from, so extraction can
prove that every variable of a layer is exported exactly once (or is declared
state, such as a training step counter). Wrappers are read through the layer
they wrap: a Keras ``Bidirectional(X)`` and a Keras ``RNN`` around a QKeras
cell are quantized by X's (the cell's) own spec; anything else that hides
QKeras layers inside a plain Keras layer is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .nested import bases


@dataclass(frozen=True)
class TensorSource:
    """A raw float tensor, the quantizer the layer applies to it (or None), and the variables it came from.

    ``variables`` are the model's weight variables ``raw`` was computed from:
    one for a plain weight, several for a folded one, none for a constant.
    """

    name: str
    raw: np.ndarray
    quantizer: Any = None
    variables: tuple[Any, ...] = ()


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
        return TensorSource(self.name, np.asarray(var, dtype=np.float32), quantizer, (var,))


def _kernel_bias(kernel: str = "kernel", quantizer: str = "kernel_quantizer") -> tuple[Binding, ...]:
    return (
        Binding(kernel, f"{quantizer}_internal", quantizer),
        Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
    )


@dataclass(frozen=True)
class LayerSpec:
    """How to read one layer class: its kind and where its tensors come from.

    ``state`` names attributes holding variables that are not weights the
    layer computes with (a training step counter, the moving min/max that set
    an adaptive quantizer's integer bits, which the activation format already
    reflects): they are accounted for, not exported.
    """

    kind: str
    bindings: tuple[Binding, ...] = ()
    owner: str = ""
    custom: Callable[[Any], list[TensorSource]] | None = None
    activations: tuple[str, ...] = ("activation",)
    state: tuple[str, ...] = ()
    custom_activations: Callable[[Any], list[tuple[str, Any]]] | None = None

    def sources(self, layer: Any) -> list[TensorSource]:
        if self.custom is not None:
            return self.custom(layer)
        owner = _attr_path(layer, self.owner)
        return [s for b in self.bindings if (s := b.source(owner)) is not None]

    def activation_objects(self, layer: Any) -> Iterator[tuple[str, Any]]:
        if self.custom_activations is not None:
            yield from self.custom_activations(layer)
            return
        owner = _attr_path(layer, self.owner)
        for attr in self.activations:
            obj = getattr(owner, attr, None)
            if obj is not None:
                yield attr.replace("_quantizer_internal", "").replace("quantizer", "activation"), obj

    def state_variables(self, layer: Any) -> list[Any]:
        return [v for attr in self.state if (v := getattr(layer, attr, None)) is not None]


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
        bn = layer.batchnorm
        # W_fold = gamma * W / sqrt(var + eps); b_fold = gamma * (b - mean) / sqrt(var + eps) + beta
        own_bias = (layer.bias,) if layer.use_bias else ()
        kernel_from = _present(getattr(layer, kernel_name), bn.gamma, bn.moving_variance)
        bias_from = _present(*own_bias, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        return [TensorSource(kernel_name, kernel, kq, kernel_from), TensorSource("bias", bias, bq, bias_from)]

    return sources


def _present(*variables: Any) -> tuple[Any, ...]:
    return tuple(v for v in variables if v is not None)


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


def _directions(layer: Any) -> tuple[tuple[str, Any], ...]:
    return (("forward", layer.forward_layer), ("backward", layer.backward_layer))


def _bidirectional(layer: Any) -> list[TensorSource]:
    """Each direction read by its own layer's spec (a QLSTM inside is quantized as a QLSTM)."""
    out = []
    for direction, inner in _directions(layer):
        spec = _inner_spec(layer, inner)
        out += [TensorSource(f"{direction}/{s.name}", s.raw, s.quantizer, s.variables) for s in spec.sources(inner)]
    return out


def _bidirectional_activations(layer: Any) -> list[tuple[str, Any]]:
    return [
        (f"{direction}/{name}", obj)
        for direction, inner in _directions(layer)
        for name, obj in _inner_spec(layer, inner).activation_objects(inner)
    ]


def _inner_spec(wrapper: Any, inner: Any) -> LayerSpec:
    try:
        return spec_for(inner)
    except UnsupportedError as e:
        raise UnsupportedError(f"inside layer '{wrapper.name}' ({type(wrapper).__name__}): {e}") from None


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
    "QConv2DBatchnorm": LayerSpec("conv2d", custom=_folded("kernel", "kernel_quantizer"), state=("_iteration",)),
    "QDepthwiseConv2DBatchnorm": LayerSpec(
        "depthwise_conv2d", custom=_folded("depthwise_kernel", "depthwise_quantizer"), state=("_iteration",)
    ),
    "QSimpleRNN": LayerSpec("simple_rnn", _RNN, owner="cell", activations=("activation", "state_quantizer_internal")),
    "QLSTM": LayerSpec("lstm", _RNN, owner="cell", activations=_RNN_ACTIVATIONS),
    "QGRU": LayerSpec("gru", _RNN, owner="cell", activations=_RNN_ACTIVATIONS),
    "QBidirectional": LayerSpec("bidirectional", custom=_bidirectional, custom_activations=_bidirectional_activations),
    "QActivation": LayerSpec("activation", activations=("quantizer",)),
    "QAdaptiveActivation": LayerSpec("activation", activations=("quantizer",), state=("step", "ema_min", "ema_max")),
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
    """Unquantized tensors of a plain Keras layer, named by the shortest unique end of their variable names.

    Usually the last part (``kernel``); a layer with two ``kernel`` variables
    in different sub-layers keeps enough of the path to tell them apart.
    """
    variables = list(layer.weights)
    paths = [v.name.split(":")[0].split("/") for v in variables]
    names = []
    for path in paths:
        for n in range(1, len(path) + 1):
            tail = path[-n:]
            if n == len(path) or sum(p[-n:] == tail for p in paths) == 1:
                names.append("/".join(tail))
                break
    return [TensorSource(name, np.asarray(v, dtype=np.float32), None, (v,)) for name, v in zip(names, variables)]


def _is_qkeras(layer: Any) -> bool:
    return type(layer).__module__.startswith("qkeras")


# A Keras RNN around a QKeras cell quantizes as the QKeras layer built on that cell.
_CELLS = {"QSimpleRNNCell": "QSimpleRNN", "QLSTMCell": "QLSTM", "QGRUCell": "QGRU"}

_KERAS_BIDIRECTIONAL = LayerSpec("bidirectional", custom=_bidirectional, custom_activations=_bidirectional_activations)


def spec_for(layer: Any) -> LayerSpec:
    """The spec for ``layer``; QKeras classes must be registered, plain Keras ones are floats.

    A plain Keras layer that holds QKeras layers (other than through a
    Bidirectional or an RNN cell, read here, or a nested model or
    TimeDistributed, walked by :mod:`qextract.nested`) is refused: reading its
    weights as floats would drop their quantization without a word.
    """
    name = type(layer).__name__
    if name in LAYERS:
        return LAYERS[name]
    if _is_qkeras(layer):
        raise UnsupportedError(
            f"layer '{layer.name}' is a {name}, which qextract does not support yet; "
            f"supported QKeras layers: {', '.join(sorted(LAYERS))}. Fix: add it to qextract.layers.LAYERS."
        )
    classes = bases(layer)
    if "Bidirectional" in classes:
        return _KERAS_BIDIRECTIONAL
    cell = getattr(layer, "cell", None)
    if "RNN" in classes and type(cell).__name__ in _CELLS:
        return LAYERS[_CELLS[type(cell).__name__]]
    if "Wrapper" in classes or "Model" in classes:
        raise UnsupportedError(
            f"layer '{layer.name}' is a {name}, a wrapper qextract cannot see through; it reads "
            "Bidirectional, TimeDistributed and models used as layers. Fix: unwrap the layer, or leave it out with --layers."
        )
    hidden = [inner for inner in layer._flatten_layers(include_self=False) if _is_qkeras(inner)]
    if hidden:
        inner = hidden[0]
        raise UnsupportedError(
            f"layer '{layer.name}' ({name}) holds QKeras layer '{inner.name}' ({type(inner).__name__}) inside a "
            "plain Keras layer, where qextract cannot read its quantizers: its weights would be exported unquantized. "
            "Fix: put the QKeras layer at model level (or in a nested model), or leave the layer out with --layers."
        )
    kind = next((_KERAS_KINDS[c.__name__] for c in type(layer).__mro__ if c.__name__ in _KERAS_KINDS), "other")
    if kind == "bidirectional":  # both directions' variables are named kernel, recurrent_kernel, bias
        return LayerSpec(kind, custom=_bidirectional, activations=())
    return LayerSpec(kind, custom=_plain)
