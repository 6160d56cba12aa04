"""Read a qextract export folder back: its manifest says the layout, flatten order and padding.

The tensors are read with :func:`qextract.verify.load_export`, so every file's
sha256 is checked and every format's files must hold the same codes; each
tensor is then ``codes x scale`` in the exported layout. Where the export
also holds a tensor's raw floats (``<key>:raw`` in ``weights.npz``) those are
taken instead, so the model gets back its very own weights; otherwise it gets
the values its layers computed with (the report's ``values`` column says which).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LayoutError, NotAnExportError
from ..layouts import Layout
from ..manifest.entries import LayerEntry, Manifest
from .arrays import flatten_order
from .records import Gathered, Incoming
from .targets import Target

RAW_SUFFIX = ":raw"


def read_export(root: Path, targets: list[Target], layout: Layout | None) -> Gathered:
    """Every tensor of the export in ``root`` bound for its layer of ``targets`` (matched by name)."""
    from ..verification.verifier import load_export

    if not (root / "manifest.json").is_file():
        raise NotAnExportError(
            f"{root}: no manifest.json, so not a folder written by 'qextract export'. "
            "Fix: give an export folder, a .tflite, .npz or .pt file."
        )
    manifest, values = load_export(root)
    exported = manifest.layout
    if layout is not None and layout != exported:
        raise LayoutError(
            f"{root}: the export is in layout {exported} (manifest.json), not {layout}. Fix: leave layout out."
        )
    raw = _raw_arrays(root, manifest)
    by_path = {t.path: t for t in targets}
    found = Gathered(kind="qextract export", padding_rule="export")
    for layer in manifest.layers:
        target = by_path.get(layer.name)
        order = _flatten_order(layer.flatten_order or "hwc", exported)
        fs = layer.flatten_shape
        for t in layer.tensors:
            key, name = t.key, t.name
            if target is None:
                found.unused.append((key, f"the model has no layer '{layer.name}'"))
            elif name in target.derived:
                found.ignored.append((key, "derived from the layer's configuration, not a weight"))
            elif name not in target.tensors:
                found.unused.append((key, f"{target.where} has no tensor '{name}'"))
            else:
                if target.kind != layer.kind:
                    raise LayoutError(
                        f"{target.where} is a {target.kind} layer; the export's '{layer.name}' ({layer.class_name}) "
                        f"is a {layer.kind} layer"
                    )
                what = "raw" if key in raw else "codes x scale" if t.quantized else "float32"
                array = raw.get(key, values[key])
                found.incoming.append(Incoming(target.path, name, array, key, exported, what, order, fs))
        if target is not None:
            pads = _explicit_padding(layer)
            if pads is not None:
                found.paddings[target.path] = pads
    return found


def _flatten_order(text: str, layout: Layout) -> str:
    """A manifest's flatten order as ``hwc`` / ``chw``: channels last or first, at every Flatten rank.

    The manifest names the letters of what was flattened (``C``, ``LC``/``CL``,
    ``HWC``/``CHW``, ``DHWC``/``CDHW``); a rank-1 ``C`` is the same in both orders.
    """
    letters = text.upper()
    if len(letters) > 1 and set(letters) <= set("CDHWL") and "C" in (letters[0], letters[-1]):
        return "chw" if letters[0] == "C" else "hwc"
    if letters == "C":
        return "hwc"
    return flatten_order(text, layout)


def _explicit_padding(layer: LayerEntry) -> tuple[int, ...] | None:
    pads = layer.geometry.explicit_padding
    if not pads:
        return None
    names = ("top", "bottom", "left", "right") if "top" in pads else ("left", "right")
    return tuple(int(pads[n]) for n in names)


def _raw_arrays(root: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """``<key>:raw`` arrays of the export's ``weights.npz`` (laid out like the values), by tensor key."""
    out: dict[str, np.ndarray] = {}
    for f in manifest.files:
        if f.format == "npz":
            with np.load(root / f.path, allow_pickle=False) as z:
                out.update({k[: -len(RAW_SUFFIX)]: z[k] for k in z.files if k.endswith(RAW_SUFFIX)})
    return out
