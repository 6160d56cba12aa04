"""The rules a vectors folder is read and replaced by: the same as an export's.

Reading trusts nothing in the folder: the manifest must be qextract's,
every path it lists must stay inside the folder (relative, no ``..``, no
symlink leading out) and match its sha256, and no file that looks written
may go unlisted. Replacing (``force``) is allowed only for a folder that is a
previous vectors folder and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import ExportError, NotAnExportError, VerificationError
from .vector_manifest import KIND, VectorsManifest

WRITTEN_SUFFIXES = (".npz", ".mem", ".dat", ".json")
"""What the writer names its files: any such file the manifest does not list is refused."""

_FIX = "Fix: give the folder 'qextract vectors --out DIR' wrote (it holds vectors.json)."


def read_manifest(root: Path, name: str) -> VectorsManifest:
    """The folder's manifest; NotAnExportError unless ``root`` holds a ``name`` written by qextract for vectors."""
    if not root.is_dir():
        what = "no such folder" if not root.exists() else "is not a folder"
        raise NotAnExportError(f"{root}: {what}; not a qextract vectors folder. {_FIX}")
    path = root / name
    if not path.is_file():
        raise NotAnExportError(f"{root}: not a qextract vectors folder (no {name}). {_FIX}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise NotAnExportError(f"{path}: not a readable manifest ({type(e).__name__}: {e}). {_FIX}") from None
    if not isinstance(document, dict) or "qextract_version" not in document or document.get("kind") != KIND:
        raise NotAnExportError(
            f"{path}: not written by qextract for vectors (no qextract_version, kind {KIND!r}). {_FIX}"
        )
    try:
        return VectorsManifest.from_json(document)
    except VerificationError as e:
        raise VerificationError(f"{path}: {e}; the manifest was changed after it was written") from None


def inside(root: Path, name: str, path: str) -> Path:
    """``root / path``, refused unless ``path`` is relative and stays inside ``root`` after resolving symlinks."""
    where = root / name
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or PureWindowsPath(path).is_absolute() or ".." in pure.parts or "\\" in path:
        raise VerificationError(f"{where}: {path!r} is not a relative path inside the folder; refusing to read it")
    p = root / pure
    try:
        resolved, folder = p.resolve(), root.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise VerificationError(f"{where}: {path!r} cannot be resolved ({e}); refusing to read it") from None
    if not resolved.is_relative_to(folder):
        raise VerificationError(
            f"{where}: {path!r} leads outside the folder (to {resolved}, through a symlink); refusing to read it"
        )
    return p


def verified_path(root: Path, name: str, path: str, sha256: str) -> Path:
    """``root / path`` after checking it is inside ``root`` and holds what was written (its sha256)."""
    p = inside(root, name, path)
    if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != sha256:
        raise VerificationError(f"{p}: missing or changed since it was written (sha256 differs from {name})")
    return p


def check_listed(root: Path, name: str, listed: Iterable[str]) -> None:
    """VerificationError when the folder holds a written-looking file the manifest does not list."""
    known = {PurePosixPath(p).as_posix() for p in listed} | {name}
    stray = sorted(
        rel
        for p in root.rglob("*")
        if p.suffix.lower() in WRITTEN_SUFFIXES
        and (p.is_symlink() or p.is_file())
        and (rel := p.relative_to(root).as_posix()) not in known
    )
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        raise VerificationError(
            f"{root / name}: the folder holds {shown}, which {name} does not list, so nothing proves what they hold. "
            "Fix: write the vectors again, or move those files out of the folder."
        )


def previous_vectors(folder: Path, name: str = "vectors.json") -> None:
    """Refuse to replace ``folder`` unless it is a previous vectors folder (its manifest and listed files only)."""
    try:
        manifest = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        manifest = None
    if (
        not isinstance(manifest, dict)
        or "qextract_version" not in manifest
        or manifest.get("kind") != KIND
        or not isinstance(manifest.get("files"), list)
    ):
        raise ExportError(
            f"{folder}: is not a qextract vectors folder (no {name} written by qextract); --force only replaces "
            "previous vectors. Fix: choose another --out, or empty or remove that folder yourself."
        )
    listed = {name} | {str(f.get("path")) for f in manifest["files"] if isinstance(f, dict)}
    foreign = sorted(
        rel
        for rel in (p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if rel not in listed and not any(n.startswith(rel + "/") for n in listed)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ExportError(
            f"{folder}: holds files that are not part of its previous vectors ({shown}); --force only replaces "
            "vectors as qextract wrote them. Fix: move them elsewhere, or choose another --out."
        )
