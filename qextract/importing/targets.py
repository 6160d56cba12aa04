"""The Keras side of an import: every layer with weights, its tensors, shapes and what feeds it.

A :class:`Target` names the tensors qextract would export for a layer (the
same names: ``kernel``, ``depthwise_kernel``, ``gamma``, ``forward/kernel``,
...) and where each sits in ``layer.get_weights()``, so that a source tensor
found by name can be put in its place. Layers inside nested models and
wrappers have the keys extraction gives them (``outer/inner``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._keras import generation
from ..kinds import Kind
from ..layers import spec_for
from ..reading.nested import PASS_THROUGH, Placed, flatten_feeding, placed_layers

__all__ = ["PASS_THROUGH", "Target", "inbound_layer", "targets_of"]


@dataclass(frozen=True, eq=False)
class Target:
    """One Keras layer that can receive weights.

    ``tensors`` are the names qextract exports for it, in its order;
    ``index[name]`` is the position in ``layer.get_weights()``; ``derived``
    names exported tensors that are not variables (a pooling layer's
    ``average_multiplier``), ``folded_tensors`` those computed from several
    (a folded conv-batchnorm kernel), which no source can be assigned to;
    ``flatten_shape`` is the (H, W, C) a Dense fed by Flatten receives, else None.
    """

    path: str
    layer: Any
    class_name: str
    kind: Kind
    tensors: tuple[str, ...]
    index: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    derived: tuple[str, ...] = ()
    folded_tensors: tuple[str, ...] = ()
    flatten_shape: tuple[int, ...] | None = None

    @property
    def folded(self) -> bool:
        return bool(self.folded_tensors)

    @property
    def where(self) -> str:
        return f"layer '{self.path}' ({self.class_name})"


def targets_of(model: Any) -> list[Target]:
    """Every leaf layer of ``model`` with weights (or exported derived tensors), in model order.

    Keyed as extraction keys it.
    """
    out = []
    for placed in placed_layers(model):
        target = _target(placed)
        if target is not None:
            out.append(target)
    return out


def _target(placed: Placed) -> Target | None:
    """Each tensor's variable, found by identity: a tensor read from one variable can be assigned,
    one read from several (a folded kernel) cannot, one read from none is derived."""
    layer, path = placed.layer, placed.key
    sources = spec_for(layer).sources(layer)  # names an unsupported QKeras class
    if not sources:
        return None
    position = {id(v): i for i, v in enumerate(layer.weights)}
    index, shapes, derived, folded = {}, {}, [], []
    for s in sources:
        if len(s.variables) == 1 and id(s.variables[0]) in position:
            index[s.name] = position[id(s.variables[0])]
        elif s.variables:
            folded.append(s.name)
        else:
            derived.append(s.name)
        shapes[s.name] = tuple(int(d) for d in np.shape(s.raw))
    kind = spec_for(layer).kind
    return Target(
        path=path,
        layer=layer,
        class_name=type(layer).__name__,
        kind=kind,
        tensors=tuple(s.name for s in sources if s.name not in derived),
        index=index,
        shapes=shapes,
        derived=tuple(derived),
        folded_tensors=tuple(folded),
        flatten_shape=_flattened(placed) if kind is Kind.DENSE else None,
    )


def inbound_layer(layer: Any) -> Any | None:
    """The one layer feeding ``layer`` (None for several, none, or a layer called more than once)."""
    nodes = generation().inbound_layers(layer)
    if len(nodes) != 1:
        return None
    return nodes[0][0] if len(nodes[0]) == 1 else None


def _flattened(placed: Placed) -> tuple[int, ...] | None:
    """The shape a Flatten flattens before the layer (see :func:`qextract.nested.flatten_feeding`).

    Only shapes of rank 2 or more ((L, C), (H, W, C), ...) count: flattening a
    vector changes nothing.
    """
    shape = flatten_feeding(placed)
    return shape if shape is not None and len(shape) >= 2 else None
