"""A layer's settings and shapes as the manifest records them (``geometry``), read alike under both Kerases.

The settings a hardware flow needs beside the weights (strides, padding, ...)
come from the layer or what it wraps; the shapes from its graph node, its
place in a wrapper, or the shape it was built with (:mod:`qextract.generation`
reads each the way the installed Keras keeps it).
"""

from __future__ import annotations

from typing import Any

from .._keras import generation
from .nested import Placed, flatten_feeding

__all__ = ["SETTINGS", "geometry"]

SETTINGS = (
    "strides",
    "padding",
    "dilation_rate",
    "kernel_size",
    "depth_multiplier",
    "data_format",
    "pool_size",
    "units",
    "filters",
    "epsilon",
    "axis",
    "use_bias",
    "reset_after",
    "output_padding",
)


def geometry(placed: Placed) -> dict[str, Any]:
    """The layer settings a hardware flow needs beside the weights, plus shapes.

    Settings a wrapper does not have itself are read from what it wraps (a
    Bidirectional's forward layer, an RNN's cell). Shapes come from the
    layer's graph node, else from its place (per time step inside a
    TimeDistributed), else from the shape it was built with.
    """
    layer = placed.layer
    owners = [o for o in (layer, getattr(layer, "forward_layer", None), getattr(layer, "cell", None)) if o is not None]
    config: dict[str, Any] = {}
    for key in SETTINGS:
        value = next((v for o in owners if (v := getattr(o, key, None)) is not None), None)
        if value is not None:
            config[key] = list(value) if isinstance(value, tuple) else value
    flatten = flatten_feeding(placed)
    if flatten is not None:
        config["flatten_input_shape"] = list(flatten)
    shapes = {"input_shape": placed.input_shape, "output_shape": placed.output_shape}
    # An input layer's shape is the model's input (tf-keras gives it as a list, which is not recorded; so neither
    # is Keras 3's tuple): the layers it feeds record it.
    for key in () if type(layer).__name__ == "InputLayer" else ("input_shape", "output_shape"):
        shape = shapes[key] or _shape(layer, key)
        if isinstance(shape, tuple):
            config[key] = list(shape)
    rank = len(config.get("input_shape") or ())
    if isinstance(config.get("axis"), int) and rank:
        # Keras 3 keeps a batch norm's axis as given (-1); tf-keras makes it a list of positive axes ([3]).
        config["axis"] = [config["axis"] % rank]
    return config


def _shape(layer: Any, key: str) -> Any:
    """The layer's input or output shape from its graph node; without any node, from the shape it was built with."""
    gen = generation()
    try:
        return gen.input_shape(layer) if key == "input_shape" else gen.output_shape(layer)
    except (AttributeError, RuntimeError):
        if getattr(layer, "_inbound_nodes", None):  # several nodes of different shapes: no one shape
            return None
    built = gen.built_input_shape(layer)
    if built is None:  # never built with a shape
        return None
    try:
        shape = tuple(built.as_list() if hasattr(built, "as_list") else built)
        if key == "output_shape":
            out = layer.compute_output_shape(shape)
            shape = tuple(out.as_list() if hasattr(out, "as_list") else out)
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return None
    return shape if all(d is None or isinstance(d, int) for d in shape) else None
