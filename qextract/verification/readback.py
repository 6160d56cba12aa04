"""Reading an export back: its manifest, its paths, its completeness, and the codes every file holds.

Reads only the export: ``manifest.json`` and every file it lists. Every
listed path must stay inside the export folder (no absolute paths, no
``..``, no symlink leading out). Each file's sha256 is checked, then every
file of every tensor is read back with its format's reader (npz, C header,
.mem, .coe, .mif, CSV; the header's packed words too) and all of them must
hold identical codes and signs: the files a hardware flow consumes are
proven, not only one of them. Each tensor is then decoded as ``codes x
scale`` in the exported layout. :mod:`qextract.verification.verifier` takes
it from there (back to Keras's axes, recomputed, compared).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import VerificationError
from ..manifest.entries import Manifest, TensorEntry
from ..manifest.folder import EXPORT
from ..tensor import along, decode
from ..writers import FORMATS, Codes, Entry, entries

__all__ = ["check_all_files_listed", "load", "load_export", "read_codes", "read_manifest"]


def load_export(out_dir: str | os.PathLike[str]) -> tuple[Manifest, dict[str, np.ndarray]]:
    """The manifest and every tensor decoded from its codes and scale, in the exported layout.

    Every file's sha256 is checked against the manifest first; then every
    file of every tensor is read and must hold the same codes (see :func:`read_codes`).
    """
    manifest, values, _ = load(Path(out_dir))
    check_all_files_listed(Path(out_dir), manifest)
    return manifest, values


def load(root: Path) -> tuple[Manifest, dict[str, np.ndarray], list[str]]:
    """Manifest, decoded tensors and the formats whose files were cross-checked."""
    manifest = read_manifest(root)
    where = root / "manifest.json"
    _check_structure(where, manifest)
    for i, f in enumerate(manifest.files):
        EXPORT.verified(root, f.path, f.sha256, f"files[{i}].path")
    table = _entries(root, manifest)
    codes, formats = read_codes(root, manifest, table)
    values = {t.key: _decode(where, t, codes[t.key], table[t.key]) for t in manifest.tensors}
    return manifest, values, formats


def _check_structure(where: Path, manifest: Manifest) -> None:
    """Layer names and tensor keys unique and consistent; every tensor the files hold belongs to a listed layer."""
    seen: set[str] = set()
    keys: set[str] = set()
    for i, layer in enumerate(manifest.layers):
        if layer.name in seen:
            raise VerificationError(f"{where}: layers[{i}].name '{layer.name}' is listed twice")
        seen.add(layer.name)
        for j, t in enumerate(layer.tensors):
            if t.key != f"{layer.name}/{t.name}" or t.key in keys:
                raise VerificationError(
                    f"{where}: layers[{i}].tensors[{j}].key '{t.key}' is not '{layer.name}/{t.name}' or is listed twice"
                )
            keys.add(t.key)
    held = {k for f in manifest.files for k in f.tensors or ()}
    orphans = sorted(held - keys)
    if orphans:
        raise VerificationError(
            f"{where}: the files hold tensor(s) {', '.join(orphans[:5])} that no layer of the manifest lists "
            "(a layer was removed from the manifest?); the export is not what was written. Fix: re-export."
        )


def check_all_files_listed(root: Path, manifest: Manifest) -> None:
    """Every format the manifest declares holds every tensor, and no exported-looking file goes unlisted.

    Otherwise a format (say every ``.mem`` file) could be dropped from the
    manifest while its files stay in the folder for a hardware flow to read,
    and verify would pass without having read them.
    """
    where = root / "manifest.json"
    declared = list(manifest.formats)
    file_format = {PurePosixPath(f.path).as_posix(): f.format for f in manifest.files}
    undeclared = sorted(set(file_format.values()) - set(declared))
    if undeclared:
        raise VerificationError(
            f"{where}: files of format(s) {', '.join(undeclared)} are listed, but formats is {declared}"
        )
    for layer in manifest.layers:
        for t in layer.tensors:
            held = {file_format.get(PurePosixPath(p).as_posix()) for p in t.files}
            lacking = [f for f in declared if f not in held]
            if lacking and (int(np.prod(t.shape, dtype=np.float64)) > 0 or set(lacking) - {"mem", "coe", "mif"}):
                raise VerificationError(
                    f"{where}: tensor '{t.key}' has no file of format(s) {', '.join(lacking)}, which the manifest "
                    "declares (formats); the export is incomplete or the manifest was edited. Fix: re-export."
                )
    EXPORT.check_listed(root, file_format)


def read_manifest(root: Path) -> Manifest:
    """The export's manifest; NotAnExportError when ``root`` is not a folder qextract exported into.

    A manifest that is qextract's but breaks the schema is a VerificationError:
    the export was changed after it was written (or by another version).
    """
    manifest = EXPORT.read_document(root)
    path = root / EXPORT.manifest
    try:
        return Manifest.from_json(manifest)
    except VerificationError as e:  # does not follow the schema
        raise VerificationError(f"{path}: {e}") from None
    except RecursionError:  # nested shallowly enough for json, too deeply for the schema check
        raise EXPORT.unreadable(path, "JSON nested too deeply to be one") from None


def _entries(root: Path, manifest: Manifest) -> dict[str, Entry]:
    try:
        return entries(manifest)
    except ValueError as e:
        raise VerificationError(f"{root / 'manifest.json'}: {e}") from None


def read_codes(
    root: str | os.PathLike[str], manifest: Manifest | Mapping[str, Any], table: dict[str, Entry] | None = None
) -> tuple[dict[str, Codes], list[str]]:
    """Every tensor's codes read from each of its files, which must all agree; and the formats read.

    Files are read in :data:`~qextract.writers.FORMATS` order (npz first when
    exported); each later file is compared with the first. A difference is a
    VerificationError naming the file, the tensor, the first differing index
    and both values. ``table`` is :func:`~qextract.writers.entries` of the manifest, if already built.
    ``manifest`` is a :class:`~qextract.manifest.Manifest` or its JSON form (which must follow the schema).
    """
    root = Path(root)
    manifest = manifest if isinstance(manifest, Manifest) else Manifest.from_json(manifest)
    file_format = {f.path: f.format for f in manifest.files}
    table = _entries(root, manifest) if table is None else table
    codes: dict[str, Codes] = {}
    read: set[str] = set()
    for t in manifest.tensors:
        codes[t.key] = _agreed(root, table[t.key], t.files, file_format)
        read.update(file_format[p] for p in t.files)
    return codes, [name for name in FORMATS if name in read]


def _agreed(root: Path, entry: Entry, paths: tuple[str, ...], file_format: dict[str, str]) -> Codes:
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
            at = (
                f"index {index} {tuple(int(i) for i in np.unravel_index(index, entry.shape))}"
                if entry.size
                else "shape"
            )
            raise VerificationError(
                f"{root / path}: {entry.key} holds {what} {theirs} at {at}, but {ordered[0]} holds {ours}; "
                "the exported files disagree (re-export, or find what changed this file)"
            )
    return first


def _decode(where: Path, t: TensorEntry, read: Codes, entry: Entry) -> np.ndarray:
    """``codes x scale`` (po2: ``signs * 2**codes``) with the manifest's scale along its axis."""
    key, codes = t.key, read.codes
    if not t.quantized:
        return codes
    if t.code_dtype is None or t.scale is None:
        raise VerificationError(f"{where}: tensor '{key}' is quantized but has no code_dtype or scale")
    if codes.shape != t.shape or str(codes.dtype) != t.code_dtype:
        got, expected = f"{codes.dtype}{list(codes.shape)}", f"{t.code_dtype}{list(t.shape)}"
        raise VerificationError(f"{where}: tensor '{key}': codes read are {got}, the manifest says {expected}")
    axis, scale = t.scale.axis, t.scale.array
    if axis is not None and not 0 <= axis < codes.ndim:
        raise VerificationError(
            f"{where}: tensor '{key}' scale.axis {axis} is out of range for its shape {list(t.shape)}"
        )
    expected_size = (1,) if axis is None else (1, codes.shape[axis])
    if scale.size not in expected_size or (axis is None and scale.ndim):
        along_what = (
            "a single number (scale.axis is null)" if axis is None else f"1 or {codes.shape[axis]} values (axis {axis})"
        )
        raise VerificationError(
            f"{where}: tensor '{key}' scale.values has {scale.size} value(s); expected {along_what}"
        )
    return decode(entry.format, codes, along(scale, axis, codes.ndim), read.signs)
