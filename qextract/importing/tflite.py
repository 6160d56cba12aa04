"""Read a ``.tflite`` file's weights and match them to Keras layers by op type, shape and graph position.

The interpreter's op list is walked in graph order; each CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV gives its filter and
bias (int8/int16 tensors dequantized with their scales and zero points, per
channel where the file says so; float16 through a DEQUANTIZE op widened).
Every Keras layer with weights expects ops of a type and OHWI weight shape
(a SeparableConv2D two: depthwise then 1x1). Within a group of the same type
and shape, ops are paired with layers

1. by name, when TFLite's tensor names (``model/<layer>/Conv2D``, which its
   converter writes) name every layer of the group, else
2. in graph order, when the group's layers lie on one path of the model (a
   chain: graph order then is model order), else
3. not at all: the error names the layers and the candidate ops.

TFLite keeps no batch-norm tensors (its converter folds them into the
preceding convolution) and, with no activation between two Dense layers,
folds the first bias into the second (``W2·b1 + b2``): both are refused with
the layer's name, since no loader can undo a fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .._keras import generation, quiet_keras, tf
from ..errors import LayoutError, ModelLoadError, UnsupportedError
from ..kinds import Kind
from ..layouts import Layout
from .records import Gathered, Incoming
from .targets import Target

OHWI = Layout("ohwi")
BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
WEIGHT_INPUT = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}
PASSING = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # ops between two linear layers that a converter folds through


@dataclass
class _Op:
    index: int
    type: str
    weight: np.ndarray
    weight_name: str
    how: str
    bias: np.ndarray | None
    bias_name: str
    mentions: set[str]
    feeds_linear: bool  # its output reaches another weighted op directly (or through a reshape)

    @property
    def label(self) -> str:
        return f"op {self.index} {self.type} '{self.weight_name}'"


@dataclass(frozen=True)
class _Slot:
    """One op a Keras layer expects: its type, the OHWI weight shape, and which tensor it fills."""

    target: Target
    tensor: str
    type: str
    shape: tuple[int, ...]
    squeeze: bool  # a 1-D layer's op carries an extra unit axis 1
    takes_bias: bool

    @property
    def signature(self) -> tuple[str, tuple[int, ...]]:
        return self.type, self.shape


def read_tflite(path: Path, targets: list[Target]) -> Gathered:
    """The weights of the ``.tflite`` at ``path``, bound for ``targets``."""
    ops = _read_ops(path, {t.path for t in targets})
    slots = _slots(targets)
    found = Gathered(kind="TFLite", padding_rule="tf")
    used: set[int] = set()
    groups: dict[tuple[str, tuple[int, ...]], list[_Slot]] = {}
    for slot in slots:
        groups.setdefault(slot.signature, []).append(slot)
    for signature, group in groups.items():
        candidates = [op for op in ops if (op.type, op.weight.shape) == signature]
        if not candidates:
            same_type = "; ".join(f"{op.label} {op.weight.shape}" for op in ops if op.type == signature[0]) or "none"
            layers = ", ".join(f"{s.target.where} ({s.tensor})" for s in group)
            found.hint += (
                f"{layers}: no {signature[0]} op with weights {signature[1]}; "
                f"the file's {signature[0]} ops: {same_type}. "
            )
        for slot, op in _pair(group, candidates):
            used.add(op.index)
            _bind(slot, op, found)
    for op in ops:
        if op.index not in used:
            found.unused.append((op.label, "no Keras layer expects a weight of this op type and shape"))
    return found


def _slots(targets: list[Target]) -> list[_Slot]:
    slots, refused = [], []
    for t in targets:
        s = t.shapes
        if t.kind is Kind.DENSE:
            i, o = s["kernel"]
            slots.append(_Slot(t, "kernel", "FULLY_CONNECTED", (o, i), False, True))
        elif t.kind is Kind.CONV2D:
            h, w, i, o = s["kernel"]
            slots.append(_Slot(t, "kernel", "CONV_2D", (o, h, w, i), False, True))
        elif t.kind is Kind.CONV1D:
            k, i, o = s["kernel"]
            slots.append(_Slot(t, "kernel", "CONV_2D", (o, 1, k, i), True, True))
        elif t.kind is Kind.DEPTHWISE_CONV2D:
            h, w, c, m = s["depthwise_kernel"]
            slots.append(_Slot(t, "depthwise_kernel", "DEPTHWISE_CONV_2D", (1, h, w, c * m), False, True))
        elif t.kind is Kind.SEPARABLE_CONV2D:
            (h, w, c, m), (_, _, cm, o) = s["depthwise_kernel"], s["pointwise_kernel"]
            slots.append(_Slot(t, "depthwise_kernel", "DEPTHWISE_CONV_2D", (1, h, w, c * m), False, False))
            slots.append(_Slot(t, "pointwise_kernel", "CONV_2D", (o, 1, 1, cm), False, True))
        elif t.kind is Kind.SEPARABLE_CONV1D:
            (k, c, m), (_, cm, o) = s["depthwise_kernel"], s["pointwise_kernel"]
            slots.append(_Slot(t, "depthwise_kernel", "DEPTHWISE_CONV_2D", (1, 1, k, c * m), True, False))
            slots.append(_Slot(t, "pointwise_kernel", "CONV_2D", (o, 1, 1, cm), True, True))
        elif t.kind is Kind.CONV2D_TRANSPOSE:
            h, w, o, i = s["kernel"]
            slots.append(_Slot(t, "kernel", "TRANSPOSE_CONV", (o, h, w, i), False, True))
        elif t.tensors:
            refused.append(t)
    if refused:
        raise UnsupportedError("; ".join(_refusal(t) for t in refused))
    return slots


def _refusal(t: Target) -> str:
    if t.kind is Kind.BATCHNORM:
        return (
            f"{t.where}: a .tflite file holds no batch-norm tensors (TFLite's converter folds a batch norm into "
            "the preceding convolution, whose weights then are not the convolution's own). Fix: load from a "
            "qextract export or a state dict, or load a model without batch norm"
        )
    return f"{t.where}: qextract reads no TFLite op for {t.kind} layers. Fix: load it from a qextract export or an .npz"


def _read_ops(path: Path, paths: set[str]) -> list[_Op]:
    t = tf()
    try:
        with quiet_keras():
            resolver = t.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            interpreter = t.lite.Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{path}: not a readable .tflite file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the public API has no op list; this is what tflite's own tools use
    producer = {out: op for op in ops for out in op["outputs"]}
    consumers: dict[int, list[dict[str, Any]]] = {}
    for op in ops:
        for i in op["inputs"]:
            consumers.setdefault(i, []).append(op)
    out = []
    for op in ops:
        kind = op["op_name"]
        if kind not in WEIGHT_INPUT:
            continue
        w_index = op["inputs"][WEIGHT_INPUT[kind]]
        weight, how, w_name = _constant(interpreter, details, producer, w_index)
        b_at = BIAS_INPUT[kind]
        b_index = op["inputs"][b_at] if len(op["inputs"]) > b_at else -1
        bias, _, b_name = _constant(interpreter, details, producer, b_index) if b_index >= 0 else (None, "", "")
        names = [w_name, b_name]
        out.append(
            _Op(
                int(op["index"]),
                kind,
                weight,
                w_name,
                how,
                bias,
                b_name,
                _mentions(names, paths),
                _feeds_linear(op, consumers),
            )
        )
    return out


def _constant(
    interpreter: Any, details: dict[int, Any], producer: dict[int, Any], index: int
) -> tuple[np.ndarray, str, str]:
    """A constant tensor as float32, how it was stored, and its name (through a DEQUANTIZE op)."""
    how = ""
    if index in producer and producer[index]["op_name"] == "DEQUANTIZE":
        index = producer[index]["inputs"][0]
        how = "through DEQUANTIZE; "
    d = details[index]
    if index in producer:
        raise LayoutError(
            f"TFLite tensor '{d['name']}' is computed by a {producer[index]['op_name']} op, not stored; "
            "qextract reads stored weights only"
        )
    a = interpreter.get_tensor(index)
    q = d["quantization_parameters"]
    scales, zeros, axis = (
        np.asarray(q["scales"], np.float32),
        np.asarray(q["zero_points"]),
        int(q["quantized_dimension"]),
    )
    if np.issubdtype(a.dtype, np.integer) and scales.size:
        shape = [1] * a.ndim
        if scales.size > 1:
            shape[axis] = -1
        # As TFLite's own DEQUANTIZE: (q - zero_point) * scale in float32.
        values = (a.astype(np.int64) - zeros.reshape(shape)).astype(np.float32) * scales.reshape(shape)
        per = f"per-channel axis {axis}" if scales.size > 1 else "per-tensor"
        return values.astype(np.float32), f"{how}{a.dtype} dequantized ({per})", d["name"]
    if not np.issubdtype(a.dtype, np.floating):
        raise LayoutError(f"TFLite tensor '{d['name']}' is {a.dtype} without a scale; it cannot be read as weights")
    return a.astype(np.float32), f"{how}{a.dtype}", d["name"]


def _mentions(names: list[str], paths: set[str]) -> set[str]:
    """Keras layer paths named in TFLite tensor names ``model/<layer>/...`` (fused names joined by ';')."""
    gen = generation()
    found = set()
    for name in names:
        for part in filter(None, name.split(";")):
            parts = part.split("/")[1:]  # the first component is the converted model's name
            for path in paths:
                wanted = path.split("/")
                if len(parts) >= len(wanted) and all(map(gen.traced_scope, parts, wanted)):
                    found.add(path)
    return found


def _feeds_linear(op: dict[str, Any], consumers: dict[int, list[dict[str, Any]]]) -> bool:
    pending, seen = list(op["outputs"]), set()
    while pending:
        tensor = pending.pop()
        for nxt in consumers.get(tensor, []):
            if nxt["op_name"] in WEIGHT_INPUT:
                return True
            if nxt["op_name"] in PASSING and nxt["index"] not in seen:
                seen.add(nxt["index"])
                pending.extend(nxt["outputs"])
    return False


def _pair(group: list[_Slot], candidates: list[_Op]) -> list[tuple[_Slot, _Op]]:
    """Slots of one signature with their ops: by name, else by graph order on a chain, else an error."""
    if not candidates:
        return []
    by_name = [[op for op in candidates if slot.target.path in op.mentions] for slot in group]
    if all(len(named) == 1 for named in by_name) and len({named[0].index for named in by_name}) == len(group):
        return [(slot, named[0]) for slot, named in zip(group, by_name)]
    if len(candidates) == len(group) and _chain([slot.target.layer for slot in group]):
        return list(zip(group, candidates))
    kind, shape = group[0].signature
    layers = ", ".join(f"{s.target.where} ({s.tensor})" for s in group)
    ops = "; ".join(op.label for op in candidates)
    why = (
        f"{len(candidates)} candidate op(s) for {len(group)} layer(s)"
        if len(candidates) != len(group)
        else "the layers lie on parallel branches, so graph order does not say which is which"
    )
    raise LayoutError(
        f"cannot tell which {kind} op with weights {shape} belongs to which layer: {layers}; "
        f"candidates: {ops} ({why}). "
        "Fix: name the Keras layers as in the converted model "
        "(TFLite's tensor names then decide), or load from an export or .npz"
    )


def _chain(layers: list[Any]) -> bool:
    """True when each layer is an ancestor of the next in the model's graph (so graph order is model order)."""
    return all(_reaches(first, second) for first, second in pairwise(layers))


