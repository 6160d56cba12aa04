"""Layers inside layers: nested models and wrappers, each named by its path in the model.

``model.layers`` lists only the top level. Weights also live deeper: in a
Sequential or functional Model used as a layer, in ``TimeDistributed(X)``, in
a nested model inside a TimeDistributed. Walking only the top level loses
them, or (reading a container's ``weights`` as if it were one layer) names
every inner ``kernel`` alike and keeps only the last. Here the model is
walked down to its *leaves*, the layers qextract extracts as a whole, and each
leaf gets a key: the layer names on its path joined by ``/``
(``encoder/conv1``, ``td/q_dense``, ``a/b/c``).

A Bidirectional (Keras's or QKeras's) is one leaf: its two directions are
tensors ``forward/...`` and ``backward/...`` of one record, as the layout
rules for recurrent kernels expect. A layer inside a TimeDistributed has no
graph node of its own, so its per-time-step input and output shapes are
derived from the wrapper's and carried with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .._keras import generation
from ..errors import UsageError

__all__ = ["PASS_THROUGH", "Placed", "bases", "find_layer", "flatten_feeding", "placed_layers", "select", "selected"]

Shape = tuple[Any, ...]


@dataclass(frozen=True)
class Placed:
    """A leaf layer and its key; shapes given where the layer has no graph node of its own.

    ``outer`` holds the nested models and wrappers around the leaf, outermost
    first. ``aliases`` are the keys of its other places, where a layer (or a
    nested model holding it) is shared: it is extracted once, under ``key``.
    """

    key: str
    layer: Any
    input_shape: Shape | None = None
    output_shape: Shape | None = None
    outer: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()


def bases(layer: Any) -> set[str]:
    """Names of the layer's class and all its base classes (no TensorFlow import needed)."""
    return {c.__name__ for c in type(layer).__mro__}


def _registered(layer: Any) -> bool:
    from ..layers import LAYERS

    return type(layer).__name__ in LAYERS


def _is_container(layer: Any) -> bool:
    """A model used as a layer (Sequential, functional or subclassed): its layers are the leaves."""
    return not _registered(layer) and "Model" in bases(layer) and hasattr(layer, "layers")


def _is_time_distributed(layer: Any) -> bool:
    return not _registered(layer) and "TimeDistributed" in bases(layer)


def placed_layers(model: Any) -> list[Placed]:
    """Every leaf layer of ``model`` in model order, depth first, each once (a shared layer at its first place)."""
    out: list[Placed] = []
    seen: dict[int, str] = {}
    again: dict[str, list[str]] = {}  # first key of a shared layer -> its other keys
    for layer in model.layers:
        _walk(layer, "", None, out, seen, (), again)
    if not again:
        return out
    return [replace(p, aliases=tuple(_aliases(p.key, again))) for p in out]


def _aliases(key: str, again: dict[str, list[str]]) -> list[str]:
    return [alt + key[len(first) :] for first, alts in again.items() if _matches(key, first) for alt in alts]


def _walk(
    layer: Any,
    prefix: str,
    shapes: tuple[Shape, Shape] | None,
    out: list[Placed],
    seen: dict[int, str],
    outer: tuple[Any, ...],
    again: dict[str, list[str]],
) -> None:
    key = prefix + layer.name
    if id(layer) in seen:  # the same layer object used twice: same weights, extracted once
        if key != seen[id(layer)]:
            again.setdefault(seen[id(layer)], []).append(key)
        return
    seen[id(layer)] = key
    if _is_container(layer):
        for child in layer.layers:
            _walk(child, key + "/", None, out, seen, (*outer, layer), again)
    elif _is_time_distributed(layer):
        _walk(layer.layer, key + "/", _per_step(layer, shapes), out, seen, (*outer, layer), again)
    else:
        input_shape, output_shape = shapes or (None, None)
        out.append(Placed(key, layer, input_shape, output_shape, outer=outer))


def _per_step(wrapper: Any, shapes: tuple[Shape, Shape] | None) -> tuple[Shape, Shape] | None:
    """TimeDistributed runs its layer on (batch, *rest) slices of (batch, time, *rest)."""
    if shapes is None:
        try:
            gen = generation()
            shapes = (tuple(gen.input_shape(wrapper)), tuple(gen.output_shape(wrapper)))
        except (AttributeError, RuntimeError, TypeError):
            return None
    inp, outp = shapes
    if len(inp) < 2 or len(outp) < 2:
        return None
    return (inp[0], *inp[2:]), (outp[0], *outp[2:])


