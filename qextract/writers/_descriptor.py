"""What one output format is: a name, a writer, a reader, and what its files are.

Every format module builds its :class:`OutputFormat`; the one table of them
is :data:`qextract.writers.FORMATS`, from which the CLI's ``--format``
choices, the export's per-tensor and word-storing formats and the verifier's
readers all come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..layouts import ExportedTensor

if TYPE_CHECKING:
    from ._entry import Entry
    from ._sink import Sink
    from ._words import Codes

MODEL_STEM = "weights"
"""The file name, before its suffix, of a format holding every tensor in one file."""


class Write(Protocol):
    def __call__(
        self,
        tensors: Sequence[ExportedTensor],
        out_dir: Path,
        *,
        word_bits: int | None = None,
        model_name: str = "model",
    ) -> list[Path]: ...


class Read(Protocol):
    def __call__(self, path: Path, entry: Entry) -> Codes: ...


class OpenSink(Protocol):
    def __call__(
        self, out_dir: Path, *, word_bits: int | None = None, model_name: str = "model", chunk: int | None = ...
    ) -> Sink: ...


@dataclass(eq=False)
class OutputFormat:
    """One output format.

    ``write(tensors, out_dir, *, word_bits=None, model_name="model")`` writes
    laid-out tensors and returns the files written; ``read(path, entry)`` is
    its inverse for one tensor. ``sink(out_dir, *, word_bits=None,
    model_name="model", chunk=...)`` writes the same files tensor by tensor
    (:class:`~._sink.Sink`: ``add`` each, then ``close``), as a streaming
    export does. ``per_tensor``: one file per tensor,
    ``<layer>.<tensor><suffix>``, else one file of every tensor,
    ``weights<suffix>``. ``words``: the files store memory words, so
    ``word_bits`` changes them.
    """

    name: str
    write: Write
    read: Read
    per_tensor: bool
    suffix: str
    sink: OpenSink
    words: bool = False

    def file_name(self, stem: str = MODEL_STEM) -> str:
        """The name of the file holding ``stem``: a tensor's file stem, or every tensor."""
        return f"{stem}{self.suffix}"

    def __repr__(self) -> str:
        holds = "one file per tensor" if self.per_tensor else f"one file {self.file_name()}"
        return f"OutputFormat({self.name!r}: {holds}{', memory words' if self.words else ''})"
