"""The layer registries: one entry per layer class, owning everything qextract knows about it.

:data:`LAYERS` - QKeras layer class name -> :class:`~.spec.LayerSpec`: its
kind, its named tensors with their quantizers, its float twin and whether it
fuses an activation. :data:`KERAS_LAYERS` - plain Keras layers, found by
their class or its nearest registered base class: their weights are floats.
:data:`KERAS_WRAPPERS` - Keras wrappers extraction walks through
(TimeDistributed). :func:`twin_for` - the float twin a class's entry declares.

Each tensor carries the model variables it was read from, so extraction can
prove that every variable of a layer is exported exactly once (or is declared
state, such as a training step counter). Wrappers are read through the layer
they wrap: a Keras ``Bidirectional(X)`` and a Keras ``RNN`` around a QKeras
cell are quantized by X's (the cell's) own entry; anything else that hides
QKeras layers inside a plain Keras layer is refused by name.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedError
from ..kinds import Kind
from ..reading.nested import bases
from .readers import average_multiplier, folded, plain
from .spec import Binding, LayerSpec, LayerTwin, Refusal, TensorSource


def _directions(layer: Any) -> tuple[tuple[str, Any], ...]:
    return (("forward", layer.forward_layer), ("backward", layer.backward_layer))


def _bidirectional(layer: Any) -> list[TensorSource]:
    """Each direction read by its own layer's entry (a QLSTM inside is quantized as a QLSTM)."""
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
        raise UnsupportedError(
            f"inside layer '{wrapper.name}' ({type(wrapper).__name__}): {e}", arguments=e.arguments
        ) from None


def _kernel_bias(kernel: str = "kernel", quantizer: str = "kernel_quantizer") -> tuple[Binding, ...]:
    return (
        Binding(kernel, f"{quantizer}_internal", quantizer, optimized=True),
        Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
    )


_RNN = (
    Binding("kernel", "kernel_quantizer_internal", "kernel_quantizer", optimized=True),
    Binding("recurrent_kernel", "recurrent_quantizer_internal", "recurrent_quantizer", optimized=True),
    Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
)
_RNN_ACTIVATIONS = ("activation", "recurrent_activation", "state_quantizer_internal")
_SEPARABLE = (
    Binding("depthwise_kernel", "depthwise_quantizer_internal", "depthwise_quantizer", optimized=True),
    Binding("pointwise_kernel", "pointwise_quantizer_internal", "pointwise_quantizer", optimized=True),
    Binding("bias", "bias_quantizer_internal", "bias_quantizer", present="use_bias"),
)
_BATCHNORM = (
    Binding("gamma", "gamma_quantizer_internal", "gamma_quantizer", present="scale", optimized=True),
    Binding("beta", "beta_quantizer_internal", "beta_quantizer", present="center"),
    Binding("moving_mean", "mean_quantizer_internal", "mean_quantizer"),
    Binding("moving_variance", "variance_quantizer_internal", "variance_quantizer", optimized=True),
)
_POOLING_ACTIVATIONS = ("activation", "average_quantizer_internal")
_FOLDED_STATE = ("_iteration",)
# qkeras-v3's QConv2D takes a kernel mask (mask=), multiplied into the quantized kernel (QKeras 0.9 has none).
_MASK = (
    Refusal(
        "_mask",
        "has a kernel mask (mask=...): it multiplies the quantized kernel, so the layer's weights are not the "
        "quantizer's codes. Fix: multiply the mask into the raw kernel and build the layer without mask=, or leave "
        "the layer out with layers=[...].",
    ),
)


_FOLDED_NO_NUMPY = (
    "QKeras folds the batch norm into the weights with TensorFlow's rsqrt, whose vectorised kernel is a "
    "CPU-specific approximation (it differs from 1/sqrt in about 40 % of elements, by up to 3 units in the last "
    "place, on an AVX machine), so the folded weights cannot be reproduced bit for bit without TensorFlow"
)
_RECURRENT_NO_NUMPY = "recurrent layers are not read by the NumPy engine"


def _recurrent(kind: Kind, keras_class: str, activations: tuple[str, ...] = _RNN_ACTIVATIONS) -> LayerSpec:
    """A QKeras recurrent layer: its cell holds the weights; its activations act inside the recurrence."""
    twin = LayerTwin(keras_class, "recurrent")
    return LayerSpec(
        kind,
        _RNN,
        owner="cell",
        activations=activations,
        twin=twin,
        fuses_activation=False,
        no_numpy_form=_RECURRENT_NO_NUMPY,
    )


