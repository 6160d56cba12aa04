"""A stored QKeras 0.9 model rebuilt with qkeras-v3 layers: the graph from the stored nodes, the stored weights set.

Every layer is translated (:mod:`.translate`), built and called on what its stored inbound nodes
name (``[layer, node, tensor, kwargs]``, a shared layer once per node), in the order the nodes
can be computed. A layer that cannot be translated, built or called is recorded with the reason
and the rest still built where they can be, so that one run names every layer that fails.

Weights are set by layer and by the weight's name within the layer (``kernel``,
``batch_normalization/gamma``), each shape checked; every stored weight must be used exactly once
and every variable of the new model must get one, else the layer is a failure naming the weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..reading.stored import StoredModel
from .translate import LayerFailure, Untranslatable, translate

__all__ = ["Built", "build_model"]

_INPUT = "InputLayer"


@dataclass(frozen=True)
class Built:
    """The new model (None when a layer failed) and every layer that could not be migrated."""

    model: Any
    failures: tuple[LayerFailure, ...]


def build_model(stored: StoredModel) -> Built:
    """``stored`` as a qkeras-v3 model with its weights, or the failures that stop it (each layer named)."""
    from .._keras import custom_objects, keras, quiet_keras

    k = keras()
    specs = _specs(stored)
    failures: list[LayerFailure] = []
    made: dict[str, Any] = {}
    with quiet_keras(), k.saving.custom_object_scope(custom_objects()):
        for spec in specs:
            name, cls = _name(spec), str(spec["class_name"]).rsplit(">", 1)[-1]
            if cls == _INPUT:
                continue
            try:
                made[name] = _make(translate(cls, spec.get("config", {}), custom_objects(), k.layers))
            except Untranslatable as e:
                failures.append(LayerFailure(name, cls, f"configuration: {e}"))
            except Exception as e:  # qkeras-v3's own refusal of this configuration, in its words
                failures.append(LayerFailure(name, cls, f"qkeras-v3 cannot build it ({_error(e)})"))
        model = None
        if stored.class_name == "Sequential":
            model = _sequential(k, stored, specs, made, failures)
        else:
            model = _functional(k, stored, specs, made, failures)
    if model is None or failures:
        return Built(None, tuple(failures))
    failures.extend(_set_weights(stored, model))
    return Built(None if failures else model, tuple(failures))


def _specs(stored: StoredModel) -> list[Mapping[str, Any]]:
    return list(stored.config["config"]["layers"])


def _name(spec: Mapping[str, Any]) -> str:
    return str(spec.get("config", {}).get("name", spec.get("name")))


def _make(t: Any) -> Any:
    return t.cls.from_config(t.config)


def _error(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


def _input(k: Any, spec: Mapping[str, Any]) -> Any:
    config = spec.get("config", {})
    shape = config.get("batch_input_shape", config.get("batch_shape"))
    return k.Input(batch_shape=tuple(shape), dtype=config.get("dtype") or "float32", name=_name(spec))


def _sequential(
    k: Any, stored: StoredModel, specs: list[Mapping[str, Any]], made: dict[str, Any], failures: list[LayerFailure]
) -> Any:
    """A Sequential: its input from the InputLayer entry (or the first layer's batch_input_shape), layers in order."""
    first = specs[0] if specs else {}
    if first.get("class_name") == _INPUT:
        inp = _input(k, first)
    elif "batch_input_shape" in first.get("config", {}):
        inp = _input(k, {"config": {**first["config"], "name": f"{_name(first)}_input"}})
    else:
        failures.append(LayerFailure(stored.name, "Sequential", "the file gives no input shape (never built)"))
        return None
    if failures:
        return None
    layers = [made[_name(s)] for s in specs if _name(s) in made]
    try:
        return k.Sequential([inp, *layers], name=stored.name)
    except Exception as e:
        x = k.Input(batch_shape=inp.shape, dtype=inp.dtype)  # which layer: each called alone, in order
        for layer in layers:
            try:
                x = layer(x)
            except Exception as inner:
                failures.append(
                    LayerFailure(layer.name, type(layer).__name__, f"qkeras-v3 cannot call it ({_error(inner)})")
                )
                return None
        failures.append(LayerFailure(stored.name, "Sequential", f"Keras 3 cannot build it ({_error(e)})"))
        return None


def _functional(
    k: Any, stored: StoredModel, specs: list[Mapping[str, Any]], made: dict[str, Any], failures: list[LayerFailure]
) -> Any:
    """The functional graph: each (layer, node) called once its inbound tensors exist, shared layers per node."""
    outputs: dict[tuple[str, int], list[Any]] = {}
    pending: list[tuple[Mapping[str, Any], int, list[Any]]] = []
    for spec in specs:
        if spec["class_name"] == _INPUT:
            outputs[_name(spec), 0] = [_input(k, spec)]
            continue
        for index, node in enumerate(spec.get("inbound_nodes") or []):
            pending.append((spec, index, node))
    failed = {f.layer for f in failures}
    progress = True
    while pending and progress:
        progress = False
        for item in list(pending):
            spec, index, node = item
            name = _name(spec)
            refs = [(str(e[0]), int(e[1]), int(e[2])) for e in node]
            if any(r[0] in failed for r in refs) or name in failed:
                failed.add(name)
                pending.remove(item)
                continue
            if not all((r[0], r[1]) in outputs for r in refs):
                continue
            pending.remove(item)
            progress = True
            inputs = [outputs[r[0], r[1]][r[2]] for r in refs]
            kwargs = {**(node[0][3] if node and len(node[0]) > 3 else {})}
            try:
                out = made[name](inputs[0] if len(inputs) == 1 else inputs, **kwargs)
            except Exception as e:
                failures.append(LayerFailure(name, spec["class_name"], f"qkeras-v3 cannot call it ({_error(e)})"))
                failed.add(name)
                continue
            outputs[name, index] = list(out) if isinstance(out, (list, tuple)) else [out]
    for spec, _, _ in pending:
        failures.append(LayerFailure(_name(spec), spec["class_name"], "its inputs are never computed"))
    if failures:
        return None
    conf = stored.config["config"]

    def tensors(refs: Any) -> Any:
        found = [outputs[str(r[0]), int(r[1])][int(r[2])] for r in refs]
        return found[0] if len(found) == 1 else found

    return k.Model(tensors(conf["input_layers"]), tensors(conf["output_layers"]), name=stored.name)


def _set_weights(stored: StoredModel, model: Any) -> list[LayerFailure]:
    """Each layer's stored weights set by name, shapes checked, each used exactly once; the failures."""
    from .._keras import generation

    failures = []
    names = {s.name for s in stored}
    for layer in model.layers:
        keys = [generation().variable_path(v).split(f"{layer.name}/", 1)[-1] for v in layer.weights]
        held = _matched(dict(stored[layer.name].weights) if layer.name in names else {}, keys)
        values, problems = [], []
        for variable, key in zip(layer.weights, keys):
            value = held.pop(key, None)
            if value is None:
                problems.append(f"the file holds no weight '{key}' {tuple(variable.shape)} for it")
            elif tuple(value.shape) != tuple(variable.shape):
                problems.append(f"weight '{key}' is stored {value.shape}, qkeras-v3 wants {tuple(variable.shape)}")
            else:
                values.append(np.asarray(value, dtype=variable.dtype))
        problems += [f"stored weight '{key}' {held[key].shape} has no place in it" for key in held]
        if problems:
            failures.append(LayerFailure(layer.name, type(layer).__name__, "weights: " + "; ".join(problems)))
        elif values:
            layer.set_weights(values)
    return failures


def _matched(held: dict[str, np.ndarray], keys: list[str]) -> dict[str, np.ndarray]:
    """``held`` keyed as ``keys`` where only an inner layer's numbering differs (``batch_normalization_1/gamma`` stored,
    ``batch_normalization_5/gamma`` built: Keras numbers unnamed inner layers per session). Unambiguous matches
    only; anything else keeps its stored name (and is reported as missing or unused)."""
    out = dict(held)
    stored_by = _by_unnumbered(list(held))
    built_by = _by_unnumbered(keys)
    for plain, key in built_by.items():
        found = stored_by.get(plain)
        if key not in out and found is not None and found in out and found not in keys:
            out[key] = out.pop(found)
    return out


def _by_unnumbered(keys: list[str]) -> dict[str, str]:
    """``{"batch_normalization/gamma": "batch_normalization_1/gamma"}``; a form two keys share is left out."""
    seen: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split("/")
        plain = "/".join([re.sub(r"_\d+$", "", p) for p in parts[:-1]] + parts[-1:])
        seen.setdefault(plain, []).append(key)
    return {plain: found[0] for plain, found in seen.items() if len(found) == 1}
