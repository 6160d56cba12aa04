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
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

__all__ = ["Placed", "bases", "find_layer", "placed_layers", "select", "selected"]

Shape = tuple[Any, ...]


@dataclass(frozen=True)
class Placed:
    """A leaf layer and its key; shapes given where the layer has no graph node of its own."""

    key: str
    layer: Any
    input_shape: Shape | None = None
    output_shape: Shape | None = None


def bases(layer: Any) -> set[str]:
    """Names of the layer's class and all its base classes (no TensorFlow import needed)."""
    return {c.__name__ for c in type(layer).__mro__}


def _registered(layer: Any) -> bool:
    from .layers import LAYERS

    return type(layer).__name__ in LAYERS


def _is_container(layer: Any) -> bool:
    """A model used as a layer (Sequential, functional or subclassed): its layers are the leaves."""
    return not _registered(layer) and "Model" in bases(layer) and hasattr(layer, "layers")


def _is_time_distributed(layer: Any) -> bool:
    return not _registered(layer) and "TimeDistributed" in bases(layer)


def placed_layers(model: Any) -> list[Placed]:
    """Every leaf layer of ``model`` in model order, depth first, each once (a shared layer at its first place)."""
    out: list[Placed] = []
    seen: set[int] = set()
    for layer in model.layers:
        _walk(layer, "", None, out, seen)
    return out


def _walk(layer: Any, prefix: str, shapes: tuple[Shape, Shape] | None, out: list[Placed], seen: set[int]) -> None:
    if id(layer) in seen:  # the same layer object used twice: same weights, extracted once
        return
    seen.add(id(layer))
    key = prefix + layer.name
    if _is_container(layer):
        for child in layer.layers:
            _walk(child, key + "/", None, out, seen)
    elif _is_time_distributed(layer):
        _walk(layer.layer, key + "/", _per_step(layer, shapes), out, seen)
    else:
        out.append(Placed(key, layer, *(shapes or (None, None))))


def _per_step(wrapper: Any, shapes: tuple[Shape, Shape] | None) -> tuple[Shape, Shape] | None:
    """TimeDistributed runs its layer on (batch, *rest) slices of (batch, time, *rest)."""
    if shapes is None:
        try:
            shapes = (tuple(wrapper.input_shape), tuple(wrapper.output_shape))
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
    missing = [n for n in names if not any(_matches(p.key, n) for p in placed)]
    if missing:
        known = sorted({p.key.split("/")[0] for p in placed} | {p.key for p in placed})
        raise UsageError(
            f"model '{model_name}' has no layer named {', '.join(repr(n) for n in missing)}; "
            f"its layers are: {', '.join(known)}"
        )
    return [p for p in placed if any(_matches(p.key, n) for n in names)]


def _matches(key: str, name: str) -> bool:
    return key == name or key.startswith(name + "/")


def selected(key: str, names: Iterable[str] | None) -> bool:
    """True when a record ``key`` is among ``names`` (itself, or inside a named container)."""
    return names is None or any(_matches(key, n) for n in names)
