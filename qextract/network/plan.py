"""From a model to the steps that simulate it: graph and extraction read once, with TensorFlow, then never again.

The plan holds one :class:`~.step.Step` per layer, in model order, each with
the names of the layers feeding it, the integer weights from
:func:`qextract.extract` and (for a batch norm) the float32 constants the
layer computes with. Every layer that cannot be simulated exactly is refused
here, before any data is read, all of them in one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._keras import generation, keras, quiet_config, require_keras_model
from ..errors import QExtractError, UnsupportedError, UsageError
from ..reading.extraction import extract
from ..reading.nested import bases
from ..tensor import Extraction
from .contraction import Contraction
from .input_format import InputFormat
from .normalization import BatchNorm, batchnorm_constants
from .pooling import Pooling
from .shaping import Identity, Merge, Reshape
from .signal import is_po2
from .step import Step, check_activation
from .weights import integer_tensor

_CONTRACTIONS = {
    "QDense": ("dense", "kernel"),
    "Dense": ("dense", "kernel"),
    "QConv1D": ("conv", "kernel"),
    "Conv1D": ("conv", "kernel"),
    "QConv2D": ("conv", "kernel"),
    "Conv2D": ("conv", "kernel"),
    "QConv2DBatchnorm": ("conv", "kernel"),
    "QDepthwiseConv2D": ("depthwise", "depthwise_kernel"),
    "DepthwiseConv2D": ("depthwise", "depthwise_kernel"),
    "QDepthwiseConv2DBatchnorm": ("depthwise", "depthwise_kernel"),
    "QSeparableConv1D": ("separable", "depthwise_kernel"),
    "QSeparableConv2D": ("separable", "depthwise_kernel"),
    "SeparableConv1D": ("separable", "depthwise_kernel"),
    "SeparableConv2D": ("separable", "depthwise_kernel"),
}
_POOLING = {
    "MaxPooling1D": ("max", False),
    "MaxPooling2D": ("max", False),
    "AveragePooling1D": ("average", False),
    "AveragePooling2D": ("average", False),
    "QAveragePooling2D": ("average", False),
    "GlobalMaxPooling1D": ("max", True),
    "GlobalMaxPooling2D": ("max", True),
    "GlobalAveragePooling1D": ("average", True),
    "GlobalAveragePooling2D": ("average", True),
    "QGlobalAveragePooling2D": ("average", True),
}
_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout")
SUPPORTED = sorted(
    {*_CONTRACTIONS, *_POOLING, *_IDENTITY}
    | {"QBatchNormalization", "BatchNormalization", "QActivation", "Activation", "ReLU", "Softmax"}
    | {"Flatten", "Reshape", "Add", "Concatenate"}
)
"""Every layer class :func:`~.simulation.simulate` computes."""


@dataclass
class Plan:
    """The model as steps: its input's name and per-sample shape, and how the input is put on a grid."""

    model_name: str
    input_name: str
    input_shape: tuple[int | None, ...]
    steps: list[Step]
    input_format: InputFormat | None
    shapes: dict[str, tuple[int | None, ...]]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def graph(model: Any) -> tuple[str, list[tuple[Any, tuple[str, ...]]]]:
    """The model input's name and every layer with the names of the layers it reads, in model order."""
    if not getattr(model, "inputs", None):
        raise UnsupportedError(
            f"model '{model.name}' is not built (no inputs); give it an Input layer or call it on data first"
        )
    if len(model.inputs) != 1:
        raise UnsupportedError(f"model '{model.name}' has {len(model.inputs)} inputs; simulate takes one")
    gen = generation()
    source = gen.producer(model.inputs[0])
    input_name = str(getattr(source, "name", None) or "input")  # the InputLayer's name
    if isinstance(model, keras().Sequential):
        out: list[tuple[Any, tuple[str, ...]]] = []
        previous = input_name
        for layer in model.layers:
            out.append((layer, (previous,)))
            previous = layer.name
        return input_name, out
    config = gen.legacy_config(quiet_config(model))  # tf-keras's form: [layer, node, tensor, kwargs] per input
    inputs = {name for name, *_ in config["input_layers"]}
    out = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        name, nodes = entry["name"], entry.get("inbound_nodes", [])
        if len(nodes) != 1:
            raise UnsupportedError(
                f"layer '{name}' is called {len(nodes)} times in model '{model.name}'; "
                "simulate takes layers called once"
            )
        inbound = []
        for item in nodes[0]:
            src, node_index, tensor_index = item[0], item[1], item[2]
            if node_index != 0 or tensor_index != 0 or (len(item) > 3 and gen.passed_arguments(item[3])):
                raise UnsupportedError(
                    f"layer '{name}' reads output {tensor_index} of call {node_index} of layer '{src}' "
                    f"(or is called with extra arguments); simulate takes single-output layers called once"
                )
            inbound.append(input_name if src in inputs else src)
        out.append((model.get_layer(name), tuple(inbound)))
    return input_name, out


