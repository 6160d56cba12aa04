"""Padding: what the source padded, against what each Keras convolution computes; and the explicit fix.

Weights carry no padding, yet a convolution only computes the same thing in
both frameworks when both pad alike. TensorFlow's "same" puts the odd pixel
at the bottom/right (:mod:`qextract.padding`); PyTorch and Caffe pad
symmetrically (``padding=p``), so a stride-2 "same" layer with an even input
is shifted by one pixel. Keras expresses any explicit padding as a
``ZeroPadding2D(((top, bottom), (left, right)))`` before a "valid" layer.

The source's padding, per convolution:

- ``"symmetric"`` (the default for a PyTorch state dict): a Keras "same"
  layer was ``padding=dilation*(kernel-1)//2`` on every side in the source;
  a "valid" layer (with any ZeroPadding before it) is taken as ported already;
- ``"tf"`` (the default for TFLite, whose SAME is TensorFlow's, and for
  ``.npz`` files with Keras names): as the Keras layer, nothing to check;
- a qextract export: the explicit padding its manifest records;
- ``{"layer": pads}`` for named layers (the rest follow the default):
  ``p``, ``(ph, pw)`` as PyTorch's ``padding``, ``(top, bottom, left, right)``,
  or ``(left, right)`` for a 1-D layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._keras import generation
from ..errors import LayoutError, UnsupportedError, UsageError
from ..kinds import Kind
from ..padding import conv_pads
from . import _graph
from .records import PaddingCheck
from .targets import Target, inbound_layer

CHECKED = (Kind.CONV1D, Kind.CONV2D, Kind.DEPTHWISE_CONV2D, Kind.SEPARABLE_CONV1D, Kind.SEPARABLE_CONV2D)
RULES = ("symmetric", "tf")
MATCH, MISMATCH, PADDED = "match", "mismatch", "padded explicitly"


def parse_rule(source_padding: Any, default: str) -> tuple[str, dict[str, Any]]:
    """(rule for unnamed layers, {layer: explicit pads}) from the user's ``source_padding``."""
    if source_padding is None:
        return default, {}
    if isinstance(source_padding, str):
        rule = {"same": "tf", "keras": "tf", "tflite": "tf", "pytorch": "symmetric", "caffe": "symmetric"}.get(
            source_padding, source_padding
        )
        if rule not in RULES:
            raise UsageError(
                f"source_padding={source_padding!r}: choose 'symmetric' (PyTorch, Caffe), "
                f"'tf', or {{'layer': (top, bottom, left, right)}}"
            )
        return rule, {}
    if isinstance(source_padding, Mapping):
        return default, dict(source_padding)
    raise UsageError(
        f"source_padding must be 'symmetric', 'tf' or a dict of layer -> pads, not {type(source_padding).__name__}"
    )


def check_paddings(
    targets: list[Target], rule: str, given: Mapping[str, Any], recorded: Mapping[str, tuple[int, ...]]
) -> list[PaddingCheck]:
    """One check per convolution whose source padding is known (given, recorded, or by ``rule``)."""
    known = {t.path for t in targets}
    unknown = [name for name in given if name not in known]
    if unknown:
        raise UsageError(f"source_padding names {', '.join(map(repr, unknown))}, not layers of the model with weights")
    checks = []
    for t in targets:
        if t.kind not in CHECKED:
            if t.path in given:
                raise UsageError(f"source_padding: {t.where} is not a convolution with padding")
            continue
        check = _check(t, rule, given, recorded)
        if check is not None:
            checks.append(check)
    return checks


def _check(
    t: Target, rule: str, given: Mapping[str, Any], recorded: Mapping[str, tuple[int, ...]]
) -> PaddingCheck | None:
    layer = t.layer
    rank = len(layer.kernel_size)
    before = _zero_padding(layer, rank)
    own = _own(layer)
    if t.path in given:
        source, how = _normalize(given[t.path], rank, t), "given"
    elif rule == "export" and t.path in recorded:
        source, how = recorded[t.path], "export manifest"
        if own is None:
            return PaddingCheck(t.path, None, source, how, "not checked: input size unknown")
        return PaddingCheck(t.path, own, source, how, MATCH if own == source else MISMATCH)
    elif rule == "symmetric" and layer.padding == "same":
        sym = tuple(p for k, d in zip(layer.kernel_size, layer.dilation_rate) for p in (d * (k - 1) // 2,) * 2)
        source, how = _add(before, sym), "symmetric (PyTorch padding=dilation*(kernel-1)//2)"
    else:
        return None
    keras = None if own is None else _add(before, own)
    if keras is None:
        return PaddingCheck(t.path, None, source, how, "not checked: input size unknown")
    return PaddingCheck(t.path, keras, source, how, MATCH if keras == source else MISMATCH)


def _own(layer: Any) -> tuple[int, ...] | None:
    """(before, after) per spatial axis, flattened, as TensorFlow pads this layer; None if the input size is unknown."""
    try:
        shape = generation().input_shape(layer)
    except (AttributeError, RuntimeError):  # never called on its own (inside a TimeDistributed), or on several shapes
        shape = None
    sizes = tuple(shape[1:-1]) if isinstance(shape, tuple) else ()
    padding = layer.padding
    if (
        padding == "same"
        and any(s > 1 for s in layer.strides)
        and (len(sizes) != len(layer.kernel_size) or None in sizes)
    ):
        return None
    sizes = tuple(1 if s is None else s for s in sizes) if sizes else (1,) * len(layer.kernel_size)
    pads = conv_pads(padding, sizes, tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate))
    return tuple(int(p) for pair in pads for p in pair)


def _zero_padding(layer: Any, rank: int) -> tuple[int, ...]:
    before = inbound_layer(layer)
    if before is None:
        return (0,) * (2 * rank)
    name = type(before).__name__
    if name == "ZeroPadding2D" and rank == 2:
        return tuple(int(p) for pair in before.padding for p in pair)
    if name == "ZeroPadding1D" and rank == 1:
        return tuple(int(p) for p in before.padding)
    return (0,) * (2 * rank)


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b))


