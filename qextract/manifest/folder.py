"""An export folder as a :class:`~qextract._folder.FolderKind`: ``manifest.json`` beside the files the writers wrote.

:mod:`qextract.exporting.exporter` replaces one only by its rules, and
:mod:`qextract.verification.readback` reads one back by them.
"""

from __future__ import annotations

from .._folder import FolderKind
from ..writers import FORMATS

MANIFEST = "manifest.json"

EXPORT = FolderKind(
    manifest=MANIFEST,
    tag=None,  # an export's manifest has no top-level kind (its schema allows none)
    suffixes=tuple(dict.fromkeys(f.suffix for f in FORMATS.values())),
    what="export",
    folder="export folder",
    argument="out_dir",
    reader="verify",
    since="export",
    again="re-export",
    read_fix="Fix: give the folder qextract exported into (export's out_dir; it holds manifest.json).",
)
"""What verify and export trust an export folder by (see :class:`~qextract._folder.FolderKind`)."""
