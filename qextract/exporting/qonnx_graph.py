"""The QONNX graph under construction: plain nodes and NumPy initializers, and where each tensor's axes lie.

Kept free of ``onnx`` so that building a graph needs only NumPy; the public
module (:mod:`qextract.exporting.qonnx`) turns it into an ONNX model.

Keras computes channels last; ONNX's Conv, pooling and Pad take channels
first. Every tensor of the graph carries its :class:`Placement`: the Keras
order, channels first, or a Keras ``Flatten`` of a channels-first tensor
(whose elements then lie in C,H,W order, not Keras's H,W,C). A layer asks for
the placement it needs and a Transpose is added only where the placement
changes, so a chain of convolutions stays channels first, and a Dense after a
Flatten takes its kernel rows in C,H,W order instead of transposing the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

QONNX_DOMAIN = "qonnx.custom_op.general"
"""The domain qonnx, FINN and hls4ml expect on Quant / BipolarQuant nodes."""


class Placement(str, Enum):
    """How a Keras tensor's axes lie in its ONNX tensor (the batch axis first either way)."""

    KERAS = "keras"  # the Keras shape and order
    CHANNELS_FIRST = "channels_first"  # Keras (..., C) as (C, ...)
    FLAT_CHANNELS_FIRST = "flat_channels_first"  # Keras Flatten of (..., C), its elements in (C, ...) order

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Value:
    """A Keras tensor in the graph: its ONNX name, Keras shape (without batch) and placement.

    ``flat_from`` is the Keras shape a :attr:`Placement.FLAT_CHANNELS_FIRST`
    tensor was flattened from.
    """

    name: str
    shape: tuple[int, ...]
    placement: Placement = Placement.KERAS
    flat_from: tuple[int, ...] = ()

    def onnx_shape(self, batch: int) -> tuple[int, ...]:
        """The ONNX tensor's shape, batch first."""
        if self.placement is Placement.CHANNELS_FIRST:
            return (batch, self.shape[-1], *self.shape[:-1])
        return (batch, *self.shape)

    def feature_order(self) -> np.ndarray:
        """For a flat tensor: ``p`` with ONNX element ``j`` = Keras element ``p[j]`` (identity otherwise)."""
        n = int(np.prod(self.shape))
        if self.placement is not Placement.FLAT_CHANNELS_FIRST:
            return np.arange(n)
        rank = len(self.flat_from)
        return np.arange(n).reshape(self.flat_from).transpose(rank - 1, *range(rank - 1)).ravel()

    def channel_axis(self) -> int:
        """The ONNX axis (batch included) that holds Keras's last axis."""
        return 1 if self.placement is Placement.CHANNELS_FIRST else len(self.shape)


@dataclass
class Node:
    """One ONNX node, before it becomes a NodeProto."""

    op: str
    inputs: list[str]
    outputs: list[str]
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


class Graph:
    """Nodes, initializers and unique names, in the order the nodes are added (a topological order)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.quantized: set[str] = set()  # tensors that are an activation quantizer's output
        self.float_tensors: list[str] = []  # unquantized weights, written as plain float initializers
        self._names: set[str] = set()

    def fresh(self, hint: str) -> str:
        """A tensor or node name not used yet, readable from ``hint``."""
        name, i = hint, 1
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    def const(self, hint: str, array: Any, dtype: Any = np.float32) -> str:
        """A new initializer holding ``array`` (float32 unless ``dtype`` says otherwise)."""
        name = self.fresh(hint)
        self.initializers[name] = np.array(array, dtype, order="C")  # keeps 0-d scalars 0-d
        return name

    def add(self, op: str, inputs: list[str], hint: str, *, domain: str = "", **attrs: Any) -> str:
        """Append a node with one output; returns the output's name."""
        out = self.fresh(hint)
        self.nodes.append(Node(op, list(inputs), [out], self.fresh(f"{hint}/{op}"), attrs, domain))
        return out

    def quant(
        self, x: str, hint: str, scale: Any, bits: int, signed: bool, narrow: bool, rounding: str = "ROUND"
    ) -> str:
        """A Quant (IntQuant) node: ``clip(round(x / scale), lo, hi) * scale``, zero point 0."""
        inputs = [
            x,
            self.const(f"{hint}/scale", scale),
            self.const(f"{hint}/zeropt", 0.0),
            self.const(f"{hint}/bitwidth", float(bits)),
        ]
        return self.add(
            "Quant",
            inputs,
            hint,
            domain=QONNX_DOMAIN,
            signed=int(signed),
            narrow=int(narrow),
            rounding_mode=rounding,
        )

    def bipolar(self, x: str, hint: str, scale: Any) -> str:
        """A BipolarQuant node: ``scale`` where ``x >= 0``, else ``-scale``."""
        return self.add("BipolarQuant", [x, self.const(f"{hint}/scale", scale)], hint, domain=QONNX_DOMAIN)

    # ------------------------------------------------------------------ placements

    def channels_first(self, v: Value) -> Value:
        """``v`` with its channels on ONNX axis 1 (a Transpose where needed); rank <= 2 tensors as they are."""
        if v.placement is Placement.CHANNELS_FIRST or len(v.shape) < 2:
            return v
        v = self.keras(v)
        rank = len(v.shape) + 1
        name = self.add("Transpose", [v.name], f"{v.name}/nchw", perm=[0, rank - 1, *range(1, rank - 1)])
        return Value(name, v.shape, Placement.CHANNELS_FIRST)

    def keras(self, v: Value) -> Value:
        """``v`` in Keras's own shape and order (Transposes, and Reshapes around them for a flat tensor)."""
        if v.placement is Placement.KERAS:
            return v
        if v.placement is Placement.CHANNELS_FIRST:
            rank = len(v.shape) + 1
            name = self.add("Transpose", [v.name], f"{v.name}/nhwc", perm=[0, *range(2, rank), 1])
            return Value(name, v.shape)
        cf = Value("", v.flat_from, Placement.CHANNELS_FIRST)
        unflat = self.reshape(v.name, cf.onnx_shape(self.batch), f"{v.name}/unflatten")
        back = self.keras(Value(unflat, v.flat_from, Placement.CHANNELS_FIRST))
        return Value(self.reshape(back.name, (self.batch, *v.shape), f"{v.name}/flatten_hwc"), v.shape)

    def reshape(self, x: str, shape: tuple[int, ...], hint: str) -> str:
        """A Reshape to ``shape`` (batch first; qonnx's ChangeBatchSize rewrites that first entry)."""
        return self.add("Reshape", [x, self.const(f"{hint}/shape", shape, np.int64)], hint)

    def per_channel(self, v: Value, vector: np.ndarray, hint: str) -> str:
        """A constant holding one value per Keras last-axis channel, shaped to broadcast against ``v``."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        if v.placement is Placement.CHANNELS_FIRST:
            return self.const(hint, vector.reshape(-1, *[1] * (len(v.shape) - 1)))
        if v.placement is Placement.FLAT_CHANNELS_FIRST:
            return self.const(hint, vector[v.feature_order()])
        return self.const(hint, vector)