def _normalize(value: Any, rank: int, t: Target) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * (2 * rank)
    flat = [v for item in value for v in (item if isinstance(item, Sequence) else (item,))]
    nested = any(isinstance(item, Sequence) for item in value)
    if rank == 2 and len(flat) == 2 and not nested:
        return (flat[0], flat[0], flat[1], flat[1])  # PyTorch's (ph, pw)
    if len(flat) == 2 * rank and all(isinstance(v, int) and v >= 0 for v in flat):
        return tuple(flat)
    form = "p, (ph, pw) or (top, bottom, left, right)" if rank == 2 else "p or (left, right)"
    raise UsageError(f"source_padding for {t.where}: {value!r} is not a padding; give {form} (non-negative integers)")


def _names(rank: int) -> str:
    return "(top, bottom, left, right)" if rank == 2 else "(left, right)"


def _keras_layer_pad(pads: tuple[int, ...]) -> str:
    if len(pads) == 4:
        return f"ZeroPadding2D((({pads[0]}, {pads[1]}), ({pads[2]}, {pads[3]})))"
    return f"ZeroPadding1D(({pads[0]}, {pads[1]}))"


def mismatch_error(targets: list[Target], checks: list[PaddingCheck]) -> LayoutError:
    """One error naming every mismatched layer, both paddings and the fix."""
    by_path = {t.path: t for t in targets}
    parts = []
    for c in checks:
        t = by_path[c.layer]
        layer, rank = t.layer, len(t.layer.kernel_size)
        size = "x".join(str(s) for s in generation().input_shape(layer)[1:-1])
        assert c.source is not None and c.keras is not None
        parts.append(
            f"{t.where}: the source pads {_names(rank)} = {c.source} [{c.rule}], but padding='{layer.padding}' in "
            f"TensorFlow pads {c.keras} on its {size} input with strides {tuple(layer.strides)}, so the outputs "
            f"would differ. Fix: put {_keras_layer_pad(c.source)} before '{t.path}' and use padding='valid' "
            f"(load_weights(..., pad_explicitly=True) builds that model), or, if the source pads otherwise, "
            f"say how: source_padding={{'{t.path}': {_names(rank)}}}"
        )
    return LayoutError("; ".join(parts))


def padded_model(model: Any, targets: list[Target], checks: list[PaddingCheck]) -> Any:
    """A new model with a ZeroPadding layer of the source's padding before each mismatched layer, now "valid"."""
    config = _graph.functional_config(model)
    by_path = {t.path: t for t in targets}
    for c in checks:
        t = by_path[c.layer]
        if "/" in t.path:
            raise UnsupportedError(
                f"{t.where} is inside a nested model; pad_explicitly changes top-level layers only. "
                "Fix: pad it yourself"
            )
        rank = len(t.layer.kernel_size)
        if any(_zero_padding(t.layer, rank)):
            raise UnsupportedError(
                f"{t.where} already has a ZeroPadding layer before it; set that layer to {c.source} "
                "and the layer's padding to 'valid' yourself"
            )
        assert c.source is not None
        name = _graph.unique_name(config, f"{t.path}_pad")
        if rank == 2:
            pads = [[c.source[0], c.source[1]], [c.source[2], c.source[3]]]
            new = {
                "class_name": "ZeroPadding2D",
                "config": {"name": name, "padding": pads, "data_format": "channels_last"},
            }
        else:
            new = {"class_name": "ZeroPadding1D", "config": {"name": name, "padding": list(c.source)}}
        _graph.entry(config, t.path)["config"]["padding"] = "valid"
        _graph.insert_before(config, t.path, {"module": "keras.layers", "registered_name": None, **new})
    for e in config["layers"]:
        e.pop("build_config", None)  # shapes after an inserted padding are the rebuilt model's own
    new_model = _graph.rebuild(config, f"{model.name}_padded")
    _graph.copy_weights(model, new_model)
    return new_model
