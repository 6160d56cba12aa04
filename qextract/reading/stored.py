"""A QKeras model file read with h5py and the configuration JSON alone: no TensorFlow, no Keras.

What the file stores, nothing computed: each layer's class, configuration, inbound layers and raw
weight arrays by name (``kernel``, ``bias``, ``batch_normalization/gamma``, in the order Keras's
``layer.weights`` lists them). It is the reader a TensorFlow-free export and a migration to
Keras 3 both start from, and it never runs code from the file (it does not build layers).

Read: a full-model legacy ``.h5`` (``model_config`` attribute and ``model_weights`` groups) and an
architecture ``.json`` with a weights ``.h5`` (``save_weights``). Refused by name, so that a caller
can fall back to Keras: nested models, layer wrappers (their weights live in sub-layers whose
names the file does not tie to the configuration), and the zip ``.keras`` format (its variables
are numbered, not named).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, UnsupportedError

__all__ = ["StoredLayer", "StoredModel", "read_stored"]

_NESTED = frozenset({"Sequential", "Functional", "Model"})
_WRAPPERS = frozenset({"TimeDistributed", "Bidirectional", "RNN", "Wrapper"})


@dataclass(frozen=True)
class StoredLayer:
    """One layer as the file stores it. ``weights`` maps the weight's name within the layer to its array.

    ``full_names`` are the weights' names as Keras saved them (``conv1/kernel:0``), in the same
    order; ``module`` is the module the file says the class comes from (``qkeras.qlayers``; None in
    older files), ``built_with`` the input shape the layer was built with (``build_config``; None
    where the file does not say), ``node_count`` the number of times it is called in the graph.
    """

    name: str
    class_name: str
    config: Mapping[str, Any]
    inbound: tuple[str, ...]
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    full_names: tuple[str, ...] = ()
    module: str | None = None
    built_with: tuple[Any, ...] | None = None
    node_count: int = 0

    def __repr__(self) -> str:
        held = ", ".join(f"{k}{list(v.shape)}" for k, v in self.weights.items())
        return f"StoredLayer('{self.name}' {self.class_name}{': ' + held if held else ''})"


@dataclass(frozen=True)
class StoredModel:
    """A model file's architecture and weights: ``model["conv1"].weights["kernel"]``."""

    path: Path
    name: str
    class_name: str
    keras_version: str | None
    layers: tuple[StoredLayer, ...]
    config: Mapping[str, Any]

    def __getitem__(self, name: str) -> StoredLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model '{self.name}' ({self.path}) has no layer '{name}'")

    def __iter__(self) -> Iterator[StoredLayer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


def read_stored(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> StoredModel:
    """Read ``path`` (a legacy ``.h5``, or an architecture ``.json`` with ``weights``) with h5py only.

    ModelLoadError names a file that is missing, not HDF5/JSON, or lacks the architecture or a
    layer's weights; UnsupportedError names what this reader does not read (see the module).
    """
    import h5py

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".keras":
        raise UnsupportedError(
            f"{p}: the zip .keras format numbers its variables instead of naming them; read it with Keras "
            "(load_model), or save the model as .h5"
        )
    if suffix == ".json":
        if weights is None:
            raise ModelLoadError(f"{p}: an architecture .json holds no weights; give the weights .h5 with it")
        config = _json(p, p.read_bytes() if p.is_file() else None)
        weights_path, group = Path(weights), ""
    else:
        weights_path, group = p, "model_weights"
        config = None
    if not weights_path.is_file() or not h5py.is_hdf5(weights_path):
        raise ModelLoadError(f"{weights_path}: not an HDF5 file (is it a Keras .h5 model or weights file?)")
    try:
        f = h5py.File(weights_path, "r")
    except OSError as e:  # truncated or otherwise damaged
        raise ModelLoadError(f"{weights_path}: not a readable HDF5 file ({e})") from None
    with f:
        if config is None:
            if "model_config" not in f.attrs:
                raise ModelLoadError(
                    f"{p}: holds weights but no model architecture (saved with save_weights?); give the "
                    "architecture .json and this file as its weights"
                )
            config = _json(p, f.attrs["model_config"])
        keras_version = _text(f.attrs.get("keras_version"))
        root = f[group] if group else f
        if group and group not in f:
            raise ModelLoadError(f"{p}: has an architecture but no '{group}' group of weights")
        layers = tuple(_layer(p, spec, root) for spec in _layer_specs(p, config))
        _same_layers(weights_path, root, layers)
    inner = config.get("config", {})
    return StoredModel(p, str(inner.get("name", p.stem)), str(config.get("class_name")), keras_version, layers, config)


def _same_layers(path: Path, root: Any, layers: tuple[StoredLayer, ...]) -> None:
    """The file's layers holding weights must be the architecture's, by name and in order.

    Keras pairs a weights file's layers with the model's by position (among those holding
    weights), this reader by name; where the two could differ the file is refused, not misread.
    """
    saved = [_text(n) for n in root.attrs.get("layer_names", [])]
    holding = [n for n in saved if n in root and len(root[n].attrs.get("weight_names", [])) > 0]
    found = [layer.name for layer in layers if layer.weights]
    if holding != found:
        raise UnsupportedError(
            f"{path}: its layers holding weights ({', '.join(map(str, holding)) or 'none'}) are not the "
            f"architecture's by name ({', '.join(found) or 'none'}); Keras pairs them by position. "
            "Fix: read the model with Keras (load_model)"
        )


def _json(p: Path, raw: str | bytes | None) -> dict[str, Any]:
    if raw is None:
        raise ModelLoadError(f"{p}: no such file")
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{p}: the model architecture is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelLoadError(f"{p}: the model architecture is not a Keras model configuration")
    return config


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _layer_specs(p: Path, config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    kind = config.get("class_name")
    if kind not in _NESTED:
        raise UnsupportedError(f"{p}: the top-level object is a {kind}, not a Sequential or functional model")
    layers = config["config"].get("layers")
    if not isinstance(layers, list):
        raise ModelLoadError(f"{p}: the model configuration lists no layers")
    for spec in layers:
        name, cls = spec.get("config", {}).get("name", spec.get("name")), _class(spec)
        if cls in _NESTED:
            raise UnsupportedError(
                f"{p}: layer '{name}' is a nested model ({cls}); this reader reads flat models only. Fix: read the "
                "model with Keras (load_model), or flatten the nested model"
            )
        if cls in _WRAPPERS:
            raise UnsupportedError(
                f"{p}: layer '{name}' is a {cls} wrapper; this reader does not read wrapped layers' weights. "
                "Fix: read the model with Keras (load_model)"
            )
    return layers


def _inbound(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the layers feeding ``spec`` (functional models); empty in a Sequential, where order decides."""
    names: list[str] = []
    for node in spec.get("inbound_nodes") or []:
        for edge in node if isinstance(node, list) else []:
            if isinstance(edge, list) and edge and isinstance(edge[0], str):
                names.append(edge[0])
    return tuple(names)


def _layer(p: Path, spec: Mapping[str, Any], root: Any) -> StoredLayer:
    config = spec.get("config", {})
    name = str(config.get("name", spec.get("name")))
    weights: dict[str, np.ndarray] = {}
    full_names: list[str] = []
    if name in root:
        group = root[name]
        for full in (_text(n) for n in group.attrs.get("weight_names", [])):
            assert full is not None
            if full not in group:
                raise ModelLoadError(f"{p}: layer '{name}' lists weight '{full}' but the file does not hold it")
            weights[_short(name, full)] = np.asarray(group[full])
            full_names.append(full)
    built = (spec.get("build_config") or {}).get("input_shape")
    return StoredLayer(
        name,
        _class(spec),
        config,
        _inbound(spec),
        weights,
        tuple(full_names),
        spec.get("module"),
        _shape(built),
        len(spec.get("inbound_nodes") or []),
    )


def _shape(value: Any) -> tuple[Any, ...] | None:
    """A stored shape (a list of ints and nulls) as a tuple; None for none or several (a list of lists)."""
    if not isinstance(value, list) or any(isinstance(d, list) for d in value):
        return None
    return tuple(value)


def _class(spec: Mapping[str, Any]) -> str:
    """The layer's class name; Keras 3 writes a registered class as ``package>Name`` (``qkeras>QConv2D``)."""
    return str(spec.get("class_name")).rsplit(">", 1)[-1]


def _short(layer: str, full: str) -> str:
    """``conv1/kernel:0`` -> ``kernel``; ``convbn4/batch_normalization/gamma:0`` -> ``batch_normalization/gamma``."""
    name = full[: -len(":0")] if full.endswith(":0") else full
    return name[len(layer) + 1 :] if name.startswith(layer + "/") else name
