"""One NumPy ``weights.npz`` holding every tensor, readable with ``np.load`` (no pickle).

Keys per tensor ``<layer>/<tensor>``: the values (float32, laid out);
``:codes`` in the smallest integer dtype of the format; ``:scale`` (float32,
shape ``()`` or ``(N,)``); ``:signs`` (int8) for powers of two. Unquantized
tensors have only their values. :func:`read` returns a tensor's codes and signs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text
from ._descriptor import MODEL_STEM, OutputFormat
from ._entry import Entry
from ._words import Codes, check_codes

SUFFIX = ".npz"
FILE = MODEL_STEM + SUFFIX


def arrays(tensors: Sequence[ExportedTensor]) -> dict[str, np.ndarray]:
    """The arrays :func:`write` stores, by key."""
    _text.check_unique_keys(tensors)
    out: dict[str, np.ndarray] = {}
    for t in tensors:
        out[t.key] = np.asarray(t.values, np.float32)
        if t.codes is not None:
            out[f"{t.key}:codes"] = np.asarray(t.codes).astype(t.format.code_dtype)
            out[f"{t.key}:scale"] = np.asarray(t.scale, np.float32)
        if t.signs is not None:
            out[f"{t.key}:signs"] = np.asarray(t.signs).astype(np.int8)
    return out


def write(
    tensors: Sequence[ExportedTensor], out_dir: Path, *, word_bits: int | None = None, model_name: str = "model"
) -> list[Path]:
    """Write ``weights.npz`` into ``out_dir``; ``word_bits`` does not apply (arrays keep their dtypes)."""
    path = Path(out_dir) / FILE
    data = arrays(tensors)
    with _files.opened(path) as f:
        np.savez(f, **data)  # type: ignore[arg-type]  # numpy types a keyword as allow_pickle
    return [path]


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


FORMAT = OutputFormat("npz", write, read, per_tensor=False, suffix=SUFFIX)