LAYERS: dict[str, LayerSpec] = {
    "QDense": LayerSpec(Kind.DENSE, _kernel_bias(), twin=LayerTwin("Dense")),
    "QConv1D": LayerSpec(Kind.CONV1D, _kernel_bias(), twin=LayerTwin("Conv1D")),
    "QConv2D": LayerSpec(Kind.CONV2D, _kernel_bias(), twin=LayerTwin("Conv2D"), refused=_MASK),
    "QConv2DTranspose": LayerSpec(Kind.CONV2D_TRANSPOSE, _kernel_bias(), twin=LayerTwin("Conv2DTranspose")),
    "QDepthwiseConv2D": LayerSpec(
        Kind.DEPTHWISE_CONV2D,
        _kernel_bias("depthwise_kernel", "depthwise_quantizer"),
        twin=LayerTwin("DepthwiseConv2D"),
    ),
    "QSeparableConv1D": LayerSpec(Kind.SEPARABLE_CONV1D, _SEPARABLE, twin=LayerTwin("SeparableConv1D")),
    "QSeparableConv2D": LayerSpec(Kind.SEPARABLE_CONV2D, _SEPARABLE, twin=LayerTwin("SeparableConv2D")),
    "QBatchNormalization": LayerSpec(
        Kind.BATCHNORM,
        _BATCHNORM,
        activations=(),
        twin=LayerTwin("BatchNormalization", "ignored"),
        fuses_activation=False,
    ),
    "QConv2DBatchnorm": LayerSpec(
        Kind.CONV2D,
        custom=folded("kernel", "kernel_quantizer"),
        state=_FOLDED_STATE,
        refused=_MASK,
        no_numpy_form=_FOLDED_NO_NUMPY,
        twin=LayerTwin("Conv2D", "separate", folded_batchnorm=True, suffix="_conv"),
    ),
    "QDepthwiseConv2DBatchnorm": LayerSpec(
        Kind.DEPTHWISE_CONV2D,
        custom=folded("depthwise_kernel", "depthwise_quantizer"),
        state=_FOLDED_STATE,
        no_numpy_form=_FOLDED_NO_NUMPY,
        twin=LayerTwin("DepthwiseConv2D", "separate", folded_batchnorm=True, suffix="_conv"),
    ),
    "QSimpleRNN": _recurrent(Kind.SIMPLE_RNN, "SimpleRNN", ("activation", "state_quantizer_internal")),
    "QLSTM": _recurrent(Kind.LSTM, "LSTM"),
    "QGRU": _recurrent(Kind.GRU, "GRU"),
    "QBidirectional": LayerSpec(
        Kind.BIDIRECTIONAL,
        custom=_bidirectional,
        custom_activations=_bidirectional_activations,
        twin=LayerTwin("Bidirectional", "wrapper"),
        fuses_activation=False,
        no_numpy_form=_RECURRENT_NO_NUMPY,
    ),
    "QActivation": LayerSpec(
        Kind.ACTIVATION, activations=("quantizer",), twin=LayerTwin("Activation", "layer"), fuses_activation=False
    ),
    "QAdaptiveActivation": LayerSpec(
        Kind.ACTIVATION,
        activations=("quantizer",),
        state=("step", "ema_min", "ema_max"),
        twin=LayerTwin("Activation", "layer"),
        fuses_activation=False,
        no_numpy_form="QAdaptiveActivation sets its quantizer's integer bits from moving statistics at run time",
    ),
    "QAveragePooling2D": LayerSpec(
        Kind.POOLING,
        custom=average_multiplier,
        activations=_POOLING_ACTIVATIONS,
        twin=LayerTwin("AveragePooling2D", "separate", suffix="_pool"),
    ),
    "QGlobalAveragePooling2D": LayerSpec(
        Kind.POOLING,
        custom=average_multiplier,
        activations=_POOLING_ACTIVATIONS,
        twin=LayerTwin("GlobalAveragePooling2D", "separate", suffix="_pool"),
    ),
}
"""Every supported QKeras layer class name -> its entry. Add a layer here (and a case to tests/zoo.py)."""


def _floats(kind: Kind, fuses_activation: bool = True) -> LayerSpec:
    return LayerSpec(kind, custom=plain, fuses_activation=fuses_activation)


