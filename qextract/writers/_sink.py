"""Writing a format tensor by tensor: the :class:`Sink` behind every writer, and :class:`Sinks` for an export.

An export streams: each tensor is laid out, handed to every format's sink
and dropped before the next is extracted, so memory follows the largest
tensor, not the model. A sink appends what it can as a tensor arrives (an
``.npz`` member, a header block, csv rows, a tensor's own memory file), and
renders large tensors in pieces of about :data:`CHUNK` elements, each a
whole number of lines, so that no text form of a whole tensor is held
either. The bytes are the same as rendering each file at once: a name
depends only on the names before it, and widths are taken from the whole
tensor before its first piece.

Checks that need every tensor (keys given twice, codes wider than
``word_bits``, C names that clash) are gathered as tensors arrive and raised
by :meth:`Sink.close`, with the message the whole list gives; a tensor that
fails one is not written. ``write(tensors, ...)`` (every format's
:class:`~._descriptor.OutputFormat` ``write``) runs them before anything is
written, then streams the tensors through the same sink.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ExportError
from ..layouts import ExportedTensor
from ..numformat import NumberFormat
from . import _text, _words

CHUNK = 1 << 16
"""Elements rendered at a time in a streaming export (rounded to whole lines)."""


@dataclass(frozen=True)
class Seen:
    """What the whole-list checks need of a tensor once it is written and dropped."""

    key: str
    layer: str
    name: str
    format: NumberFormat


class Sink:
    """One format's output in ``out_dir``, written tensor by tensor: :meth:`add` each, then :meth:`close`.

    ``chunk``: elements rendered at a time (None: each tensor at once).
    Subclasses write in :meth:`_add` and :meth:`_finish`, and release their
    files in :meth:`_release`; :meth:`abort` releases without finishing.
    """

    words = False  # the format stores memory words: word_bits applies

    def __init__(
        self, out_dir: Path, *, word_bits: int | None = None, model_name: str = "model", chunk: int | None = CHUNK
    ) -> None:
        self.out_dir = Path(out_dir)
        self.word_bits = word_bits
        self.model_name = model_name
        self.chunk = chunk
        self.seen: list[Seen] = []
        self._keys: set[str] = set()
        self._file: IO[Any] | None = None
        self._path: Path | None = None

    def check(self, tensors: Sequence[_text.Keyed]) -> None:
        """Raise ExportError for what the whole list of tensors does wrong (the same message, however written)."""
        _text.check_unique_keys(tensors)
        if self.words:
            _words.check_word_bits(tensors, self.word_bits)

    def add(self, t: ExportedTensor) -> Path | None:
        """Write ``t``; the file now holding it (None: left out, see :meth:`close` for why)."""
        repeated = t.key in self._keys
        self._keys.add(t.key)
        self.seen.append(Seen(t.key, t.layer, t.name, t.format))
        return self._add(t, skip=repeated or self._too_wide(t))

    def close(self) -> list[Path]:
        """Finish every file and return them, or raise (with the files released) what :meth:`check` finds."""
        try:
            self.check(self.seen)
            return self._finish()
        finally:
            self._release()

    def abort(self) -> None:
        """Release the files without finishing them (the export is failing)."""
        with contextlib.suppress(OSError):
            self._release()

    def _too_wide(self, t: ExportedTensor) -> bool:
        return self.words and self.word_bits is not None and t.format.storage_bits > self.word_bits

    # --- what a format writes -------------------------------------------------------------

    def _add(self, t: ExportedTensor, skip: bool) -> Path | None:
        raise NotImplementedError

    def _finish(self) -> list[Path]:
        raise NotImplementedError

    def _release(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    # --- one file for every tensor --------------------------------------------------------

    def _open(self, path: Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
        """The format's one file, opened on first use (so that a failed check leaves none)."""
        if self._file is None:
            self._path = path
            with errors_as_export(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, mode, **kwargs)  # kept open across add() calls
        return self._file

    def _write(self, pieces: Iterable[Any]) -> None:
        assert self._file is not None and self._path is not None
        with errors_as_export(self._path):
            for piece in pieces:
                self._file.write(piece)


@contextlib.contextmanager
def errors_as_export(path: Path) -> Iterator[None]:
    """OS errors while writing ``path`` become ExportError naming it."""
    try:
        yield
    except OSError as err:
        raise ExportError(
            f"cannot write {path}: {err.strerror or err}; check the folder exists and is writable"
        ) from err


def write_tensors(sink: Sink, tensors: Iterable[ExportedTensor]) -> list[Path]:
    """Every tensor through ``sink``, after its checks: a format's ``write``, which writes nothing when they fail."""
    tensors = list(tensors)
    sink.check(tensors)
    try:
        for t in tensors:
            sink.add(t)
    except BaseException:
        sink.abort()
        raise
    return sink.close()


class Sinks:
    """One sink per format, fed the same tensors: the writing side of a streaming export.

    ``add(t)`` gives, per format, the file holding ``t`` (None: none); ``close()``
    finishes every format in order and returns the files of each.
    """

    def __init__(self, sinks: dict[str, Sink]) -> None:
        self.sinks = sinks

    def add(self, t: ExportedTensor) -> dict[str, Path | None]:
        return {name: sink.add(t) for name, sink in self.sinks.items()}

    def close(self) -> dict[str, list[Path]]:
        done: dict[str, list[Path]] = {}
        try:
            for name, sink in self.sinks.items():
                done[name] = sink.close()
        except BaseException:
            self.abort()
            raise
        return done

    def abort(self) -> None:
        for sink in self.sinks.values():
            sink.abort()
