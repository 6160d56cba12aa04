"""File plumbing shared by the format modules: errors while reading as a VerificationError naming the file and
tensor; the sink of the formats with one file per tensor. (OS errors while writing: :func:`._sink.errors_as_export`.)"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import QExtractWarning, VerificationError
from ..layouts import ExportedTensor
from . import _sink, _text, _words


@contextmanager
def reading(path: Path, key: str) -> Iterator[None]:
    """Errors while reading tensor ``key`` from ``path`` become one VerificationError naming both.

    Readers raise ValueError with a short message of what is wrong; this adds
    the context, so every reader fails the same way.
    """
    try:
        yield
    except OSError as err:
        raise VerificationError(f"{path}: cannot read {key} ({err.strerror or err})") from err
    except (ValueError, EOFError, zipfile.BadZipFile) as err:
        raise VerificationError(
            f"{path}: {key}: {err}; the file does not hold this tensor as qextract wrote it"
        ) from None


Render = Callable[[ExportedTensor, _words.WordPlan, list[str], "int | None"], Iterable[bytes]]
"""A per-tensor format's file for one tensor, in pieces: ``render(tensor, words, comment lines, chunk)``."""


class EachSink(_sink.Sink):
    """A format with one file per non-empty tensor, ``<layer>.<tensor><suffix>``, written in pieces."""

    words = True

    def __init__(self, suffix: str, render: Render, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self.suffix = suffix
        self.render = render
        self._stems = _text.UniqueNames("_")
        self._written: list[Path] = []

    def _add(self, t: ExportedTensor, skip: bool) -> Path | None:
        stem = self._stems.add(_text.file_stem(t))  # every tensor takes its name, as in the whole list
        if skip:
            return None
        if t.size == 0:
            warnings.warn(f"{t.key} has no elements; no {self.suffix} file written", QExtractWarning, stacklevel=4)
            return None
        words = _words.plan(t, self.word_bits)
        rule, packing = f"code: {t.format.storage_rule()}", f"memory: {words.describe()}"
        comment = [*_text.summary(t, self.model_name), rule, packing]
        path = self.out_dir / f"{stem}{self.suffix}"
        self._open(path)
        try:
            self._write(self.render(t, words, comment, self.chunk))
        finally:
            self._release()
        self._written.append(path)
        return path

    def _finish(self) -> list[Path]:
        return list(self._written)
