"""QONNX export of a whole network: one ``model.onnx`` that qonnx, FINN and hls4ml read.

:func:`to_qonnx` walks the model's layer graph and writes each layer as ONNX
nodes (:mod:`.qonnx_layers`, :mod:`.qonnx_plain`): weights as initializers
in ONNX layout (OIHW, Dense (O,I)) holding the exact values the layer
computes with, each behind the Quant / BipolarQuant node that reproduces
them; activation quantizers as the Quant node their registry entry declares
(:meth:`~qextract.quantizers.QuantizerEntry.qonnx`), with QKeras's rounding
mode. The graph input has the Keras model's shape (NHWC for images); the
graph moves channels first where a convolution needs them.

:func:`run_qonnx` executes a file with qonnx's own executor. It reads the
input name from the model: qonnx's cleanup renames graph inputs, and qonnx's
executor silently ignores a name it does not know (running on zeros).

``onnx`` and ``qonnx`` are the optional extra ``pip install 'qextract[qonnx]'``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError, QExtractWarning, UnsupportedError, UsageError
from .qonnx_graph import QONNX_DOMAIN, Graph, Value
from .qonnx_layers import Site, emitter_for
from .qonnx_run import LayerOutput, layer_outputs, require, run_qonnx, to_keras_order

__all__ = [
    "LayerOutput",
    "QonnxExport",
    "layer_outputs",
    "qonnx_target",
    "require",
    "run_qonnx",
    "to_keras_order",
    "to_qonnx",
]

OPSET = 13
"""The ONNX opset of the standard nodes (Softmax over one axis; FINN and hls4ml read it)."""

REPRESENTATION = {
    "weights": "initializers in ONNX layout (Conv OIHW, depthwise (C*M,1,H,W), Dense/Gemm (O,I)) holding the values "
    "the layer computes with, each re-quantized by a Quant node (scale per output channel or per tensor, zero point "
    "0, bit width, signed, narrow for symmetric codes) or BipolarQuant (binary); ternary: a 2-bit narrow signed Quant",
    "po2": "power-of-two weights: a Quant with scale 2**e_lo and bit width e_hi - e_lo + 2 (e_lo, e_hi: the "
    "tensor's smallest and largest exponent), on whose grid every +-2**e is the integer +-2**(e - e_lo)",
    "batchnorm": "QBatchNormalization as QKeras computes it: Mul by inv = rsqrt(variance + epsilon) * gamma, then "
    "Add beta - mean * inv, both computed by TensorFlow from the quantized parameters",
    "activations": "Quant nodes with QKeras's rounding (ROUND = half to even; HALF_UP = half away from zero), then "
    "Mul by alpha where alpha is not 1; binary as BipolarQuant",
}
"""How the file represents what QKeras computes; written into the file's metadata (``qextract.*``)."""


@dataclass(frozen=True)
class QonnxExport:
    """What :func:`to_qonnx` wrote: the file, its input and output names, and every layer's output tensor."""

    path: Path
    input_name: str
    output_names: tuple[str, ...]
    layers: tuple[LayerOutput, ...]
    nodes: int


