"""One NumPy ``weights.npz`` holding every tensor, readable with ``np.load`` (no pickle).

Keys per tensor ``<layer>/<tensor>``: the values (float32, laid out);
``:codes`` in the smallest integer dtype of the format; ``:scale`` (float32,
shape ``()`` or ``(N,)``); ``:signs`` (int8) for powers of two. Unquantized
tensors have only their values. :func:`read` returns a tensor's codes and signs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _sink, _text
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes, check_codes

SUFFIX = ".npz"
FILE = MODEL_STEM + SUFFIX


def members(t: ExportedTensor) -> Iterator[tuple[str, np.ndarray]]:
    """``t``'s arrays in ``weights.npz``, by key, in the order written."""
    yield t.key, np.asarray(t.values, np.float32)
    if t.codes is not None:
        yield f"{t.key}:codes", np.asarray(t.codes).astype(t.format.code_dtype, copy=False)
        yield f"{t.key}:scale", np.asarray(t.scale, np.float32)
    if t.signs is not None:
        yield f"{t.key}:signs", np.asarray(t.signs).astype(np.int8, copy=False)


def arrays(tensors: Sequence[ExportedTensor]) -> dict[str, np.ndarray]:
    """The arrays :func:`write` stores, by key."""
    _text.check_unique_keys(tensors)
    return {key: a for t in tensors for key, a in members(t)}


class NpzSink(_sink.Sink):
    """``weights.npz`` as tensors arrive: each array a member of the zip, as ``np.savez`` writes it.

    ``np.savez`` writes each member with ``zipfile`` (stored, zip64 forced) and
    ``np.lib.format.write_array``; this does the same per member, writing the
    data in pieces of about ``chunk`` elements instead of a copy of the array.
    """

    def __init__(self, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self._zip: zipfile.ZipFile | None = None

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            file = self._open(self.out_dir / FILE)
            with _sink.errors_as_export(self.out_dir / FILE):
                self._zip = zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
        return self._zip

    def _add(self, t: ExportedTensor, skip: bool) -> Path | None:
        if skip:
            return None
        archive = self._zipfile()
        with _sink.errors_as_export(self.out_dir / FILE):
            for key, a in members(t):
                with archive.open(key + ".npy", "w", force_zip64=True) as member:
                    _write_array(member, a, self.chunk)
        return self.out_dir / FILE

    def _finish(self) -> list[Path]:
        archive = self._zipfile()
        with _sink.errors_as_export(self.out_dir / FILE):
            self._zip = None
            archive.close()
        return [self.out_dir / FILE]

    def _release(self) -> None:
        archive, self._zip = self._zip, None
        try:
            if archive is not None:
                archive.close()
        finally:
            super()._release()


def _write_array(member: IO[bytes], a: np.ndarray, chunk: int | None) -> None:
    """``np.lib.format.write_array(member, a)``, the data written in pieces rather than copied whole.

    The header is format 1.0, as ``write_array`` chooses for every array an
    export writes (plain dtypes, short shapes); a Fortran-ordered array is
    stored as such, its data in Fortran order.
    """
    header = np.lib.format.header_data_from_array_1_0(a)
    np.lib.format.write_array_header_1_0(member, header)
    data = a.T if header["fortran_order"] else a
    for start, stop in _text.spans(data.size, 1, chunk):
        member.write(np.ascontiguousarray(_text.flat_piece(data, start, stop)).data)


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.npz`` into ``out_dir``; ``word_bits`` does not apply (arrays keep their dtypes)."""
    return _sink.write_tensors(NpzSink(Path(out_dir), word_bits=word_bits, model_name=model_name, chunk=None), tensors)


def read(path: Path, entry: Entry) -> Codes:
    """``entry``'s codes (and po2 signs; float32 values when unquantized) from ``weights.npz``."""
    with _files.reading(path, entry.key), np.load(path, allow_pickle=False) as z:
        if not entry.quantized:
            return Codes(_array(z, entry.key, np.float32, entry))
        codes = _array(z, f"{entry.key}:codes", entry.format.code_dtype, entry)
        signs = _array(z, f"{entry.key}:signs", np.int8, entry) if entry.format.has_signs else None
        return check_codes(Codes(codes, signs), entry.format)


def _array(z: np.lib.npyio.NpzFile, name: str, dtype: type[np.generic] | np.dtype, entry: Entry) -> np.ndarray:
    if name not in z.files:
        raise ValueError(f"no array '{name}'")
    a = z[name]
    if a.dtype != dtype or a.shape != entry.shape:
        raise ValueError(f"'{name}' is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(entry.shape)}")
    return a


FORMAT = OutputFormat("npz", write, read, per_tensor=False, suffix=SUFFIX, sink=NpzSink)
