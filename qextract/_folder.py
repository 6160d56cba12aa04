"""A folder qextract wrote and describes by a manifest (an export, a vectors folder): the rules it is trusted by.

Reading trusts nothing in such a folder: the manifest must be qextract's
and of the folder's kind, every path it lists must stay inside the folder
(relative, no ``..``, no symlink leading out) and hold the bytes its sha256
says, and no file named the way the writers name theirs may go unlisted, or
it could be read by a hardware flow without anything having proven it.
Replacing such a folder (``force=True``) is allowed only for a previous
folder of the same kind holding nothing but what its manifest lists: anything
else there is the user's. Every kind of folder is one :class:`FolderKind`,
so these rules are written once and cannot drift apart between kinds
(:data:`qextract.manifest.folder.EXPORT`, :data:`qextract.network.vector_manifest.VECTORS`).

>>> EXPORT.inside(Path("out"), "../x.npz", "files[0].path")  # doctest: +SKIP
VerificationError: out/manifest.json: files[0].path '../x.npz' is not a relative path inside the export folder; ...
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import ExportError, NotAnExportError, VerificationError

__all__ = ["FolderKind"]


@dataclass(frozen=True)
class FolderKind:
    """One kind of folder qextract writes, and the words its messages use for it.

    ``manifest``: the manifest's file name; ``tag``: the ``kind`` its top
    level carries (None: it carries none); ``suffixes``: how the writers name
    their files (an unlisted file named so is refused); ``what``/``folder``:
    what messages call such a folder, and its insides; ``argument``: the writing function's argument
    naming the folder (the CLI names its option); ``reader``: what reads one
    back; ``since``/``again``: when its files were written, and how to write
    them again; ``read_fix``: the fix for a folder that is none of this kind.
    """

    manifest: str
    tag: str | None
    suffixes: tuple[str, ...]
    what: str
    folder: str
    argument: str
    reader: str
    since: str
    again: str
    read_fix: str

    @property
    def _a(self) -> str:
        return f"{'an' if self.what[0] in 'aeiou' else 'a'} {self.what}"

    def is_kind(self, document: Any) -> bool:
        """Whether ``document`` (a parsed manifest) was written by qextract for this kind of folder."""
        return isinstance(document, dict) and "qextract_version" in document and document.get("kind") == self.tag

    # --- reading ------------------------------------------------------------------------------------

    def read_document(self, root: Path) -> dict[str, Any]:
        """The parsed manifest of ``root``; NotAnExportError unless qextract wrote it for this kind of folder."""
        if not root.is_dir():
            what = "no such folder" if not root.exists() else "is not a folder"
            raise NotAnExportError(f"{root}: {what}; not a qextract {self.what}. {self.read_fix}")
        path = root / self.manifest
        if not path.is_file():
            raise NotAnExportError(f"{root}: not a qextract {self.what} (no {self.manifest}). {self.read_fix}")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            bad = e.object[e.start : e.start + 1]
            raise self.unreadable(path, f"not UTF-8 text: byte {e.start} is {bad!r}") from None
        except RecursionError:
            raise self.unreadable(path, "JSON nested too deeply to be one") from None
        except (OSError, ValueError) as e:
            raise self.unreadable(path, str(e)) from None
        if not isinstance(document, dict) or "qextract_version" not in document:
            raise NotAnExportError(f"{path}: not written by qextract (no qextract_version). {self.read_fix}")
        if not self.is_kind(document):
            found = document.get("kind")
            has = "no kind" if found is None else f"kind {found!r}"
            expected = "no kind" if self.tag is None else f"kind {self.tag!r}"
            raise NotAnExportError(
                f"{path}: not written by qextract for {self._a} ({has}; {self._a}'s {self.manifest} has {expected}). "
                f"{self.read_fix}"
            )
        return document

    def unreadable(self, path: Path, why: str) -> NotAnExportError:
        """The error for a manifest that cannot be parsed (``why``: what is wrong with it)."""
        return NotAnExportError(f"{path}: not a readable manifest ({why}). {self.read_fix}")

    def inside(self, root: Path, path: str, field: str) -> Path:
        """``root / path``, refused unless ``path`` is relative and stays inside ``root`` after resolving symlinks.

        ``field`` names where the manifest gives ``path`` (``files[0].path``).
        The folder itself may be reached through a symlink; what it lists may not lead out of it.
        """
        where = root / self.manifest
        pure = PurePosixPath(path)
        if not path or pure.is_absolute() or PureWindowsPath(path).is_absolute() or ".." in pure.parts or "\\" in path:
            raise VerificationError(
                f"{where}: {field} {path!r} is not a relative path inside the {self.folder}; refusing to read it"
            )
        p = root / pure
        try:
            resolved, folder = p.resolve(), root.resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise VerificationError(
                f"{where}: {field} {path!r} cannot be resolved ({e}); refusing to read it"
            ) from None
        if not resolved.is_relative_to(folder):
            raise VerificationError(
                f"{where}: {field} {path!r} leads outside the {self.folder} (to {resolved}, through a symlink); "
                "refusing to read it"
            )
        return p

    def verified(self, root: Path, path: str, sha256: str, field: str) -> Path:
        """``root / path`` after checking it is inside ``root`` (:meth:`inside`) and holds what was written."""
        p = self.inside(root, path, field)
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != sha256:
            raise VerificationError(f"{p}: missing or changed since {self.since} (sha256 differs from {self.manifest})")
        return p

    def check_listed(self, root: Path, listed: Iterable[str]) -> None:
        """VerificationError when ``root`` holds a file named as the writers name theirs that ``listed`` lacks.

        Otherwise a file could be dropped from the manifest while it stays in
        the folder for a hardware flow to read, and reading the folder back
        would pass without having read it.
        """
        known = {PurePosixPath(p).as_posix() for p in listed} | {self.manifest}
        stray = sorted(
            rel
            for p in root.rglob("*")
            if p.suffix.lower() in self.suffixes
            and (p.is_symlink() or p.is_file())
            and (rel := p.relative_to(root).as_posix()) not in known
        )
        if stray:
            raise VerificationError(
                f"{root / self.manifest}: the folder holds {_shown(stray)}, which the manifest does not list, so "
                f"{self.reader} cannot prove what they hold (added after {self.since}, or removed from the manifest). "
                f"Fix: {self.again}, or move them out of the folder."
            )

    # --- replacing ----------------------------------------------------------------------------------

    def check_replaceable(self, folder: Path) -> None:
        """Refuse to replace ``folder`` unless it is a previous folder of this kind and nothing else.

        It must hold a manifest qextract wrote for this kind, and no file or
        folder beside those that manifest lists: anything else there is the
        user's, and ``force=True`` would delete it.
        """
        try:
            document = json.loads((folder / self.manifest).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            document = None
        if not self.is_kind(document) or not isinstance(document.get("files"), list):
            raise ExportError(
                f"{folder}: is not a qextract {self.what} (no {self.manifest} written by qextract); force=True only "
                f"replaces a previous {self.what}. Fix: choose another {self.argument}, or empty or remove that "
                "folder yourself.",
                arguments=(self.argument,),
            )
        listed = {self.manifest} | {str(f.get("path")) for f in document["files"] if isinstance(f, dict)}
        foreign = sorted(
            rel
            for rel in (p.relative_to(folder).as_posix() for p in folder.rglob("*"))
            if rel not in listed and not any(name.startswith(rel + "/") for name in listed)
        )
        if foreign:
            raise ExportError(
                f"{folder}: holds files that are not part of its previous {self.what} ({_shown(foreign)}); force=True "
                f"only replaces {self._a} as qextract wrote it. Fix: move them elsewhere, or choose another "
                f"{self.argument}.",
                arguments=(self.argument,),
            )


def _shown(names: list[str]) -> str:
    """The first five ``names``, and how many more there are."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