def to_qonnx(
    model: Any, path: str | os.PathLike[str], *, batch_size: int = 1, force: bool = False, source: str | None = None
) -> QonnxExport:
    """Write ``model`` (a QKeras model, or a model file) as one QONNX file at ``path``.

    ``path`` is the file if it ends in ``.onnx``, else a folder to write ``model.onnx`` into.
    An existing file is replaced only with ``force`` and only if qextract
    wrote it. ``batch_size`` fixes the graph's batch axis (1, as FINN wants;
    qonnx's ``ChangeBatchSize`` changes it). ``source`` names the model in the
    metadata (default: the file name, or the model's name).

    >>> qextract.to_qonnx(qextract.load_model("model.h5"), "out/model.onnx")   # doctest: +SKIP
    """
    onnx = require("onnx")
    if isinstance(model, (str, os.PathLike)):
        from ..reading.loading import load_model

        source = source or os.path.basename(os.fspath(model))
        model = load_model(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, not {batch_size!r}")
    target = qonnx_target(path, force)
    graph, inputs, outputs, layers = _build(model, batch_size)
    if graph.float_tensors:
        warnings.warn(
            f"model '{model.name}': {len(graph.float_tensors)} weight tensor(s) are unquantized floats, written as "
            f"plain initializers without a Quant node ({', '.join(graph.float_tensors[:4])}"
            f"{', ...' if len(graph.float_tensors) > 4 else ''}); FINN and hls4ml need every weight quantized",
            QExtractWarning,
            stacklevel=2,
        )
    proto = _proto(graph, inputs, outputs, layers, source or model.name)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:  # pragma: no cover - a graph this module built wrongly
        raise ExportError(f"the QONNX graph of model '{model.name}' fails onnx.checker: {e}") from None
    from .._atomic import atomic_file

    with atomic_file(target) as tmp:
        onnx.save(proto, os.fspath(tmp))
    return QonnxExport(target, inputs[0].name, tuple(v.name for v in outputs), tuple(layers), len(graph.nodes))


def qonnx_target(path: str | os.PathLike[str], force: bool) -> Path:
    """The file to write: ``path`` if it ends in .onnx, else ``path/model.onnx``; refused as :func:`to_qonnx` says."""
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        if os.path.lexists(target) and not target.is_dir():
            raise ExportError(f"{target}: exists and is not a folder. Fix: name a folder, or a file ending in .onnx.")
        target = target / "model.onnx"
    if os.path.lexists(target):
        if not force:
            raise ExportError(
                f"{target}: exists. Fix: choose another path, or pass force=True to replace it.", arguments=("force",)
            )
        if not _written_by_qextract(target):
            raise ExportError(
                f"{target}: is not a QONNX file qextract wrote; force only replaces those. Fix: choose another path."
            )
    return target


def _written_by_qextract(path: Path) -> bool:
    onnx = require("onnx")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:
        return False
    return any(p.key == "qextract.version" for p in proto.metadata_props)


# ---------------------------------------------------------------------------------------------- the walk


def _build(model: Any, batch: int) -> tuple[Graph, list[Value], list[Value], list[LayerOutput]]:
    """Every layer of ``model`` as nodes, in the model's (topological) layer order."""
    from .._keras import require_keras_model
    from ..reading.extraction import extract

    require_keras_model(model)
    if len(model.inputs) != 1:
        raise UnsupportedError(f"model '{model.name}' has {len(model.inputs)} inputs; QONNX export takes one")
    plan = _plan(model)  # every layer checked before the slower extraction
    records = {r.name: r for r in extract(model)}
    g = Graph(batch)
    values: dict[tuple[str, int, int], Value] = {}
    inputs = []
    for kt in model.inputs:
        history = kt._keras_history
        shape = _static(kt.shape, f"model '{model.name}' input")
        v = Value(g.fresh(history.layer.name), shape)
        values[(history.layer.name, history.node_index, history.tensor_index)] = v
        inputs.append(v)
    layers: list[LayerOutput] = []
    for layer, index, node, emitter, out_shape in plan:
        ins = [values[(lay.name, ni, ti)] for lay, ni, ti, _ in node.iterate_inbound()]
        out = emitter(Site(g, layer, records.get(layer.name), ins, out_shape))
        values[(layer.name, index, 0)] = out
        quantized = out.name in g.quantized
        where = (layer.name, type(layer).__name__, out.name, str(out.placement), out.shape)
        layers.append(LayerOutput(*where, quantized, out.flat_from))
    outputs = []
    for kt in model.outputs:
        history = kt._keras_history
        v = g.keras(values[(history.layer.name, history.node_index, history.tensor_index)])
        if v.name in {i.name for i in inputs}:
            raise UnsupportedError(f"model '{model.name}': an output is its input; there is no graph to export")
        outputs.append(v)
    return g, inputs, outputs, layers


def _plan(model: Any) -> list[tuple[Any, int, Any, Any, tuple[int, ...]]]:
    """Each layer with its one call site in ``model``, emitter and output shape; refusals by layer name."""
    plan = []
    for layer in model.layers:
        nodes = _nodes(model, layer)
        if type(layer).__name__ == "InputLayer" or not nodes:
            continue
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        if len(nodes) > 1:
            raise UnsupportedError(f"{where} is called {len(nodes)} times (a shared layer); QONNX export refuses it")
        index, node = nodes[0]
        outs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
        emitter = emitter_for(layer)
        if emitter is None or len(outs) != 1:
            raise UnsupportedError(
                f"{where} has no QONNX form in qextract; QONNX export refuses it. Supported: {_supported()}"
            )
        plan.append((layer, index, node, emitter, _static(outs[0].shape, where)))
    return plan


def _nodes(model: Any, layer: Any) -> list[tuple[int, Any]]:
    """The layer's call sites that belong to ``model`` (a layer can be called in other models too)."""
    keys = model._network_nodes
    return [(i, n) for i, n in enumerate(layer._inbound_nodes) if f"{layer.name}_ib-{i}" in keys]


def _static(shape: Any, where: str) -> tuple[int, ...]:
    dims = tuple(shape.as_list() if hasattr(shape, "as_list") else shape)[1:]
    if not all(isinstance(d, int) for d in dims):
        raise UnsupportedError(f"{where} has a shape {dims} with unknown sizes; QONNX export needs them all")
    return dims


def _supported() -> str:
    from .qonnx_layers import BY_KIND
    from .qonnx_plain import BY_CLASS

    return ", ".join([*(f"kind {k}" for k in BY_KIND), *BY_CLASS])


# ---------------------------------------------------------------------------------------------- the file


def _proto(g: Graph, inputs: list[Value], outputs: list[Value], layers: list[LayerOutput], source: str) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    from .. import __version__

    nodes = [helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain, **n.attrs) for n in g.nodes]
    graph = helper.make_graph(
        nodes,
        source,
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, v.onnx_shape(g.batch)) for v in inputs],
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, v.onnx_shape(g.batch)) for v in outputs],
        [numpy_helper.from_array(a, name) for name, a in g.initializers.items()],
    )
    proto = helper.make_model(
        graph,
        producer_name="qextract",
        producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
    )
    proto.ir_version = min(proto.ir_version, 8)  # onnxruntime and older onnx read IR 8 with opset 13
    axes = {1: "NC", 2: "NLC", 3: "NHWC", 4: "NDHWC"}.get(len(inputs[0].shape), "channels last")
    moved = "; the graph moves channels first (a Transpose) where a convolution or pooling needs it"
    meta = {
        "qextract.version": __version__,
        "qextract.source_model": source,
        "qextract.input_layout": f"{axes}: the Keras model's input shape and order{moved if axes != 'NC' else ''}",
        "qextract.layers": json.dumps([x.to_json() for x in layers]),
        "qextract.float_tensors": json.dumps(g.float_tensors),
        **{f"qextract.{k}": v for k, v in REPRESENTATION.items()},
    }
    helper.set_model_props(proto, meta)
    return proto
