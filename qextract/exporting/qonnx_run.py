"""Reading and running a QONNX file qextract wrote: its layers' output tensors, and qonnx's executor on a batch.

:func:`run_qonnx` reads the input name from the model: qonnx's cleanup
renames graph inputs (to ``global_in``), and qonnx's executor silently
ignores a name it does not know, running on zeros instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, UnsupportedError
from .qonnx_graph import Placement

EXTRA = "pip install 'qextract[qonnx]'"


def require(module: str = "onnx") -> Any:
    """Import ``module`` (onnx or qonnx), or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UnsupportedError(
            f"QONNX export needs the '{module}' package, which is not installed ({e}). Fix: {EXTRA}"
        ) from None


@dataclass(frozen=True)
class LayerOutput:
    """Where a Keras layer's output lies in the graph: tensor name, placement and Keras shape.

    ``quantized``: the tensor is an activation quantizer's output. ``flat_from``:
    for a flattened channels-first tensor, the Keras shape it was flattened from.
    """

    layer: str
    class_name: str
    tensor: str
    placement: str
    shape: tuple[int, ...]
    quantized: bool
    flat_from: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "class": self.class_name,
            "tensor": self.tensor,
            "placement": self.placement,
            "shape": list(self.shape),
            "quantized": self.quantized,
            "flat_from": list(self.flat_from),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerOutput:
        return cls(
            layer=d["layer"],
            class_name=d["class"],
            tensor=d["tensor"],
            placement=d["placement"],
            shape=tuple(d["shape"]),
            quantized=bool(d["quantized"]),
            flat_from=tuple(d["flat_from"]),
        )


def layer_outputs(model: Any) -> list[LayerOutput]:
    """The ``qextract.layers`` metadata of a written file (names as written: before any cleanup renamed them)."""
    props = {p.key: p.value for p in _proto_of(model).metadata_props}
    if "qextract.layers" not in props:
        raise DataError("the ONNX file carries no qextract.layers metadata: it was not written by qextract.to_qonnx")
    return [LayerOutput.from_json(d) for d in json.loads(props["qextract.layers"])]


def to_keras_order(array: np.ndarray, out: LayerOutput) -> np.ndarray:
    """A graph tensor of ``out`` back in the Keras layer's own order (batch first)."""
    if out.placement == Placement.CHANNELS_FIRST.value:
        return np.moveaxis(array, 1, -1)
    if out.placement == Placement.FLAT_CHANNELS_FIRST.value:
        unflat = array.reshape(len(array), out.flat_from[-1], *out.flat_from[:-1])
        return np.moveaxis(unflat, 1, -1).reshape(array.shape)
    return array


# ---------------------------------------------------------------------------------------------- execution


def _proto_of(model: Any) -> Any:
    onnx = require("onnx")
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    return getattr(model, "model", model)  # a qonnx ModelWrapper holds the proto in .model


def run_qonnx(
    model: Any, inputs: np.ndarray | Mapping[str, np.ndarray], *, full_context: bool = False
) -> dict[str, np.ndarray]:
    """Execute a QONNX file or model with qonnx's executor (``execute_onnx``) on a batch of inputs.

    ``inputs`` is one array for the graph's single input, or a mapping whose
    keys must be exactly the graph's input names *as they are now*: qonnx's
    cleanup renames inputs (e.g. to ``global_in``), and its executor would
    ignore an unknown name and run on zeros. The batch axis is set to the
    inputs' (qonnx's ``ChangeBatchSize``). Returns the outputs by name (every
    tensor with ``full_context``).
    """
    require("qonnx")
    import copy

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = ModelWrapper(copy.deepcopy(_proto_of(model)))
    names = [i.name for i in wrapper.graph.input if wrapper.get_initializer(i.name) is None]
    if isinstance(inputs, Mapping):
        unknown, missing = sorted(set(inputs) - set(names)), sorted(set(names) - set(inputs))
        if unknown or missing:
            problems = [
                f"{what}: {', '.join(bad)}" for what, bad in (("unknown", unknown), ("missing", missing)) if bad
            ]
            raise DataError(
                f"the graph's inputs are {names}; got {sorted(inputs)} ({'; '.join(problems)}). qonnx's "
                "cleanup renames graph inputs, and its executor runs on zeros for a name it does not know. "
                "Fix: read the input name from the model (model.graph.input[0].name) after cleanup"
            )
        feed = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    else:
        if len(names) != 1:
            raise DataError(f"the graph has inputs {names}: pass a mapping of name -> array")
        feed = {names[0]: np.asarray(inputs, np.float32)}
    batch = {a.shape[0] if a.ndim else None for a in feed.values()}
    if len(batch) != 1 or None in batch:
        raise DataError(f"inputs need one common batch axis first; got shapes {[a.shape for a in feed.values()]}")
    n = int(next(iter(batch)) or 0)
    if wrapper.get_tensor_shape(names[0])[0] != n:
        wrapper = wrapper.transform(ChangeBatchSize(n))
    wrapper = wrapper.transform(InferShapes())
    for name, a in feed.items():
        expected = tuple(wrapper.get_tensor_shape(name))
        if a.shape != expected:
            raise DataError(f"input '{name}' has shape {a.shape}; the graph takes {expected}")
    return execute_onnx(wrapper, feed, return_full_exec_context=full_context)
