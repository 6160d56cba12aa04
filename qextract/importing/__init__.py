"""The other direction: weights from a qextract export, a ``.tflite``, or a state dict into a Keras model.

:func:`load_weights` reads the source (one module per kind of source), binds
each source tensor to a Keras layer and tensor, converts it to the native
Keras layout with the exact inverse of the export's layouts, checks every
array, and only then assigns them all: the model changes only when
everything fits, and a failed assignment restores the previous weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._keras import require_keras_model
from ..errors import LayoutError, ModelLoadError, UnsupportedError, UsageError
from ..layouts import Layout
from . import pads
from .arrays import flatten_order, to_native
from .records import ASSIGNED, IGNORED, KEPT, UNUSED, Gathered, LoadReport, PaddingCheck, Placement
from .targets import Target, targets_of

__all__ = ["LoadReport", "PaddingCheck", "Placement", "load_weights"]

SOURCE_KINDS = {".tflite": "tflite", ".npz": "arrays", ".pt": "arrays", ".pth": "arrays"}


def load_weights(
    model: Any,
    source: str | os.PathLike[str],
    *,
    layout: str | Layout | None = None,
    strict: bool = True,
    mapping: Mapping[str, str | tuple[str, str]] | None = None,
    flatten_order: str | None = None,
    source_padding: str | Mapping[str, Any] | None = None,
    pad_explicitly: bool = False,
) -> LoadReport:
    """Assign weights from ``source`` to ``model``'s layers; return a report of what went where.

    ``source`` is a qextract export folder (its manifest says the layout), a
    ``.tflite`` file (ops matched to layers by type, shape and graph
    position), or an ``.npz`` / ``.pt`` of named arrays: PyTorch state-dict
    names (``features.0.weight``: modules paired with the model's layers in
    order, or by ``mapping={"keras_layer": "module"}``) or Keras names
    (``conv1/kernel``). An ``.npz`` needs ``layout`` (``"oihw"`` for PyTorch,
    ``"ohwi"``, ``"hwio"``); a ``.pt`` defaults to ``"oihw"``.

    ``flatten_order`` is the order of a Dense-after-Flatten kernel's input
    axis in the source: ``"chw"`` (PyTorch's NCHW flatten, the default for
    oihw) or ``"hwc"`` (Keras, TFLite). ``source_padding`` says how the
    source padded its convolutions (``"symmetric"``, the default for a
    PyTorch state dict; ``"tf"``; or ``{"layer": (top, bottom, left, right)}``);
    a padding Keras's own does not reproduce is an error naming the
    ``ZeroPadding2D`` + ``padding="valid"`` that does, unless
    ``pad_explicitly=True``: then the weights go into a new model with those
    layers inserted (``report.model``) and ``model`` is left as it is.

    ``strict`` (default) refuses source tensors the model has no place for
    and model tensors the source lacks, naming them all; with
    ``strict=False`` such layers keep their weights and the report says so.
    Nothing is assigned unless every tensor fits.

    >>> report = qextract.load_weights(model, "model.tflite")          # doctest: +SKIP
    >>> report = qextract.load_weights(model, "state.npz", layout="oihw")  # doctest: +SKIP
    >>> report.table()                                                 # doctest: +SKIP
    """
    require_keras_model(model)
    path = Path(source)
    kind = _source_kind(path)
    lay = None if layout is None else Layout.parse(layout)
    found, targets = _gather(model, path, kind, lay, mapping, flatten_order)
    rule, given = pads.parse_rule(source_padding, found.padding_rule)
    checks = pads.check_paddings(targets, rule, given, found.paddings)
    mismatched = [c for c in checks if c.status == pads.MISMATCH]
    receiver = model
    if pad_explicitly:
        receiver = pads.padded_model(model, targets, mismatched) if mismatched else _copy(model)
        found, targets = _gather(receiver, path, kind, lay, mapping, flatten_order)
        padded = {c.layer for c in mismatched}
        checks = [
            PaddingCheck(c.layer, c.source, c.source, c.rule, pads.PADDED) if c.layer in padded else c for c in checks
        ]
    elif mismatched:
        raise pads.mismatch_error(targets, mismatched)
    placements, arrays = _plan(found, targets, strict)
    _assign(targets, arrays)
    return LoadReport(receiver, str(path), found.kind, tuple(placements), tuple(checks))


def _source_kind(path: Path) -> str:
    if path.is_dir():
        return "export"
    if not path.exists():
        raise ModelLoadError(f"{path}: no such weights source (an export folder, .tflite, .npz or .pt file)")
    kind = SOURCE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(
            f"{path}: unknown kind of weights source '{path.suffix}'; "
            "give a qextract export folder, a .tflite, .npz or .pt file"
        )
    return kind


def _gather(
    model: Any, path: Path, kind: str, layout: Layout | None, mapping: Mapping[str, Any] | None, order: str | None
) -> tuple[Gathered, list[Target]]:
    targets = targets_of(model)
    if mapping and kind != "arrays":
        raise UsageError(
            f"{path}: mapping pairs PyTorch modules with layers; a {kind} source is matched by its own names"
        )
    if kind == "export":
        from .export_dir import read_export

        if order is not None:
            raise UsageError(f"{path}: an export's manifest records its flatten order; leave flatten_order out")
        found = read_export(path, targets, layout)
    elif kind == "tflite":
        from .tflite import read_tflite

        if layout not in (None, Layout("ohwi")):
            raise LayoutError(
                f"{path}: a .tflite file holds its weights in layout ohwi, not {layout}. Fix: leave layout out"
            )
        if order not in (None, "hwc"):
            raise UsageError(f"{path}: TFLite flattens channels_last (hwc), not {order}")
        found = read_tflite(path, targets)
    else:
        from .state_dict import read_arrays

        if layout is None:
            if path.suffix.lower() == ".npz":
                raise UsageError(
                    f"{path}: an .npz does not say its layout. Fix: pass layout='oihw' (PyTorch / ONNX / Caffe), "
                    "'ohwi' (TFLite) or 'hwio' (Keras).",
                    arguments=("layout",),
                )
            layout = Layout("oihw")
        found = read_arrays(path, targets, layout, flatten_order(order, layout), mapping)
    return found, targets


def _copy(model: Any) -> Any:
    from . import _graph

    config = _graph.functional_config(model)
    new = _graph.rebuild(config, f"{model.name}_copy")
    _graph.copy_weights(model, new)
    return new


def _plan(
    found: Gathered, targets: list[Target], strict: bool
) -> tuple[list[Placement], dict[str, dict[str, np.ndarray]]]:
    """Every native array, checked, and the placements; errors name every problem at once."""
    by_path = {t.path: t for t in targets}
    placements: list[Placement] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    seen: dict[tuple[str, str], str] = {}
    for inc in found.incoming:
        t = by_path[inc.layer]
        if t.folded:
            raise UnsupportedError(
                f"{t.where} folds a batch norm into its kernel and bias: a source holds at most the folded values, "
                "from which the layer's six tensors cannot be recovered. Fix: load into a model with a QConv2D "
                "(or QDepthwiseConv2D) in its place, which takes the folded kernel and bias as they are"
            )
        if (inc.layer, inc.tensor) in seen:
            raise LayoutError(
                f"{t.where}, tensor '{inc.tensor}': given twice, by {seen[inc.layer, inc.tensor]} and {inc.source}"
            )
        seen[inc.layer, inc.tensor] = inc.source
        try:
            native, transform = to_native(t, inc)
        except LayoutError as e:
            raise LayoutError(f"{e}. {found.hint}" if found.hint else str(e)) from None
        arrays.setdefault(t.path, {})[inc.tensor] = native
        placements.append(
            Placement(
                t.path,
                t.class_name,
                inc.tensor,
                inc.source,
                str(inc.layout),
                tuple(np.shape(inc.array)),
                native.shape,
                transform,
                inc.values,
                ASSIGNED,
            )
        )
    rank = {t.path: i for i, t in enumerate(targets)}
    placements.sort(key=lambda p: (rank[p.layer], by_path[p.layer].tensors.index(p.tensor)))  # model order
    missing = [
        (t, name) for t in targets for name in t.tensors if (t.path, name) not in seen and name not in t.folded_tensors
    ]
    if strict and (missing or found.unused):
        raise LayoutError(_strict_message(missing, found.unused, found.hint), arguments=("strict",))
    for t, name in missing:
        placements.append(Placement(t.path, t.class_name, name, "", "", (), t.shapes[name], "", "", KEPT))
    for t in targets:
        for name in t.folded_tensors:  # computed from several variables: nothing can be assigned to it
            placements.append(
                Placement(t.path, t.class_name, name, "", "", (), t.shapes[name], "folded, not loadable", "", KEPT)
            )
    for name, why in found.unused:
        placements.append(Placement("", "", "", name, "", (), (), why, "", UNUSED))
    for name, why in found.ignored:
        placements.append(Placement("", "", "", name, "", (), (), why, "", IGNORED))
    return placements, arrays


def _strict_message(missing: list[tuple[Target, str]], unused: list[tuple[str, str]], hint: str) -> str:
    parts = []
    if missing:
        names = ", ".join(f"{t.path}/{name}" for t, name in missing)
        parts.append(f"the source has nothing for {len(missing)} tensor(s) of the model: {names}")
    if unused:
        names = "; ".join(f"{name} ({why})" for name, why in unused)
        parts.append(f"the model has no place for {len(unused)} source tensor(s): {names}")
    fix = (
        "Fix: load a source that fits the model, or pass strict=False to keep the weights of what is missing "
        "and leave out the rest"
    )
    return "; ".join(parts) + (f". {hint.strip().rstrip('.')}" if hint else "") + f". {fix}"


def _assign(targets: list[Target], arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """Set every layer's new weights; if one fails, put back what was already set."""
    done: list[tuple[Any, list[np.ndarray]]] = []
    try:
        for t in targets:
            if t.path not in arrays:
                continue
            old = t.layer.get_weights()
            new = list(old)
            for name, array in arrays[t.path].items():
                new[t.index[name]] = array
            t.layer.set_weights(new)
            done.append((t.layer, old))
    except BaseException:
        for layer, old in reversed(done):
            layer.set_weights(old)
        raise