def build(model: Any, input_format: Any = None) -> Plan:
    """The simulation plan of ``model`` (read with TensorFlow, once); refuses every unsupported layer by name."""
    require_keras_model(model)
    fmt = InputFormat.parse(input_format)
    input_name, nodes = graph(model)
    refused = [r for layer, _ in nodes if (r := _refusal(layer))]
    if refused:
        raise UnsupportedError(_refusal_message(model.name, refused))
    ex = extract(model)
    steps, problems = [], []
    for layer, inbound in nodes:
        try:
            steps.append(_step(layer, inbound, ex))
        except UnsupportedError as e:
            problems.append(str(e))
    if problems:
        raise UnsupportedError(_refusal_message(model.name, problems))
    if fmt is None and steps and isinstance(steps[0], Identity) and steps[0].inbound == (input_name,):
        first = steps[0]
        if first.quantizer is not None:  # the model's first activation quantizer puts the input on its grid
            fmt = InputFormat.from_quantizer(first.quantizer, f"layer '{first.name}' (the model's first quantizer)")
    output_shapes = {layer.name: generation().output_shape(layer) for layer, _ in nodes}
    shapes = {name: tuple(shape)[1:] for name, shape in output_shapes.items() if not isinstance(shape, list)}
    input_shape = tuple(model.inputs[0].shape)[1:]
    return Plan(model.name, input_name, input_shape, steps, fmt, shapes)


def _refusal(layer: Any) -> str | None:
    cls = type(layer).__name__
    if cls in SUPPORTED:
        return None
    if "Model" in bases(layer):
        return f"layer '{layer.name}' is a nested model ({cls}): simulate reads one level of layers"
    return f"layer '{layer.name}' ({cls}) is not simulated"


