"""The Keras side of an import: every layer with weights, its tensors, shapes and what feeds it.

A :class:`Target` names the tensors qextract would export for a layer (the
same names: ``kernel``, ``depthwise_kernel``, ``gamma``, ``forward/kernel``,
...) and where each sits in ``layer.get_weights()``, so that a source tensor
found by name can be put in its place. Nested models give paths ``outer/inner``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._keras import tf
from ..layers import spec_for

# Layers between Flatten and a Dense that change no element's position.
PASS_THROUGH = frozenset({"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "Activation", "QActivation", "ReLU", "LeakyReLU", "ELU", "PReLU"})
FOLDED = frozenset({"QConv2DBatchnorm", "QDepthwiseConv2DBatchnorm"})


@dataclass(frozen=True, eq=False)
class Target:
    """One Keras layer that can receive weights.

    ``tensors`` are the names qextract exports for it, in its order;
    ``index[name]`` is the position in ``layer.get_weights()``; ``derived``
    names exported tensors that are not variables (a pooling layer's
    ``average_multiplier``); ``flatten_shape`` is the (H, W, C) a Dense fed by
    Flatten receives, else None.
    """

    path: str
    layer: Any
    class_name: str
    kind: str
    tensors: tuple[str, ...]
    index: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    derived: tuple[str, ...] = ()
    flatten_shape: tuple[int, ...] | None = None

    @property
    def folded(self) -> bool:
        return self.class_name in FOLDED

    @property
    def where(self) -> str:
        return f"layer '{self.path}' ({self.class_name})"


def targets_of(model: Any) -> list[Target]:
    """Every layer of ``model`` with weights (or exported derived tensors), in model order."""
    out: list[Target] = []
    _walk(model, "", out)
    return out


def _walk(model: Any, prefix: str, out: list[Target]) -> None:
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, tf().keras.Model):
            _walk(layer, f"{path}/", out)
            continue
        target = _target(layer, path)
        if target is not None:
            out.append(target)


def _short_names(layer: Any) -> list[str]:
    """Each variable's name as qextract's tensors name it (``forward/`` / ``backward/`` inside Bidirectional)."""
    names = []
    forward = {id(v) for v in getattr(getattr(layer, "forward_layer", None), "weights", [])}
    backward = {id(v) for v in getattr(getattr(layer, "backward_layer", None), "weights", [])}
    for var in layer.weights:
        short = var.name.split("/")[-1].split(":")[0]
        if id(var) in forward:
            short = f"forward/{short}"
        elif id(var) in backward:
            short = f"backward/{short}"
        names.append(short)
    return names


def _target(layer: Any, path: str) -> Target | None:
    spec = spec_for(layer)  # names an unsupported QKeras class
    variables = _short_names(layer)
    if type(layer).__name__ in FOLDED:  # exported as its folded kernel and bias
        names = ["depthwise_kernel" if "depthwise_kernel" in variables else "kernel", "bias"]
    elif type(layer).__module__.startswith("qkeras"):
        names = [s.name for s in spec.sources(layer)]
    else:  # plain Keras: every variable, named as qextract names them
        names = variables
    if not names:
        return None
    index = {name: variables.index(name) for name in names if name in variables}
    shapes = {name: tuple(int(d) for d in layer.weights[i].shape) for name, i in index.items()}
    derived = tuple(n for n in names if n not in index)
    return Target(
        path=path,
        layer=layer,
        class_name=type(layer).__name__,
        kind=spec.kind,
        tensors=tuple(n for n in names if n in index),
        index=index,
        shapes=shapes,
        derived=derived,
        flatten_shape=flatten_feeding(layer) if spec.kind == "dense" else None,
    )


def inbound_layer(layer: Any) -> Any | None:
    """The one layer feeding ``layer`` (None for several, none, or a layer called more than once)."""
    nodes = getattr(layer, "inbound_nodes", [])
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    if isinstance(inbound, list):
        return inbound[0] if len(inbound) == 1 else None
    return inbound


def flatten_feeding(layer: Any) -> tuple[int, ...] | None:
    """The shape a channels_last Flatten flattens before ``layer`` (through Dropout/activations), if any.

    Only shapes of rank 2 or more ((L, C), (H, W, C), ...) count: flattening a
    vector changes nothing.
    """
    source = inbound_layer(layer)
    while source is not None and type(source).__name__ in PASS_THROUGH:
        source = inbound_layer(source)
    if source is None or type(source).__name__ != "Flatten" or getattr(source, "data_format", "channels_last") != "channels_last":
        return None
    shape = source.input_shape
    if not isinstance(shape, tuple) or None in shape[1:] or len(shape) < 3:
        return None
    return tuple(int(d) for d in shape[1:])
