"""One set of rules for every folder qextract writes and describes by a manifest (an export, a vectors folder).

Both kinds are read and replaced by :class:`qextract._folder.FolderKind`:
these tests check what that changed for each kind (vectors messages in API
terms, the CLI's option added for them; a manifest nested too deeply refused
by name; a manifest of the other kind neither read nor replaced) and that the
rules cannot drift from what the writers write.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qextract.cli.app import error_line
from qextract.cli.options import FLAGS
from qextract.errors import ExportError, NotAnExportError
from qextract.exporting.exporter import check_output
from qextract.manifest.folder import EXPORT
from qextract.network.vector_manifest import VECTORS
from qextract.network.vectors import LayerVectors, read_vectors, write_vectors
from qextract.numformat import FixedPoint
from qextract.verification.readback import read_manifest
from qextract.writers import FORMATS

_FLAG = "--"


def _layer() -> LayerVectors:
    codes = np.arange(-4, 4).reshape(2, 4)
    return LayerVectors("d", codes, FixedPoint(8, 0), 2.0**-7, codes, FixedPoint(8, 0), 2.0**-7)


def _foreign(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    return folder


def test_an_unlisted_file_of_every_export_format_is_refused() -> None:
    """The export's suffixes come from the writers, so a new format cannot be forgotten by verify."""
    assert set(EXPORT.suffixes) == {f.suffix for f in FORMATS.values()}
    assert set(VECTORS.suffixes) >= {".npz", ".mem", ".dat", ".json"}


def test_every_folder_argument_has_a_command_line_option() -> None:
    assert FLAGS[EXPORT.argument] == FLAGS[VECTORS.argument] == "--out"


def test_vectors_force_over_a_foreign_folder_speaks_the_api(tmp_path: Path) -> None:
    folder = _foreign(tmp_path)
    with pytest.raises(ExportError) as info:
        write_vectors([_layer()], folder, force=True)
    assert str(info.value) == (
        f"{folder}: is not a qextract vectors folder (no vectors.json written by qextract); force=True only "
        "replaces a previous vectors folder. Fix: choose another out, or empty or remove that folder yourself."
    )
    assert info.value.arguments == ("out",)
    assert error_line(info.value).endswith("yourself. On the command line: --out.")
    assert (folder / "notes.txt").read_text() == "keep"


def test_vectors_target_checks_name_write_vectors_own_argument(tmp_path: Path) -> None:
    folder = _foreign(tmp_path)
    with pytest.raises(ExportError) as info:
        write_vectors([_layer()], folder)
    assert (
        str(info.value)
        == f"{folder}: folder exists and is not empty. Fix: choose another out, or pass force=True to replace it."
    )
    assert error_line(info.value).endswith("to replace it. On the command line: --out, --force.")
    with pytest.raises(ExportError, match=r"notes\.txt: exists and is not a folder\. Fix: choose another out\.$"):
        write_vectors([_layer()], folder / "notes.txt", force=True)


def test_vectors_force_over_a_previous_folder_with_added_files_speaks_the_api(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    write_vectors([_layer()], folder)
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(ExportError) as info:
        write_vectors([_layer()], folder, force=True)
    assert str(info.value) == (
        f"{folder}: holds files that are not part of its previous vectors folder (notes.txt); force=True only "
        "replaces a vectors folder as qextract wrote it. Fix: move them elsewhere, or choose another out."
    )
    assert _FLAG not in str(info.value) and info.value.arguments == ("out",)


def test_reading_a_folder_without_vectors_names_the_function_that_writes_them(tmp_path: Path) -> None:
    with pytest.raises(NotAnExportError) as info:
        read_vectors(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: not a qextract vectors folder (no vectors.json). "
        "Fix: give the folder write_vectors wrote (its out; it holds vectors.json)."
    )


def test_a_vectors_manifest_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    (tmp_path / "vectors.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(NotAnExportError, match=r"vectors\.json: not a readable manifest \(not UTF-8 text: byte 7 is"):
        read_vectors(tmp_path)


def test_force_over_a_manifest_nested_too_deeply_is_refused_by_name(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(deep)  # what reading such a manifest raises
    for name, refuse, text in (
        ("manifest.json", lambda d: check_output(d, force=True), "is not a qextract export"),
        ("vectors.json", lambda d: write_vectors([_layer()], d, force=True), "is not a qextract vectors folder"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text(deep)
        with pytest.raises(ExportError, match=text):
            refuse(folder)
        assert (folder / name).read_text() == deep


def test_a_manifest_of_another_kind_is_neither_replaced_nor_read_as_an_export(tmp_path: Path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"qextract_version": "1", "kind": "vectors", "files": []}))
    with pytest.raises(ExportError, match="is not a qextract export"):
        check_output(folder, force=True)
    with pytest.raises(NotAnExportError) as info:
        read_manifest(folder)
    assert str(info.value) == (
        f"{folder / 'manifest.json'}: not written by qextract for an export (kind 'vectors'; an export's "
        "manifest.json has no kind). Fix: give the folder qextract exported into (export's out_dir; it holds "
        "manifest.json)."
    )
