"""File plumbing shared by the format modules: OS errors as ExportError when writing and as
VerificationError naming the file and tensor when reading; the one-file-per-tensor loop."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import ExportError, QExtractWarning, VerificationError
from ..layouts import ExportedTensor
from . import _text, _words

Render = Callable[[ExportedTensor, _words.Memory, list[str]], bytes]


@contextmanager
def opened(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` after making its folder; OS errors become ExportError naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, mode, **kwargs) as f:
            yield f
    except OSError as err:
        raise ExportError(
            f"cannot write {path}: {err.strerror or err}; check the folder exists and is writable"
        ) from err


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


def write_bytes(path: Path, data: bytes) -> Path:
    with opened(path) as f:
        f.write(data)
    return path


def write_each(
    tensors: Sequence[ExportedTensor],
    out_dir: Path,
    suffix: str,
    render: Render,
    *,
    word_bits: int | None,
    model_name: str,
) -> list[Path]:
    """Render each non-empty tensor to ``<layer>.<tensor><suffix>`` in ``out_dir``; the paths written."""
    _text.check_unique_keys(tensors)
    _words.check_word_bits(tensors, word_bits)
    out_dir = Path(out_dir)
    written = []
    for t, stem in zip(tensors, _text.file_stems(tensors)):
        if t.size == 0:
            warnings.warn(f"{t.key} has no elements; no {suffix} file written", QExtractWarning, stacklevel=3)
            continue
        mem = _words.memory(t, word_bits)
        comment = [*_text.summary(t, model_name), f"code: {t.format.storage_rule()}", f"memory: {mem.describe()}"]
        written.append(write_bytes(out_dir / f"{stem}{suffix}", render(t, mem, comment)))
    return written
