"""Proof by recomputation: layer outputs from the exported files against the Keras layers.

The export is read back by :mod:`qextract.verification.readback` (paths,
hashes, every file's codes agreeing, ``codes x scale``); here each tensor's
exported layout is interpreted from the manifest's axis letters
(independently of the code that wrote it) back into Keras's native order,
and each layer is recomputed (:mod:`qextract.verification.recomputation`)
and compared with the Keras layer's own output on deterministic input.

The export must also be complete: it must hold every layer of the model
that has weights, or say (``selected_layers``) exactly which layers it was
restricted to; an export without tensors proves nothing and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VerificationError
from ..kinds import Kind, find_kind
from ..manifest.entries import LayerEntry, Manifest, TensorEntry
from ..reading.nested import find_layer, placed_layers
from . import recomputation as recompute
from .readback import check_all_files_listed, load, load_export, read_codes, read_manifest

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_export", "read_codes", "read_manifest", "verify"]

# Native Keras axis letters per layer kind and tensor, in the manifest's alphabet.
_NATIVE: dict[tuple[Kind, str], str] = {
    (Kind.DENSE, "kernel"): "IO",
    (Kind.CONV1D, "kernel"): "KIO",
    (Kind.CONV2D, "kernel"): "HWIO",
    (Kind.CONV2D_TRANSPOSE, "kernel"): "HWOI",
    (Kind.DEPTHWISE_CONV2D, "depthwise_kernel"): "HWCM",
    (Kind.SEPARABLE_CONV2D, "depthwise_kernel"): "HWCM",
    (Kind.SEPARABLE_CONV2D, "pointwise_kernel"): "HWIO",
    (Kind.SEPARABLE_CONV1D, "depthwise_kernel"): "KCM",
    (Kind.SEPARABLE_CONV1D, "pointwise_kernel"): "KIO",
    **{(kind, "kernel"): "IG" for kind in recompute.RECURRENT},
    **{(kind, "recurrent_kernel"): "UG" for kind in recompute.RECURRENT},
}
VERIFIED_KINDS = (*recompute.FEEDFORWARD, *recompute.RECURRENT)
"""Layer kinds recomputed in NumPy; any other kind's exported values are compared with the layer's variables."""


def _to_native(kind: str, t: TensorEntry, value: np.ndarray, layer: LayerEntry) -> np.ndarray:
    """Read the exported array through its axis letters back into the native Keras order."""
    name, axes = t.name, t.axes
    if layer.flatten_shape is not None and kind == Kind.DENSE and name == "kernel":
        return _flattened_to_native(t, value, layer)
    native = _NATIVE.get((find_kind(kind) or Kind.OTHER, name.rsplit("/", 1)[-1]))  # a Bidirectional's "forward/kernel"
    if native is None or axes == native:
        return value
    if sorted(axes) == sorted(native):
        return value.transpose([axes.index(a) for a in native])
    if native.endswith("CM") and "O" in axes and "1" in axes:  # depthwise: O is the merged c*M + m axis
        m = layer.geometry.depth_multiplier or 1
        squeezed, rest = np.squeeze(value, axis=axes.index("1")), axes.replace("1", "")
        moved = squeezed.transpose([rest.index(a) for a in native[:-2] + "O"])
        return moved.reshape(*moved.shape[:-1], -1, m)
    raise VerificationError(f"{t.key}: cannot interpret exported axes '{axes}' for a {kind} tensor")


_KERAS_FLATTEN = {1: "C", 2: "LC", 3: "HWC", 4: "DHWC"}  # how Keras flattens a channels-last activation
_CONV_LETTERS = {"I": "C", "K": "L"}  # a Dense in convolution form: its axis letters as activation letters


def _flattened_to_native(t: TensorEntry, value: np.ndarray, layer: LayerEntry) -> np.ndarray:
    """A Dense kernel fed by Flatten back to Keras's (inputs in channels-last flatten order, O).

    Every input letter gets its own axis: a matrix (``OI``/``IO``) has its
    input axis split in the manifest's ``flatten_order``; a convolution form
    (``OIHW``, ``OHWI``, ``HWIO``, ...) names each axis already.
    """
    shape, axes = list(layer.flatten_shape or ()), t.axes
    keras = _KERAS_FLATTEN.get(len(shape), "?")
    if sorted(axes) == ["I", "O"]:
        letters = axes.replace("I", layer.flatten_order or keras)  # exports before flatten_order kept Keras's
    else:
        letters = "".join(_CONV_LETTERS.get(a, a) for a in axes)
    if sorted(letters) != sorted("O" + keras) or value.ndim != len(axes):
        raise VerificationError(
            f"{t.key}: cannot interpret axes '{axes}' (flatten_order {layer.flatten_order!r}) "
            f"for a Dense fed by Flatten of {shape}"
        )
    sizes = {**dict(zip(keras, shape)), "O": value.shape[axes.index("O")]}
    split = value.reshape([sizes[a] for a in letters])
    return split.transpose([letters.index(a) for a in keras + "O"]).reshape(-1, sizes["O"])


def _check_coverage(where: Path, manifest: Manifest, model: Any) -> None:
    """The export holds tensors, and every layer of the model with weights, or exactly its ``selected_layers``."""
    names = [layer.name for layer in manifest.layers]
    if not manifest.tensors:
        raise VerificationError(
            f"{where}: the export holds no tensors, so there is nothing to prove. Fix: re-export the model."
        )
    if manifest.selected_layers is not None:
        selected = list(manifest.selected_layers)
        missing, extra = [n for n in selected if n not in names], [n for n in names if n not in selected]
        if missing or extra:
            raise VerificationError(
                f"{where}: selected_layers names {_names(selected)} but the manifest lists {_names(names)}"
                + (f"; missing: {_names(missing)}" if missing else "")
                + (f"; not selected: {_names(extra)}" if extra else "")
            )
        return
    missing = [n for n, layer in _model_layers(model).items() if _has_tensors(layer) and not _listed(n, names)]
    if missing:
        raise VerificationError(
            f"{where}: the model's layer(s) {_names(missing)} have weights but are not in the export, and the manifest "
            "does not say the export was restricted (selected_layers is null): the export is incomplete or was edited. "
            "Fix: re-export, or verify against the model the export was made from."
        )


def _model_layers(model: Any) -> dict[str, Any]:
    """The model's layers by key, as extraction walks them (``outer/inner`` inside nested models and wrappers)."""
    return {p.key: p.layer for p in placed_layers(model)}


