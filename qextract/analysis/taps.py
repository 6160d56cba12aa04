"""Tap models for the error report: every layer output of a network in one pass.

The report needs every layer's output of both networks, and for layers with
a fused quantized activation also the output before it. Rather than one
sub-model per layer (one forward pass each), each network gets one *tap*
model whose outputs are all those tensors, so every batch costs one forward
pass per network:

- propagated mode: the quantized tap model is the quantized model itself with
  every layer's output exposed;
- isolated mode: the quantized tap model has one ``Input`` per layer input and
  applies each layer to it on its own; it is fed the float model's outputs
  (or the data, for layers reading the model input).

Pre-activation values come from :class:`LayerTap`, a tiny layer that runs the
wrapped layer's own ``call`` with its ``activation`` set to linear for the
duration of that call (the attribute is restored immediately; it happens once,
while the graph is traced). This computes exactly what the layer computes up
to its activation - folded batch norm and quantized weights included - with
the layer's own variables, so no weights are copied and the user's model gets
no new nodes. The same wrapper, without the swap, applies a layer to the
isolated inputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from .. import _keras
from .._keras import tf
from ..errors import UnsupportedError
from ..kinds import Kind
from ..layers import applied_quantizer, class_spec
from ..quantizers import is_quantizer
from .twin import ACTIVATION_LAYERS

OUTPUT = "output"
PRE_ACTIVATION = "pre_activation"


@dataclass(frozen=True)
class Row:
    """One layer output that gets a row in the error report."""

    layer: str
    stage: str  # OUTPUT or PRE_ACTIVATION
    class_name: str
    shape: tuple[int | None, ...]  # per sample
    quantizer: Any = field(default=None, repr=False, compare=False)  # quantizer producing it, if any


@dataclass(frozen=True)
class Node:
    """A layer of the quantized model and the layers it reads (None: the model input)."""

    layer: Any
    inbound: tuple[str | None, ...]
    has_call_kwargs: bool = False


def fused_quantizer(layer: Any) -> Any:
    """The quantizer a layer applies to its own output as ``activation``, else None.

    Its layer entry says whether it applies its ``activation`` there at all
    (``LayerSpec.fuses_activation``: not a batch norm, an activation layer or
    a recurrent layer).
    """
    if not class_spec(layer).fuses_activation:
        return None
    act = getattr(layer, "activation", None)
    return act if act is not None and is_quantizer(act) else None


def graph(model: Any) -> list[Node]:
    """The model's layers in order, each with the names of the layers it reads.

    Raises :class:`UnsupportedError` for unbuilt and multi-input models, shared
    layers and layers reading a secondary output of another layer.
    """
    if not getattr(model, "inputs", None):
        raise UnsupportedError(
            f"model '{model.name}' is not built (no inputs); give it an Input layer or call it on data first"
        )
    if len(model.inputs) != 1:
        raise UnsupportedError(
            f"model '{model.name}' has {len(model.inputs)} inputs; the error report supports one input"
        )
    nodes: list[Node] = []
    if isinstance(model, _keras.keras().Sequential):
        previous: str | None = None
        for layer in model.layers:
            nodes.append(Node(layer, (previous,)))
            previous = layer.name
        return nodes
    config = _keras.model_config(model)
    inputs = {name for name, *_ in config["input_layers"]}
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            continue
        inbound_nodes = entry.get("inbound_nodes", [])
        if len(inbound_nodes) != 1:
            raise UnsupportedError(
                f"layer '{name}' is called {len(inbound_nodes)} times in model '{model.name}'; "
                "shared layers are not supported by the error report"
            )
        inbound: list[str | None] = []
        kwargs = False
        for item in inbound_nodes[0]:
            if not isinstance(item, (list, tuple)) or len(item) < 3:
                raise UnsupportedError(f"layer '{name}': unrecognised inbound node format {item!r}")
            src, node_index, tensor_index = item[0], item[1], item[2]
            if node_index != 0 or tensor_index != 0:
                raise UnsupportedError(
                    f"layer '{name}' reads output {tensor_index} of call {node_index} of layer '{src}'; "
                    "only single-output, single-call layers are supported"
                )
            kwargs = kwargs or bool(item[3] if len(item) > 3 else {})
            inbound.append(None if src in inputs else src)
        nodes.append(Node(model.get_layer(name), tuple(inbound), kwargs))
    return nodes


def plan_rows(nodes: list[Node]) -> list[Row]:
    """The report rows, in model order: one per layer output, two where an
    activation quantizer is fused into the layer."""
    rows: list[Row] = []
    for node in nodes:
        layer = node.layer
        out = layer.output
        if isinstance(out, (list, tuple)):
            raise UnsupportedError(
                f"layer '{layer.name}' ({type(layer).__name__}) has {len(out)} outputs; "
                "the error report supports single-output layers"
            )
        shape = tuple(out.shape)[1:]
        cls = type(layer).__name__
        fused = fused_quantizer(layer)
        if fused is not None:
            rows.append(Row(layer.name, PRE_ACTIVATION, cls, shape))
            rows.append(Row(layer.name, OUTPUT, cls, shape, fused))
        elif class_spec(layer).kind is Kind.ACTIVATION:
            rows.append(Row(layer.name, OUTPUT, cls, shape, applied_quantizer(layer)))
        else:
            rows.append(Row(layer.name, OUTPUT, cls, shape))
    return rows


@cache
def _tap_class() -> type:
    keras = _keras.keras()
    base: Any = keras.layers.Layer  # a class known only at run time: TensorFlow is imported lazily

    class LayerTap(base):
        """Runs ``target.call`` on new inputs, optionally with its activation set to linear."""

        def __init__(self, target: Any, pre_activation: bool, **kwargs: Any):
            super().__init__(**kwargs)
            # Not tracked: the variables stay owned by the model they belong to.
            object.__setattr__(self, "_target", target)
            self.pre_activation = pre_activation
            self._call_kwargs = {"training": False} if "training" in inspect.signature(target.call).parameters else {}

        def call(self, inputs: Any) -> Any:
            target = self._target
            if not self.pre_activation:
                return target.call(inputs, **self._call_kwargs)
            saved = target.activation
            # object.__setattr__ bypasses Keras's attribute tracking: nothing to undo but the value.
            object.__setattr__(target, "activation", keras.activations.linear)
            try:
                return target.call(inputs, **self._call_kwargs)
            finally:
                object.__setattr__(target, "activation", saved)

    return LayerTap


def _tap(target: Any, pre_activation: bool, inputs: Any, tag: str) -> Any:
    stage = "pre" if pre_activation else "out"
    return _tap_class()(target, pre_activation, name=f"qextract_{tag}_{stage}_{target.name}")(inputs)


def float_tensor(float_model: Any, row: Row) -> Any:
    """The float model's tensor matching ``row`` of the quantized model."""
    flayer = float_model.get_layer(row.layer)
    if row.stage == OUTPUT:
        return flayer.output
    if type(flayer).__name__ in ACTIVATION_LAYERS:
        return flayer.input
    act = getattr(flayer, "activation", None)
    if act is None or act is _keras.keras().activations.linear:
        return flayer.output
    return _tap(flayer, True, flayer.input, "float")


