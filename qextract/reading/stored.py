"""A QKeras model file read with h5py and the configuration JSON alone: no TensorFlow, no Keras.

What the file stores, nothing computed: each layer's class, configuration, inbound layers and raw
weight arrays by name (``kernel``, ``bias``, ``batch_normalization/gamma``, in the order Keras's
``layer.weights`` lists them). It is the reader a TensorFlow-free export and a migration to
Keras 3 both start from, and it never runs code from the file (it does not build layers).

Read, from either generation (:mod:`qextract.generation`; which one wrote the file is read from
the file: its ``keras_version``, or the Keras 3 weights layout): a full-model ``.h5``
(``model_config`` attribute and ``model_weights`` groups), an architecture ``.json`` with its
weights (a tf-keras ``save_weights`` ``.h5`` or a Keras 3 ``.weights.h5``), and a Keras 3 ``.keras``
zip archive (``config.json``, ``metadata.json``, ``model.weights.h5``). Keras 3's weights layout
numbers each layer's variables (``vars/0``); they are named by the file generation's table
(:attr:`~qextract.generation.Generation.numbered_variables`), and a layer class without one is
refused by name. Refused by name, so that a caller can fall back to Keras: nested models and
layer wrappers (their weights live in sub-layers whose names the file does not tie to the
configuration).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, UnsupportedError
from ..generation import KERAS3, LEGACY, Generation, file_generation

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
    generation: Generation = LEGACY
    """The QKeras generation that wrote the file, whose semantics its layers are computed with."""

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
    """Read ``path`` (an ``.h5``, a ``.keras`` archive, or an architecture ``.json`` with ``weights``) with h5py only.

    ModelLoadError names a file that is missing, not HDF5/JSON/zip, or lacks the architecture or a
    layer's weights; UnsupportedError names what this reader does not read (see the module).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".keras" or (p.is_file() and zipfile.is_zipfile(p)):
        return _read_archive(p)
    if suffix == ".json":
        if weights is None:
            raise ModelLoadError(f"{p}: an architecture .json holds no weights; give the weights .h5 with it")
        config = _json(p, p.read_bytes() if p.is_file() else None)
        return _read_h5(p, Path(weights), config, config.get("keras_version"))
    return _read_h5(p, p, None, None)


def _open_h5(path: Path, source: Any = None) -> Any:
    import h5py

    if source is None and (not path.is_file() or not h5py.is_hdf5(path)):
        raise ModelLoadError(f"{path}: not an HDF5 file (is it a Keras .h5 model or weights file?)")
    try:
        return h5py.File(source if source is not None else path, "r")
    except OSError as e:  # truncated or otherwise damaged
        raise ModelLoadError(f"{path}: not a readable HDF5 file ({e})") from None


def _read_h5(p: Path, weights_path: Path, config: dict[str, Any] | None, version: Any) -> StoredModel:
    with _open_h5(weights_path) as f:
        if config is None:
            if "model_config" not in f.attrs:
                raise ModelLoadError(
                    f"{p}: holds weights but no model architecture (saved with save_weights?); give the "
                    "architecture .json and this file as its weights"
                )
            config = _json(p, f.attrs["model_config"])
        if _numbered(f):  # a Keras 3 weights file (.weights.h5): only Keras 3 writes this layout
            return _from_numbered(p, weights_path, config, f, "3")
        keras_version = _text(f.attrs.get("keras_version")) or _text(version)
        generation = file_generation(keras_version)
        group = "model_weights" if "model_config" in f.attrs and weights_path == p else ""
        if group and group not in f:
            raise ModelLoadError(f"{p}: has an architecture but no '{group}' group of weights")
        root = f[group] if group else f
        layers = tuple(_layer(p, spec, root, generation) for spec in _layer_specs(p, config, generation))
        _same_layers(weights_path, root, layers)
    return _model(p, config, keras_version, layers, generation)


def _model(
    p: Path, config: Mapping[str, Any], version: str | None, layers: tuple[StoredLayer, ...], generation: Generation
) -> StoredModel:
    inner = config.get("config", {})
    name = str(inner.get("name", p.stem))
    return StoredModel(p, name, str(config.get("class_name")), version, layers, config, generation)