def _refusal_message(model: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return (
        f"model '{model}' cannot be simulated exactly: {shown}. Simulated layers: {', '.join(SUPPORTED)}; "
        "activation quantizers with an integer form "
        "(quantized_bits with a fixed alpha, quantized_relu, binary, ternary)."
    )


def _channels_last(layer: Any, where: str) -> None:
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        raise UnsupportedError(f"{where}: data_format='{fmt}' is not simulated (channels_last only)")


def _fused(layer: Any, where: str) -> Any:
    act = getattr(layer, "activation", None)
    check_activation(act, where)
    _try_quantizer(act, where)
    return act


def _try_quantizer(q: Any, where: str) -> None:
    """Run the quantizer once on a tiny grid, so that a quantizer without an integer form is refused now."""
    from ..quantizers import is_quantizer
    from .quantize import quantize
    from .signal import Signal

    if q is None or not is_quantizer(q):
        return
    import numpy as np

    quantize(q, Signal(np.zeros((1, 1), np.int64), np.ones(())), where)


def _step(layer: Any, inbound: tuple[str, ...], ex: Extraction) -> Step:
    cls = type(layer).__name__
    where = f"layer '{layer.name}' ({cls})"
    base = {"name": layer.name, "class_name": cls, "inbound": inbound}
    if cls in _CONTRACTIONS:
        _channels_last(layer, where)
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedError(f"{where}: groups={layer.groups} is not simulated")
        kind, kernel_name = _CONTRACTIONS[cls]
        record = ex[layer.name]
        tensors = record.tensors
        pointwise = tensors.get("pointwise_kernel")
        bias = tensors.get("bias")
        po2 = all(is_po2(t.scale) for t in (tensors[kernel_name], pointwise, bias) if t is not None and t.quantized)
        return Contraction(
            **base,
            activation=_fused(layer, where),
            kind=kind,
            kernel=integer_tensor(tensors[kernel_name]),
            pointwise=integer_tensor(pointwise) if pointwise is not None else None,
            bias=integer_tensor(bias) if bias is not None else None,
            strides=tuple(getattr(layer, "strides", ()) or ()),
            dilation=tuple(getattr(layer, "dilation_rate", ()) or ()),
            padding=str(getattr(layer, "padding", "valid")),
            weights_po2=po2,
        )
    if cls in ("QBatchNormalization", "BatchNormalization"):
        inv, offset = batchnorm_constants(layer, ex[layer.name], where)
        return BatchNorm(**base, inv=inv, offset=offset)
    if cls in _POOLING:
        _channels_last(layer, where)
        mode, is_global = _POOLING[cls]
        multiplier = ex[layer.name].tensors.get("average_multiplier") if cls.startswith("Q") else None
        return Pooling(
            **base,
            activation=_fused(layer, where) if cls.startswith("Q") else None,
            mode=mode,
            pool=None if is_global else tuple(layer.pool_size),
            strides=() if is_global else tuple(layer.strides),
            padding="valid" if is_global else str(layer.padding),
            keepdims=bool(getattr(layer, "keepdims", False)),
            multiplier=integer_tensor(multiplier) if multiplier is not None else None,
            multiplier_po2=multiplier is None or is_po2(multiplier.scale),
        )
    if cls in _IDENTITY:
        return Identity(**base)
    if cls in ("QActivation", "Activation"):
        act = generation().attribute(layer, "quantizer") if cls == "QActivation" else layer.activation
        check_activation(act, where)
        _try_quantizer(act, where)
        return Identity(**base, activation=act)
    if cls == "ReLU":
        if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
            raise UnsupportedError(f"{where}: ReLU with max_value, negative_slope or threshold is not simulated")
        return Identity(**base, activation=keras().activations.relu)
    if cls == "Softmax":
        if list(getattr(layer, "axis", [-1]) if isinstance(layer.axis, list) else [layer.axis]) not in ([-1],):
            raise UnsupportedError(f"{where}: softmax over axis {layer.axis} is not simulated (last axis only)")
        return Identity(**base, activation=keras().activations.softmax)
    if cls == "Flatten":
        _channels_last(layer, where)
        return Reshape(**base)
    if cls == "Reshape":
        return Reshape(**base, target=tuple(layer.target_shape))
    if cls in ("Add", "Concatenate"):
        return Merge(**base, mode=cls.lower(), axis=int(getattr(layer, "axis", -1)))
    raise UnsupportedError(f"{where} is not simulated")


def check_layers(plan: Plan, layers: list[str] | None) -> set[str]:
    """The layer names to keep results of; a UsageError naming unknown ones."""
    names = [s.name for s in plan.steps]
    if layers is None:
        return set(names)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise UsageError(
            f"model '{plan.model_name}' has no layer(s) {', '.join(map(repr, unknown))}; layers: {', '.join(names)}"
        )
    return set(layers)


__all__ = ["SUPPORTED", "Plan", "QExtractError", "build", "check_layers", "graph"]