def float_taps(float_model: Any, rows: list[Row]) -> Any:
    """One model computing the float tensor of every row."""
    outputs = [float_tensor(float_model, row) for row in rows]
    return _keras.keras().Model(float_model.inputs, outputs, name="qextract_float_taps")


def quant_taps(model: Any, rows: list[Row], nodes: list[Node]) -> Any:
    """Propagated mode: the quantized model with every row's tensor as an output."""
    by_name = {n.layer.name: n for n in nodes}
    outputs = []
    for row in rows:
        layer = by_name[row.layer].layer
        if row.stage == OUTPUT:
            outputs.append(layer.output)
        else:
            outputs.append(_tap(layer, True, layer.input, "quant"))
    return _keras.keras().Model(model.inputs, outputs, name="qextract_quant_taps")


@dataclass
class IsolatedTaps:
    """Isolated mode: each quantized layer applied to its own inputs.

    ``feeds[i]`` names what input ``i`` receives: None for the data batch, or
    the layer whose float output goes there.
    """

    model: Any
    feeds: list[str | None]

    def inputs(self, batch: np.ndarray, float_outputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [batch if src is None else float_outputs[src] for src in self.feeds]


def isolated_taps(rows: list[Row], nodes: list[Node]) -> IsolatedTaps:
    """One multi-input model applying every layer to the float model's input to it."""
    keras = _keras.keras()
    by_name = {n.layer.name: n for n in nodes}
    inputs: list[Any] = []
    feeds: list[str | None] = []
    applied: dict[str, Any] = {}
    outputs = []
    for row in rows:
        node = by_name[row.layer]
        layer = node.layer
        if node.has_call_kwargs:
            raise UnsupportedError(
                f"layer '{layer.name}' ({type(layer).__name__}) is called with extra arguments; "
                "isolated mode cannot re-apply it: use mode='propagated'"
            )
        if layer.name not in applied:
            several = isinstance(layer.input, (list, tuple))
            tensors = layer.input if several else [layer.input]
            own = [keras.Input(shape=tuple(t.shape)[1:], dtype=t.dtype) for t in tensors]
            inputs.extend(own)
            feeds.extend(node.inbound)
            applied[layer.name] = own if several else own[0]
        outputs.append(_tap(layer, row.stage == PRE_ACTIVATION, applied[layer.name], "iso"))
    return IsolatedTaps(keras.Model(inputs, outputs, name="qextract_isolated_taps"), feeds)


class Runner:
    """A tap model compiled once for any batch size: ``runner(inputs) -> [arrays]``.

    A ``tf.function`` with a batch-size-free input signature, so the last,
    shorter batch does not retrace the graph.
    """

    def __init__(self, model: Any):
        t = tf()
        specs = [t.TensorSpec(shape=(None, *tuple(i.shape)[1:]), dtype=i.dtype) for i in model.inputs]
        self.n_inputs = len(specs)

        def forward(*xs: Any) -> Any:
            out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            return out if isinstance(out, (list, tuple)) else [out]

        # autograph=False: Keras converts each layer's own call when it runs it; converting this
        # thin wrapper's whole trace again only cost time (60 % of a report, see benchmarks/).
        self._fn = t.function(forward, input_signature=specs, autograph=False)

    def __call__(self, inputs: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        xs = inputs if isinstance(inputs, list) else [inputs]
        if len(xs) != self.n_inputs:
            raise ValueError(f"tap model takes {self.n_inputs} inputs, got {len(xs)}")
        return [o.numpy() for o in self._fn(*xs)]
