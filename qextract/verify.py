"""Proof by recomputation: layer outputs from the exported files against the Keras layers.

Reads only the export: ``manifest.json`` and every file it lists. Each file's
sha256 is checked, then every file of every tensor is read back with its
format's reader (npz, C header, .mem, .coe, .mif, CSV; the header's packed
words too) and all of them must hold identical codes and signs: the files a
hardware flow consumes are proven, not only one of them. Each tensor is then
rebuilt as ``codes x scale`` in the exported layout, that layout is
interpreted from the manifest's axis letters (independently of the code that
wrote it), the layer is recomputed in NumPy with the manifest's explicit
padding, and compared with the Keras layer's own output on deterministic input.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import reference as R
from .errors import VerificationError
from .nested import find_layer
from .tensor import along, decode
from .writers import FORMATS, Codes, Entry, entries

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["verify", "load_export", "read_codes"]

# Native Keras axis letters per layer kind and tensor, in the manifest's alphabet.
_NATIVE = {
    ("dense", "kernel"): "IO",
    ("conv1d", "kernel"): "KIO",
    ("conv2d", "kernel"): "HWIO",
    ("conv2d_transpose", "kernel"): "HWOI",
    ("depthwise_conv2d", "depthwise_kernel"): "HWCM",
    ("separable_conv2d", "depthwise_kernel"): "HWCM",
    ("separable_conv2d", "pointwise_kernel"): "HWIO",
    ("separable_conv1d", "depthwise_kernel"): "KCM",
    ("separable_conv1d", "pointwise_kernel"): "KIO",
}
VERIFIED_KINDS = ("dense", "conv1d", "conv2d", "conv2d_transpose", "depthwise_conv2d", "separable_conv1d", "separable_conv2d", "batchnorm")


def load_export(out_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and every tensor decoded from its codes and scale, in the exported layout.

    Every file's sha256 is checked against the manifest first; then every
    file of every tensor is read and must hold the same codes (see :func:`read_codes`).
    """
    manifest, values, _ = _load(Path(out_dir))
    return manifest, values