KERAS_LAYERS: dict[str, LayerSpec] = {
    "Layer": _floats(Kind.OTHER),  # any other Keras layer: its weights as floats, no layout rule
    "RNN": _floats(Kind.OTHER, fuses_activation=False),
    "Conv1DTranspose": _floats(Kind.OTHER),  # subclasses with another weight layout than their base
    "Conv3DTranspose": _floats(Kind.OTHER),
    "Dense": _floats(Kind.DENSE),
    "Conv1D": _floats(Kind.CONV1D),
    "Conv2D": _floats(Kind.CONV2D),
    "Conv2DTranspose": _floats(Kind.CONV2D_TRANSPOSE),
    "DepthwiseConv2D": _floats(Kind.DEPTHWISE_CONV2D),
    "SeparableConv1D": _floats(Kind.SEPARABLE_CONV1D),
    "SeparableConv2D": _floats(Kind.SEPARABLE_CONV2D),
    "BatchNormalization": _floats(Kind.BATCHNORM, fuses_activation=False),
    "SimpleRNN": _floats(Kind.SIMPLE_RNN, fuses_activation=False),
    "LSTM": _floats(Kind.LSTM, fuses_activation=False),
    "GRU": _floats(Kind.GRU, fuses_activation=False),
    # Both directions' variables are named kernel, recurrent_kernel, bias: each direction is read by its own entry.
    # Its float twin: the same wrapper around the twins of the layers it wraps.
    "Bidirectional": LayerSpec(
        Kind.BIDIRECTIONAL,
        custom=_bidirectional,
        custom_activations=_bidirectional_activations,
        twin=LayerTwin("Bidirectional", "wrapper"),
        fuses_activation=False,
    ),
}
"""Plain Keras layer class name -> its entry; a layer takes the entry of the first class of its MRO found here."""

KERAS_WRAPPERS: dict[str, LayerSpec] = {
    "TimeDistributed": LayerSpec(Kind.OTHER, twin=LayerTwin("TimeDistributed", "wrapper"), fuses_activation=False),
}
"""Keras wrappers that extraction walks through (:mod:`qextract.reading.nested`): the layer they wrap is
read by its own entry, under the key ``wrapper/inner``, so their entry holds no tensors. It owns what is
known about the wrapper itself: its float twin, the same wrapper around the wrapped layer's twin."""

# A Keras RNN around a QKeras cell quantizes as the QKeras layer built on that cell.
_CELLS = {"QSimpleRNNCell": "QSimpleRNN", "QLSTMCell": "QLSTM", "QGRUCell": "QGRU"}


def class_spec(layer: Any) -> LayerSpec:
    """The entry of ``layer``'s class, refusing nothing: for reading a model's structure, not its weights.

    A registered QKeras class, a Keras RNN around a QKeras cell, else the
    plain Keras entry of the layer's nearest registered base class (an
    unregistered QKeras class gets its Keras base's).
    """
    name = type(layer).__name__
    if name in LAYERS:
        return LAYERS[name]
    cell = getattr(layer, "cell", None)
    if "RNN" in bases(layer) and type(cell).__name__ in _CELLS:
        return LAYERS[_CELLS[type(cell).__name__]]
    plain = {**KERAS_WRAPPERS, **KERAS_LAYERS}
    return next((plain[c.__name__] for c in type(layer).__mro__ if c.__name__ in plain), KERAS_LAYERS["Layer"])


def applied_quantizer(layer: Any) -> Any:
    """The quantizer an activation layer (QActivation, QAdaptiveActivation) applies, as its entry reads it."""
    return next((obj for _, obj in class_spec(layer).activation_objects(layer)), None)


def twin_for(class_name: str) -> LayerTwin | None:
    """The float twin the entry of layer class ``class_name`` declares (exactly that class, not a base).

    None: the class has no entry, or its entry has no twin (a plain Keras
    layer is its own twin: copied as it is).
    """
    spec = LAYERS.get(class_name) or KERAS_LAYERS.get(class_name) or KERAS_WRAPPERS.get(class_name)
    return None if spec is None else spec.twin


def _is_qkeras(layer: Any) -> bool:
    return type(layer).__module__.startswith("qkeras")


def spec_for(layer: Any) -> LayerSpec:
    """The entry for ``layer``, whose weights extraction reads; QKeras classes must be registered.

    A plain Keras layer that holds QKeras layers (other than through a
    Bidirectional or an RNN cell, read here, or a nested model or
    TimeDistributed, walked by :mod:`qextract.reading.nested`) is refused: reading its
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
        return KERAS_LAYERS["Bidirectional"]
    cell = getattr(layer, "cell", None)
    if "RNN" in classes and type(cell).__name__ in _CELLS:
        return LAYERS[_CELLS[type(cell).__name__]]
    if "Wrapper" in classes or "Model" in classes:
        raise UnsupportedError(
            f"layer '{layer.name}' is a {name}, a wrapper qextract cannot see through; it reads "
            "Bidirectional, TimeDistributed and models used as layers. Fix: unwrap the layer, or leave it out with "
            "layers=[...].",
            arguments=("layers",),
        )
    hidden = [inner for inner in layer._flatten_layers(include_self=False) if _is_qkeras(inner)]
    if hidden:
        inner = hidden[0]
        raise UnsupportedError(
            f"layer '{layer.name}' ({name}) holds QKeras layer '{inner.name}' ({type(inner).__name__}) inside a "
            "plain Keras layer, where qextract cannot read its quantizers: its weights would be exported unquantized. "
            "Fix: put the QKeras layer at model level (or in a nested model), or leave the layer out with "
            "layers=[...].",
            arguments=("layers",),
        )
    return class_spec(layer)