def _reaches(ancestor: Any, layer: Any) -> bool:
    pending, seen = [layer], set()
    while pending:
        current = pending.pop()
        for inbound in generation().inbound_layers(current):
            for parent in inbound:
                if parent is ancestor:
                    return True
                if id(parent) not in seen:
                    seen.add(id(parent))
                    pending.append(parent)
    return False


def _bind(slot: _Slot, op: _Op, found: Gathered) -> None:
    t = slot.target
    if len(op.mentions) > 1 and t.path in op.mentions:
        others = ", ".join(sorted(op.mentions - {t.path}))
        raise LayoutError(
            f"{t.where}: {op.label} mixes the tensors of layers {others} into this layer's (TFLite's converter "
            "folded them), so it does not hold the layer's own weights. "
            "Fix: load from a qextract export or a state dict"
        )
    weight = op.weight.reshape(op.weight.shape[:1] + op.weight.shape[2:]) if slot.squeeze else op.weight
    note = "unit axis 1 of the 2-D op dropped" if slot.squeeze else ""
    found.incoming.append(Incoming(t.path, slot.tensor, weight, op.label, OHWI, op.how, "hwc", note=note))
    has_bias = "bias" in t.tensors
    if slot.takes_bias and has_bias and op.bias is not None:
        found.incoming.append(
            Incoming(t.path, "bias", op.bias, f"op {op.index} {op.type} '{op.bias_name}'", OHWI, op.how)
        )
    elif slot.takes_bias and has_bias:
        if op.feeds_linear:
            raise LayoutError(
                f"{t.where} has a bias, but its {op.label} has none and feeds another layer with weights: TFLite's "
                "converter folds a Dense bias into the next layer's (W2·b1 + b2) when no activation lies between them, "
                "and no loader can undo that (a zero bias is dropped the same way). Fix: convert the model with an "
                "activation between the two layers, or load from a qextract export or a state dict"
            )
        zero = np.zeros(t.shapes["bias"], np.float32)
        found.incoming.append(
            Incoming(t.path, "bias", zero, f"{op.label} (no bias input)", OHWI, "zero", note="TFLite omits a zero bias")
        )
    elif op.bias is not None and np.any(op.bias != 0):
        found.unused.append((f"op {op.index} {op.type} '{op.bias_name}'", f"{t.where} has no bias for this op"))