def _load(root: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """Manifest, decoded tensors and the formats whose files were cross-checked."""
    manifest = _read_manifest(root)
    for f in manifest["files"]:
        p = root / f["path"]
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != f["sha256"]:
            raise VerificationError(f"{p}: missing or changed since export (sha256 differs from manifest.json)")
    table = _entries(root, manifest)
    codes, formats = read_codes(root, manifest, table)
    values = {
        t["key"]: _decode(t, codes[t["key"]], table[t["key"]]) for layer in manifest["layers"] for t in layer["tensors"]
    }
    return manifest, values, formats


def _read_manifest(root: Path) -> dict[str, Any]:
    """The export's manifest; NotAnExportError when ``root`` is not a folder qextract exported into.

    A manifest that is qextract's but breaks the schema is a VerificationError:
    the export was changed after it was written (or by another version).
    """
    from .errors import NotAnExportError

    fix = "Fix: give the folder 'qextract export --out DIR' wrote (it holds manifest.json)."
    if not root.is_dir():
        raise NotAnExportError(f"{root}: {'no such folder' if not root.exists() else 'is not a folder'}; not a qextract export. {fix}")
    path = root / "manifest.json"
    if not path.is_file():
        raise NotAnExportError(f"{root}: not a qextract export (no manifest.json). {fix}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise NotAnExportError(f"{path}: not a readable manifest ({e}). {fix}") from None
    if not isinstance(manifest, dict) or "qextract_version" not in manifest:
        raise NotAnExportError(f"{path}: not written by qextract (no qextract_version). {fix}")
    from .manifest import validate

    try:
        validate(manifest)
    except Exception as e:  # noqa: BLE001 - jsonschema.ValidationError
        raise VerificationError(f"{path}: does not follow the manifest schema ({str(e).splitlines()[0]})") from None
    return manifest


def _entries(root: Path, manifest: dict[str, Any]) -> dict[str, Entry]:
    try:
        return entries(manifest)
    except ValueError as e:
        raise VerificationError(f"{root / 'manifest.json'}: {e}") from None


def read_codes(
    root: str | os.PathLike[str], manifest: dict[str, Any], table: dict[str, Entry] | None = None
) -> tuple[dict[str, Codes], list[str]]:
    """Every tensor's codes read from each of its files, which must all agree; and the formats read.

    Files are read in :data:`~qextract.writers.FORMATS` order (npz first when
    exported); each later file is compared with the first. A difference is a
    VerificationError naming the file, the tensor, the first differing index
    and both values. ``table`` is :func:`~qextract.writers.entries` of the manifest, if already built.
    """
    root = Path(root)
    file_format = {f["path"]: f["format"] for f in manifest["files"]}
    table = _entries(root, manifest) if table is None else table
    codes, read = {}, set()
    for layer in manifest["layers"]:
        for t in layer["tensors"]:
            codes[t["key"]] = _agreed(root, table[t["key"]], t["files"], file_format)
            read.update(file_format[p] for p in t["files"])
    return codes, [name for name in FORMATS if name in read]


def _agreed(root: Path, entry: Entry, paths: list[str], file_format: dict[str, str]) -> Codes:
    """The codes every file of ``entry`` holds; VerificationError at the first file that differs."""
    unlisted = [p for p in paths if p not in file_format]
    if unlisted:
        raise VerificationError(f"{entry.key}: manifest.json names {unlisted[0]} for it but not among its files")
    ordered = sorted(paths, key=lambda p: list(FORMATS).index(file_format[p]))
    if not ordered:
        if entry.size:
            raise VerificationError(f"{entry.key}: no exported file holds this tensor")
        return Codes.empty(entry.format, entry.shape)
    first = FORMATS[file_format[ordered[0]]].read(root / ordered[0], entry)
    for path in ordered[1:]:
        differ = first.first_difference(FORMATS[file_format[path]].read(root / path, entry))
        if differ is not None:
            index, what, ours, theirs = differ
            at = f"index {index} {tuple(int(i) for i in np.unravel_index(index, entry.shape))}" if entry.size else "shape"
            raise VerificationError(
                f"{root / path}: {entry.key} holds {what} {theirs} at {at}, but {ordered[0]} holds {ours}; "
                "the exported files disagree (re-export, or find what changed this file)"
            )
    return first


def _decode(t: dict[str, Any], read: Codes, entry: Entry) -> np.ndarray:
    """``codes x scale`` (po2: ``signs * 2**codes``) with the manifest's scale along its axis."""
    key, codes = t["key"], read.codes
    if not t["quantized"]:
        return codes
    if list(codes.shape) != t["shape"] or str(codes.dtype) != t["code_dtype"]:
        got, expected = f"{codes.dtype}{list(codes.shape)}", f"{t['code_dtype']}{t['shape']}"
        raise VerificationError(f"{key}: codes read are {got}, manifest.json says {expected}")
    scale = along(np.asarray(t["scale"]["values"], np.float32), t["scale"]["axis"], codes.ndim)
    return decode(entry.format, codes, scale, read.signs)


def _to_native(kind: str, t: dict[str, Any], value: np.ndarray, layer: dict[str, Any]) -> np.ndarray:
    """Read the exported array through its axis letters back into the native Keras order."""
    name, axes = t["name"], t["axes"]
    native = _NATIVE.get((kind, name))
    if native is None or axes == native:
        return value
    if "flatten_shape" in layer and kind == "dense" and name == "kernel":
        h, w, c = layer["flatten_shape"]
        if axes == "OHWI":  # (O, H, W, C): Keras flattens H, W, C
            return value.transpose(1, 2, 3, 0).reshape(h * w * c, -1)
        if axes == "OIHW":  # (O, C, H, W): rows in PyTorch's C, H, W flatten order
            return value.transpose(2, 3, 1, 0).reshape(h * w * c, -1)
        if axes == "HWIO":
            return value.reshape(h * w * c, -1)
    if sorted(axes) == sorted(native):
        return value.transpose([axes.index(a) for a in native])
    if native.endswith("CM") and "O" in axes and "1" in axes:  # depthwise: O is the merged c*M + m axis
        m = layer["geometry"].get("depth_multiplier", 1)
        squeezed, rest = np.squeeze(value, axis=axes.index("1")), axes.replace("1", "")
        moved = squeezed.transpose([rest.index(a) for a in native[:-2] + "O"])
        return moved.reshape(*moved.shape[:-1], -1, m)
    raise VerificationError(f"{t['key']}: cannot interpret exported axes '{axes}' for a {kind} tensor")


def _padding_of(layer: dict[str, Any]) -> list[tuple[int, int]] | str:
    """The manifest's explicit (before, after) pads per spatial axis."""
    g = layer["geometry"]
    pads = g.get("explicit_padding")
    if pads is None:
        return g.get("padding", "valid")
    if "top" in pads:
        return [(pads["top"], pads["bottom"]), (pads["left"], pads["right"])]
    return [(pads["left"], pads["right"])]


def _recompute(kind: str, w: dict[str, np.ndarray], x: np.ndarray, layer: dict[str, Any]) -> np.ndarray:
    g = layer["geometry"]
    strides, dilation, padding = g.get("strides"), g.get("dilation_rate"), _padding_of(layer)
    bias = w.get("bias")
    if kind == "dense":
        if "flatten_shape" in layer:
            x = x.reshape(x.shape[0], -1)
        return R.dense(x, w["kernel"], bias)
    if kind in ("conv1d", "conv2d"):
        return R.conv(x, w["kernel"], bias, strides, padding, dilation)
    if kind == "conv2d_transpose":
        return R.conv_transpose(x, w["kernel"], bias, strides, padding)
    if kind == "depthwise_conv2d":
        return R.depthwise(x, w["depthwise_kernel"], bias, strides, padding, dilation)
    if kind in ("separable_conv1d", "separable_conv2d"):
        return R.separable(x, w["depthwise_kernel"], w["pointwise_kernel"], bias, strides, padding, dilation)
    if kind == "batchnorm":
        return R.batchnorm(x, w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"], g["epsilon"])
    raise AssertionError(kind)


def _keras_output(layer: Any, x: np.ndarray) -> np.ndarray:
    """The layer's own output without its activation, computed on a copy of the layer."""
    config = layer.get_config()
    if "activation" in config:
        config["activation"] = "linear"
    clone = type(layer).from_config(config)
    clone(x[:1], training=False)  # builds every sub-layer (a folded layer's batch norm too)
    clone.set_weights(layer.get_weights())
    return np.asarray(clone(x, training=False))


def verify(out_dir: str | os.PathLike[str], model: Any, *, samples: int = 4, seed: int = 0) -> "pd.DataFrame":
    """Recompute each exported layer from the files alone and compare with ``model``'s layers.

    Returns one row per layer with tensors: layer, class, kind, layout, max
    abs error, tolerance and ``passed``. Layers of kinds without a NumPy
    reference (recurrent, pooling) are listed with ``passed`` None.
    ``table.attrs["formats_checked"]`` lists the formats whose files were read
    and found to hold identical codes (raises VerificationError if they do not).
    """
    import pandas as pd

    manifest, values, formats = _load(Path(out_dir))
    rng = np.random.default_rng(seed)
    rows = []
    for layer in manifest["layers"]:
        if not layer["tensors"]:
            continue
        kind, name = layer["kind"], layer["name"]
        row = {"layer": name, "class": layer["class"], "kind": kind, "layout": manifest["layout"]}
        if kind not in VERIFIED_KINDS:
            rows.append({**row, "max_abs_error": np.nan, "tolerance": np.nan, "passed": None, "note": "no NumPy reference for this kind"})
            continue
        try:
            keras_layer = find_layer(model, name)  # a nested key "outer/inner" too
        except ValueError:
            raise VerificationError(f"layer '{name}' of the export is not in the model; verify against the exported model") from None
        weights = {t["name"]: _to_native(kind, t, values[t["key"]], layer) for t in layer["tensors"]}
        shape = tuple(layer["geometry"]["input_shape"][1:])
        x = rng.standard_normal((samples, *shape)).astype(np.float32)
        expected = _keras_output(keras_layer, x)
        ours = _recompute(kind, weights, x, layer)
        err = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
        tol = 1e-5 * float(np.max(np.abs(expected), initial=0.0)) + 1e-6
        rows.append({**row, "max_abs_error": err, "tolerance": tol, "passed": err <= tol and ours.shape == expected.shape, "note": ""})
    table = pd.DataFrame(rows, columns=["layer", "class", "kind", "layout", "max_abs_error", "tolerance", "passed", "note"])
    table.attrs["formats_checked"] = formats
    return table
