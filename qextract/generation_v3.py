"""qkeras-v3's tables and helpers for :mod:`qextract.generation` (``KERAS3``): its constructors, files and graphs.

Kept beside the :class:`~qextract.generation.Generation` that uses them: how Keras 3 keeps a
layer's graph nodes and writes a configuration's calls (``args`` holding ``__keras_tensor__``
entries), the
arguments qkeras-v3's quantizer constructors take where they are not QKeras 0.9's, those the
NumPy forms reproduce at their default only, and the order in which a Keras 3 ``.keras``
archive numbers each layer class's variables (the order its ``build`` creates them, trainable
first, then the rest: what ``Layer.save_own_variables`` writes).
"""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedError

Shape = tuple[Any, ...]

V3_QUANTIZER_ARGUMENTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "binary": (
        ("use_01", False),
        ("alpha", None),
        ("training", False),
        ("use_stochastic_rounding", False),
        ("scale_axis", None),
        ("elements_per_scale", None),
        ("min_po2_exponent", None),
        ("max_po2_exponent", None),
    ),
    "quantized_bits": (
        ("bits", 8),
        ("integer", 0),
        ("symmetric", 0),
        ("keep_negative", True),
        ("alpha", None),
        ("use_stochastic_rounding", False),
        ("scale_axis", None),
        ("qnoise_factor", 1.0),
        ("var_name", None),
        ("use_ste", True),
        ("use_variables", False),
        ("elements_per_scale", None),
        ("min_po2_exponent", None),
        ("max_po2_exponent", None),
        ("post_training_scale", None),
    ),
}
# qkeras-v3's scales per group of elements, bounded po2 exponents, a fixed post-training scale, binary's
# per-axis scale and training flag: not in QKeras 0.9, so no NumPy form reproduces a value other than the default.
V3_DEFAULT_ONLY_ARGUMENTS: dict[str, frozenset[str]] = {
    "binary": frozenset({"training", "scale_axis", "elements_per_scale", "min_po2_exponent", "max_po2_exponent"}),
    "quantized_bits": frozenset({"elements_per_scale", "min_po2_exponent", "max_po2_exponent", "post_training_scale"}),
}
V3_NUMBERED_VARIABLES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "Dense", "QDense", "Conv1D", "Conv2D", "QConv1D", "QConv2D", "Conv2DTranspose", "QConv2DTranspose",
            "QConv2DBatchnorm",
        ),
        ("kernel", "bias?use_bias"),
    ),
    "DepthwiseConv2D": ("kernel", "bias?use_bias"),
    "QDepthwiseConv2D": ("depthwise_kernel", "bias?use_bias"),
    "QDepthwiseConv2DBatchnorm": ("depthwise_kernel", "bias?use_bias", "iteration"),
    **dict.fromkeys(
        ("SeparableConv1D", "SeparableConv2D", "QSeparableConv1D", "QSeparableConv2D"),
        ("depthwise_kernel", "pointwise_kernel", "bias?use_bias"),
    ),
    **dict.fromkeys(
        ("BatchNormalization", "QBatchNormalization"),
        ("gamma?scale", "beta?center", "moving_mean", "moving_variance"),
    ),
}  # fmt: skip


def _node_shapes(layer: Any, attribute: str, what: str) -> list[Shape | list[Shape]]:
    """The shape of ``attribute`` (one tensor's, or a list) at every graph node of ``layer``, first call first."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        raise AttributeError(f"layer '{layer.name}' has never been called and has no {what} shape")
    shapes: list[Shape | list[Shape]] = []
    for node in nodes:
        found = [tuple(t.shape) for t in getattr(node, attribute)]
        shapes.append(found[0] if len(found) == 1 else found)
    return shapes


def _node_shape(layer: Any, attribute: str, what: str) -> Any:
    """The one shape of ``attribute`` over every graph node of ``layer`` (tf-keras's rule for ``input_shape``)."""
    shapes = _node_shapes(layer, attribute, what)
    if any(s != shapes[0] for s in shapes[1:]):
        raise RuntimeError(f"layer '{layer.name}' has several inbound nodes with different {what} shapes")
    return shapes[0]


def _is_ref(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _legacy_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One layer entry of a Keras 3 configuration with tf-keras's ``inbound_nodes`` and ``batch_input_shape``."""
    entry = dict(entry)
    if entry.get("class_name") == "InputLayer" and "batch_shape" in entry.get("config", {}):
        inner = dict(entry["config"])
        inner["batch_input_shape"] = inner.pop("batch_shape")
        entry["config"] = inner
    nodes = []
    for node in entry.get("inbound_nodes", []):
        if not isinstance(node, dict):
            nodes.append(node)
            continue
        # Keras 3 records the call context's training=False (inference) on every layer that takes it; tf-keras
        # records only arguments the model's code passed.
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if not (k == "training" and not v)}
        refs: list[list[Any]] = []
        _tensor_refs(node.get("args", []), refs, entry.get("name", "?"))
        nodes.append([[*ref, kwargs] for ref in refs])
    if "inbound_nodes" in entry:
        entry["inbound_nodes"] = nodes
    return entry


def _tensor_refs(args: Any, refs: list[list[Any]], layer: str) -> None:
    """The ``[layer, node, tensor]`` of every symbolic tensor in a Keras 3 node's ``args``, in order."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        refs.append(list(args["config"]["keras_history"]))
    elif isinstance(args, (list, tuple)):
        for a in args:
            _tensor_refs(a, refs, layer)
    else:
        raise UnsupportedError(
            f"layer '{layer}' is called with an argument that is not a tensor ({str(args)[:80]}); qextract rebuilds "
            "and walks only layers called on tensors"
        )
