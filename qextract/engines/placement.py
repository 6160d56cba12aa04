"""Where each layer of a stored model sits: its key, inputs, shapes and the Flatten feeding it, without Keras.

The Keras path reads these from the model's graph (:mod:`qextract.reading.nested`,
``extraction._geometry``); here they come from the configuration: the inbound
layers (a Sequential's previous layer), shapes derived from the model's input
(:mod:`.shapes`) and checked against the shape each layer was built with, and
the same walk back through layers that move no element to a Flatten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import NeedsQKeras
from ..reading.geometry import SETTINGS  # the settings the Keras path records, in its order
from ..reading.nested import PASS_THROUGH
from ..reading.stored import StoredLayer, StoredModel
from .shapes import Shape, output_shape

__all__ = ["StoredPlace", "geometry", "place"]


@dataclass(frozen=True)
class StoredPlace:
    """A stored layer in its model: ``key`` (its name), the shapes Keras would report, the Flatten shape feeding it.

    ``input_shape`` is None where Keras reports none (a merge of several inputs, an
    InputLayer); ``aliases`` is always empty (a flat model shares no nested layer).
    """

    key: str
    layer: StoredLayer
    inputs: tuple[str, ...]
    input_shape: Shape | None
    output_shape: Shape | None
    flatten: tuple[int, ...] | None
    aliases: tuple[str, ...] = ()


def place(model: StoredModel) -> list[StoredPlace]:
    """Every layer of ``model`` as ``model.layers`` lists it (a Sequential's InputLayer left out), placed.

    Raises :class:`NeedsQKeras` for a layer the NumPy engine cannot place (an unknown
    class, a shared layer, a shape that disagrees with the one the file records).
    """
    sequential = model.class_name == "Sequential"
    outputs: dict[str, Shape] = {}
    places: list[StoredPlace] = []
    previous: str | None = None
    for layer in model.layers:
        if layer.node_count > 1:
            raise NeedsQKeras(f"layer '{layer.name}' is called {layer.node_count} times (a shared layer)")
        if layer.class_name == "InputLayer":
            outputs[layer.name] = _input_shape(layer.config)
            previous = layer.name
            if not sequential:
                places.append(StoredPlace(layer.name, layer, (), None, None, None))
            continue
        inputs = layer.inbound if not sequential else ((previous,) if previous else ())
        if not inputs:
            if not sequential or "batch_input_shape" not in layer.config:
                raise NeedsQKeras(f"layer '{layer.name}' has no input the NumPy engine can find")
            shapes = [_input_shape(layer.config)]
        else:
            missing = [n for n in inputs if n not in outputs]
            if missing:
                raise NeedsQKeras(f"layer '{layer.name}' reads {', '.join(missing)} before they are computed")
            shapes = [outputs[n] for n in inputs]
        out = output_shape(layer.class_name, layer.config, shapes)
        single = shapes[0] if len(shapes) == 1 else None
        if layer.built_with is not None and single is not None and tuple(layer.built_with) != tuple(single):
            raise NeedsQKeras(
                f"layer '{layer.name}': the derived input shape {single} is not {layer.built_with}, the one it was "
                "built with"
            )
        outputs[layer.name] = out
        places.append(StoredPlace(layer.name, layer, tuple(inputs), single, out, None))
        previous = layer.name
    return [_with_flatten(p, places) for p in places]


def _input_shape(config: Mapping[str, Any]) -> Shape:
    shape = config.get("batch_input_shape", config.get("batch_shape"))
    if not isinstance(shape, list):
        raise NeedsQKeras("an input layer without its batch_input_shape")
    return tuple(shape)


def _with_flatten(p: StoredPlace, places: list[StoredPlace]) -> StoredPlace:
    """``p`` with the shape a channels_last Flatten flattens before it, looking through PASS_THROUGH layers."""
    by_name = {q.key: q for q in places}
    step = p
    while len(step.inputs) == 1 and step.inputs[0] in by_name:
        source = by_name[step.inputs[0]]
        name = source.layer.class_name
        if name == "Flatten":
            shape = source.input_shape
            if source.layer.config.get("data_format", "channels_last") != "channels_last" or shape is None:
                return p
            rest = shape[1:]
            if not rest or not all(isinstance(d, int) for d in rest):
                return p
            return StoredPlace(p.key, p.layer, p.inputs, p.input_shape, p.output_shape, tuple(rest))
        if name not in PASS_THROUGH:
            return p
        step = source
    return p


def geometry(p: StoredPlace, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the Keras path records for the layer (``extraction._geometry``): its settings, shapes and Flatten.

    ``without`` are configuration keys the layer hands to a sub-layer and does not hold itself (a
    folded layer's batch-norm ``epsilon`` and ``axis``), which the Keras path therefore does not see.
    """
    config = p.layer.config
    out: dict[str, Any] = {}
    if p.layer.class_name == "InputLayer":
        return out  # Keras reports an InputLayer's shapes as lists of shapes, which extraction leaves out
    for key in SETTINGS:
        value = None if key in without else config.get(key)
        if value is not None:  # Keras keeps a stored list as a tuple (of tuples): extraction lists the outer one
            out[key] = [tuple(v) if isinstance(v, list) else v for v in value] if isinstance(value, list) else value
    if p.flatten is not None:
        out["flatten_input_shape"] = list(p.flatten)
    for key, shape in (("input_shape", p.input_shape), ("output_shape", p.output_shape)):
        if shape is not None:
            out[key] = list(shape)
    rank = len(out.get("input_shape") or ())
    if isinstance(out.get("axis"), int) and rank:  # as the Keras path records Keras 3's -1: [3]
        out["axis"] = [out["axis"] % rank]
    return out