def _read_archive(p: Path) -> StoredModel:
    """A Keras 3 ``.keras`` zip: ``config.json``, ``metadata.json`` (its ``keras_version``), ``model.weights.h5``."""
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
            if missing:
                raise ModelLoadError(f"{p}: a zip archive without {', '.join(missing)} (is it a Keras .keras file?)")
            config = _json(p, z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            data = z.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelLoadError(f"{p}: not a readable .keras archive ({e})") from None
    version = _text(meta.get("keras_version") if isinstance(meta, dict) else None) or "3"
    with _open_h5(p, io.BytesIO(data)) as f:
        return _from_numbered(p, p, config, f, version)


def _numbered(f: Any) -> bool:
    return "layers" in f and "layer_names" not in f.attrs and "model_weights" not in f


def _from_numbered(p: Path, weights_path: Path, config: dict[str, Any], f: Any, version: str) -> StoredModel:
    """Layers of a Keras 3 weights layout: ``layers/<group>/vars`` (named by its ``name`` attribute), numbered."""
    generation = file_generation(version)
    if generation is not KERAS3:  # tf-keras writes this layout too (a .keras archive): its variable orders unproven
        raise UnsupportedError(
            f"{weights_path}: a .keras archive written by Keras {version} (tf-keras); this reader reads the .keras "
            "archives of Keras 3. Fix: read the model with Keras (load_model), or save it as .h5"
        )
    groups: dict[str, Any] = {}
    for key in f["layers"]:
        vars_ = f["layers"][key].get("vars")
        groups[(_text(vars_.attrs.get("name")) if vars_ is not None else None) or str(key)] = f["layers"][key]
    specs = _layer_specs(p, config, generation)
    layers = []
    for spec in specs:
        name = str(spec.get("config", {}).get("name", spec.get("name")))
        held = _numbered_weights(weights_path, name, generation.stored_class(dict(spec)), spec.get("config", {}),
                                 groups.pop(name, None), generation)  # fmt: skip
        layers.append(_stored_layer(spec, name, held, generation))
    extra = [n for n, g in groups.items() if _holds_variables(g)]
    if extra:
        raise UnsupportedError(
            f"{weights_path}: holds weights of layers the architecture does not list ({', '.join(map(str, extra))}). "
            "Fix: read the model with Keras (load_model)"
        )
    return _model(p, config, version, tuple(layers), generation)


def _holds_variables(group: Any) -> bool:
    found: list[bool] = []

    def visit(_: str, obj: Any) -> None:
        found.append(hasattr(obj, "shape"))

    group.visititems(visit)
    return any(found)


def _numbered_weights(
    path: Path, layer: str, cls: str, config: Mapping[str, Any], group: Any, generation: Generation
) -> dict[str, np.ndarray]:
    """``{"kernel": ..., "batch_normalization/gamma": ...}`` of one layer's group in a Keras 3 weights layout."""
    out: dict[str, np.ndarray] = {}
    if group is None:
        return out
    parts = [("", group.get("vars"), cls)]
    parts += [(k, group[k].get("vars"), _SUBLAYERS.get(k, "")) for k in group if k != "vars"]
    for prefix, vars_, sub_cls in parts:
        if vars_ is None or not len(vars_):
            continue
        if prefix:
            prefix = f"{_text(vars_.attrs.get('name')) or prefix}/"
        numbered = sorted((k for k in vars_ if k.isdigit()), key=int)
        names = [n for n in _present(generation.numbered_variables.get(sub_cls), config)]
        if numbered and (not names or len(names) < len(numbered)):
            raise UnsupportedError(
                f"{path}: layer '{layer}' ({cls}) numbers its variables ({prefix or ''}vars/0 ...) and qextract does "
                "not know their names for this class. Fix: read the model with Keras (load_model), or save it as .h5"
            )
        for key, name in zip(numbered, names):
            out[prefix + name] = np.asarray(vars_[key])
        for key in (k for k in vars_ if not k.isdigit()):  # a variable saved by name (iteration)
            out.setdefault(prefix + key, np.asarray(vars_[key]))
    return out


_SUBLAYERS = {"batchnorm": "BatchNormalization"}
"""Sub-layer groups of a Keras 3 weights layout -> the class whose variables they number (a folded layer's)."""


def _present(names: tuple[str, ...] | None, config: Mapping[str, Any]) -> list[str]:
    """The variables of ``names`` present under ``config``: ``bias?use_bias`` only where ``use_bias`` is true."""
    out = []
    for entry in names or ():
        name, _, flag = entry.partition("?")
        if not flag or config.get(flag, True):
            out.append(name)
    return out


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


def _layer_specs(p: Path, config: Mapping[str, Any], generation: Generation) -> list[Mapping[str, Any]]:
    kind = config.get("class_name")
    if kind not in _NESTED:
        raise UnsupportedError(f"{p}: the top-level object is a {kind}, not a Sequential or functional model")
    layers = config["config"].get("layers")
    if not isinstance(layers, list):
        raise ModelLoadError(f"{p}: the model configuration lists no layers")
    for spec in layers:
        name, cls = spec.get("config", {}).get("name", spec.get("name")), generation.stored_class(spec)
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


def _layer(p: Path, spec: Mapping[str, Any], root: Any, generation: Generation) -> StoredLayer:
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
    return _stored_layer(spec, name, weights, generation, tuple(full_names))


def _stored_layer(
    spec: Mapping[str, Any],
    name: str,
    weights: dict[str, np.ndarray],
    generation: Generation,
    full_names: tuple[str, ...] | None = None,
) -> StoredLayer:
    built = (spec.get("build_config") or {}).get("input_shape")
    return StoredLayer(
        name,
        generation.stored_class(dict(spec)),
        spec.get("config", {}),
        generation.stored_inbound(dict(spec)),
        weights,
        full_names if full_names is not None else tuple(f"{name}/{w}" for w in weights),
        spec.get("module"),
        _shape(built),
        len(spec.get("inbound_nodes") or []),
    )


def _shape(value: Any) -> tuple[Any, ...] | None:
    """A stored shape (a list of ints and nulls) as a tuple; None for none or several (a list of lists)."""
    if not isinstance(value, list) or any(isinstance(d, list) for d in value):
        return None
    return tuple(value)


def _short(layer: str, full: str) -> str:
    """``conv1/kernel:0`` -> ``kernel``; ``convbn4/batch_normalization/gamma:0`` -> ``batch_normalization/gamma``."""
    name = full[: -len(":0")] if full.endswith(":0") else full
    return name[len(layer) + 1 :] if name.startswith(layer + "/") else name
