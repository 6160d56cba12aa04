"""Model surgery on the functional configuration: a new model with a few layers changed.

``load_weights(..., pad_explicitly=True)`` inserts ``ZeroPadding2D`` layers and
``fully_convolutional`` turns a Flatten -> Dense head into convolutions. Both
edit the model's functional configuration (a Sequential model is converted to
one first, so branches and merges of functional models survive) and rebuild
it; the weights of unchanged layers are copied by layer name. The user's
model object is never touched.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import _keras
from .._keras import custom_objects, quiet_keras
from ..errors import UnsupportedError

Config = dict[str, Any]


@contextmanager
def _quiet() -> Iterator[None]:
    """QKeras layers serialize their quantizers through ``keras.constraints.serialize``, which warns each time."""
    with quiet_keras(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*keras\.constraints\.serialize", category=UserWarning)
        yield


def functional_config(model: Any) -> Config:
    """A deep copy of ``model``'s configuration in functional form (Sequential converted)."""
    with _quiet():
        config = copy.deepcopy(_keras.model_config(model))
    if "input_layers" in config:
        return config
    layers = config["layers"]
    entries: list[Config] = []
    if not layers or layers[0]["class_name"] != "InputLayer":
        shape = (
            layers[0]["config"].get("batch_input_shape") if layers else None
        ) or _keras.generation().built_input_shape(model)
        if shape is None:
            raise UnsupportedError(f"model '{model.name}' has no known input shape; build it (call it once) first")
        layers = [
            {"class_name": "InputLayer", "config": {"batch_input_shape": list(shape), "name": f"{model.name}_input"}},
            *layers,
        ]
    previous = None
    for layer in layers:
        entry = {**layer, "name": layer["config"]["name"]}
        entry["inbound_nodes"] = [] if previous is None else [[[previous, 0, 0, {}]]]
        entries.append(entry)
        previous = entry["name"]
    return {
        "name": config["name"],
        "layers": entries,
        "input_layers": [[entries[0]["name"], 0, 0]],
        "output_layers": [[previous, 0, 0]],
    }


def entry(config: Config, name: str) -> Config:
    return next(e for e in config["layers"] if e["name"] == name)


def single_inbound(config: Config, name: str) -> list[Any]:
    """The one ``[layer, node, tensor, kwargs]`` reference feeding layer ``name`` (a layer used once)."""
    nodes = entry(config, name)["inbound_nodes"]
    if len(nodes) != 1 or len(nodes[0]) != 1:
        raise UnsupportedError(
            f"layer '{name}' is shared or has several inputs; qextract changes only layers called once on one input"
        )
    return nodes[0][0]


def consumers(config: Config, name: str) -> list[str]:
    """Names of the layers fed by layer ``name``."""
    return [e["name"] for e in config["layers"] for node in e["inbound_nodes"] for ref in node if ref[0] == name]


def is_output(config: Config, name: str) -> bool:
    return any(ref[0] == name for ref in config["output_layers"])


def insert_before(config: Config, name: str, new: Config) -> None:
    """Put layer entry ``new`` (class_name, config) between layer ``name`` and its input."""
    ref = single_inbound(config, name)
    new_name = new["config"]["name"]
    index = config["layers"].index(entry(config, name))
    config["layers"].insert(index, {**new, "name": new_name, "inbound_nodes": [[list(ref)]]})
    entry(config, name)["inbound_nodes"] = [[[new_name, 0, 0, {}]]]


def remove(config: Config, name: str) -> None:
    """Drop layer ``name`` (one input, used once), feeding its consumers with its input."""
    ref = single_inbound(config, name)
    for e in config["layers"]:
        e["inbound_nodes"] = [[list(ref) if r[0] == name else r for r in node] for node in e["inbound_nodes"]]
    config["output_layers"] = [[ref[0], ref[1], ref[2]] if r[0] == name else r for r in config["output_layers"]]
    config["layers"].remove(entry(config, name))


def unique_name(config: Config, wanted: str) -> str:
    taken = {e["name"] for e in config["layers"]}
    name, i = wanted, 1
    while name in taken:
        name, i = f"{wanted}_{i}", i + 1
    return name


def rebuild(config: Config, name: str) -> Any:
    """A new model from ``config`` (QKeras classes known), named ``name``."""
    keras = _keras.keras()
    config = {**config, "name": name}
    with _quiet(), keras.utils.custom_object_scope(custom_objects()):
        return keras.Model.from_config(config)


def copy_weights(source: Any, target: Any, skip: frozenset[str] | set[str] = frozenset()) -> None:
    """Every layer of ``target`` that ``source`` has by name (except ``skip``) gets its weights."""
    known = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.name in known and layer.name not in skip and layer.weights:
            layer.set_weights(known[layer.name].get_weights())