def find_layer(model: Any, key: str) -> Any:
    """The Keras layer an extraction key names: ``conv1``, ``encoder/conv1``, ``td/q_dense``.

    Raises ValueError (as ``model.get_layer`` does) when no leaf has that key.
    """
    for placed in placed_layers(model):
        if placed.key == key:
            return placed.layer
    raise ValueError(f"no layer with key '{key}' in model '{model.name}'")


def select(placed: list[Placed], names: Iterable[str] | None, model_name: str = "model") -> list[Placed]:
    """The leaves ``names`` ask for: a leaf's key, or a container's name or path (all leaves inside).

    Every name must match something; the error lists what does.
    """
    if names is None:
        return placed
    names = list(names)
    missing = [n for n in names if not any(_matches(k, n) for p in placed for k in (p.key, *p.aliases))]
    if missing:
        known = sorted({p.key.split("/")[0] for p in placed} | {p.key for p in placed})
        raise UsageError(
            f"model '{model_name}' has no layer named {', '.join(repr(n) for n in missing)}; "
            f"its layers are: {', '.join(known)}"
        )
    return [p for p in placed if any(_matches(k, n) for n in names for k in (p.key, *p.aliases))]


def _matches(key: str, name: str) -> bool:
    return key == name or key.startswith(name + "/")


def selected(key: str, names: Iterable[str] | None) -> bool:
    """True when a record ``key`` is among ``names`` (itself, or inside a named container)."""
    return names is None or any(_matches(key, n) for n in names)


# Layers between Flatten and a Dense that change no element's position.
PASS_THROUGH = frozenset(
    {
        "Dropout",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
        "Activation",
        "QActivation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "PReLU",
    }
)

_Step = tuple[Any, tuple[Any, ...]]  # a layer and the nested models / wrappers around it, outermost first


def flatten_feeding(placed: Placed) -> tuple[int, ...] | None:
    """The shape a channels_last Flatten flattens before the leaf, if a Flatten feeds it; else None.

    The leaf's rows follow that Flatten's order whatever lies between: layers
    that move no element (Dropout, activations), the boundary of a nested
    model (its input is what feeds the model; a model's output is its last
    layer's) and TimeDistributed (a wrapped Flatten flattens each time step).
    Export (the flatten order of an oihw kernel) and import (its inverse)
    both ask here, so they agree.
    """
    step = _input_of(placed.layer, placed.outer)
    while step is not None:
        layer, outer = step
        inner = layer.layer if _is_time_distributed(layer) else layer
        name = type(inner).__name__
        if name == "Flatten":
            return _flattened_shape(layer, inner, per_step=inner is not layer)
        if name not in PASS_THROUGH:
            return None
        step = _input_of(layer, outer)
    return None


def _flattened_shape(layer: Any, flatten: Any, *, per_step: bool) -> tuple[int, ...] | None:
    if getattr(flatten, "data_format", "channels_last") != "channels_last":
        return None
    try:
        shape = tuple(generation().input_shape(layer))
    except (AttributeError, RuntimeError, TypeError):  # no node, or nodes of several shapes
        return None
    shape = shape[2:] if per_step else shape[1:]
    return tuple(int(d) for d in shape) if shape and all(isinstance(d, int) for d in shape) else None


def _input_of(layer: Any, outer: tuple[Any, ...]) -> _Step | None:
    """The layer whose output ``layer`` reads (None: several, the model's input, or unknown)."""
    nodes = generation().inbound_layers(layer)
    if not nodes:  # inside a TimeDistributed, a layer has no node of its own: the wrapper's input is its input
        if outer and _is_time_distributed(outer[-1]) and outer[-1].layer is layer:
            return _input_of(outer[-1], outer[:-1])
        return None
    if len(nodes[0]) != 1:
        return None
    return _output_of(nodes[0][0], outer)


def _output_of(layer: Any, outer: tuple[Any, ...]) -> _Step | None:
    """The layer that really produces ``layer``'s output, looking through nested models' inputs and outputs."""
    if type(layer).__name__ == "InputLayer":
        if outer and _is_container(outer[-1]) and len(getattr(outer[-1], "inputs", None) or []) == 1:
            return _input_of(outer[-1], outer[:-1])
        return None
    if _is_container(layer):
        outputs = getattr(layer, "outputs", None) or []
        producer = generation().producer(outputs[0]) if len(outputs) == 1 else None
        if producer is None:
            return None
        return _output_of(producer, (*outer, layer))
    return layer, outer