def _has_tensors(layer: Any) -> bool:
    """A layer qextract exports tensors for: it has weights, or it is an average pooling with a quantized multiplier."""
    return bool(layer.weights) or bool(getattr(layer, "average_quantizer", None))


def _listed(name: str, names: list[str]) -> bool:
    return name in names or any(n.startswith(f"{name}/") for n in names)


def _names(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def verify(out_dir: str | os.PathLike[str], model: Any, *, samples: int = 4, seed: int = 0) -> pd.DataFrame:
    """Recompute each exported layer from the files alone and compare with ``model``'s layers.

    Returns one row per layer with tensors: layer, class, kind, layout, max
    abs error, tolerance, ``passed`` (always a bool), ``route`` (how it was
    compared: ``numpy``, ``numpy (window sum x multiplier)``, ``numpy-recurrent``,
    ``weights`` or ``none``) and ``note``. See :mod:`qextract.verification.recomputation`.
    ``table.attrs["formats_checked"]`` lists the formats whose files were read
    and found to hold identical codes; ``table.attrs["selected_layers"]`` the
    manifest's restriction (None: the whole model). Raises VerificationError
    when the files disagree, leave the folder, or the export is incomplete;
    NotAnExportError when ``out_dir`` holds no readable manifest.
    """
    import pandas as pd

    root = Path(out_dir)
    manifest, values, formats = load(root)
    where = root / "manifest.json"
    _check_coverage(where, manifest, model)
    check_all_files_listed(root, manifest)
    rng = np.random.default_rng(seed)
    rows = []
    for layer in manifest.layers:
        if not layer.tensors:
            continue
        kind, name = layer.kind, layer.name
        row = {"layer": name, "class": layer.class_name, "kind": kind, "layout": str(manifest.layout)}
        try:
            keras_layer = find_layer(model, name)  # a nested key "outer/inner" too
        except ValueError:
            raise VerificationError(
                f"layer '{name}' of the export is not in the model; verify against the exported model"
            ) from None
        weights = {t.name: _native(where, kind, t, values[t.key], layer) for t in layer.tensors}
        outcome = recompute.compare(layer, weights, keras_layer, rng, samples, str(where))
        rows.append(
            {
                **row,
                "max_abs_error": outcome.max_abs_error,
                "tolerance": outcome.tolerance,
                "passed": outcome.passed,
                "route": outcome.route,
                "note": outcome.note,
            }
        )
    columns = ["layer", "class", "kind", "layout", "max_abs_error", "tolerance", "passed", "route", "note"]
    table = pd.DataFrame(rows, columns=columns).astype({"passed": bool})
    table.attrs["formats_checked"] = formats
    selected = manifest.selected_layers
    table.attrs["selected_layers"] = None if selected is None else list(selected)
    return table


def _native(where: Path, kind: str, t: TensorEntry, value: np.ndarray, layer: LayerEntry) -> np.ndarray:
    """:func:`_to_native`, with a manifest entry that does not fit the array made a VerificationError naming it."""
    try:
        return _to_native(kind, t, value, layer)
    except VerificationError as e:
        raise VerificationError(f"{where}: {e}") from None
    except (ValueError, TypeError, IndexError, KeyError) as e:
        flatten = f" and flatten_shape {list(layer.flatten_shape)}" if layer.flatten_shape is not None else ""
        raise VerificationError(
            f"{where}: tensor '{t.key}' with axes '{t.axes}', shape {list(value.shape)}{flatten} cannot be read back "
            f"into its {kind} layer's native layout ({type(e).__name__}: {e}); the manifest was edited or is damaged"
        ) from None
