"""One NumPy ``weights.npz`` holding every tensor, readable with ``np.load`` (no pickle).

Keys per tensor ``<layer>/<tensor>``: the values (float32, laid out);
``:codes`` in the smallest integer dtype of the format; ``:scale`` (float32,
shape ``()`` or ``(N,)``); ``:signs`` (int8) for powers of two. Unquantized
tensors have only their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..layouts import ExportedTensor
from . import _files, _text

FILE = "weights.npz"


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
        np.savez(f, **data)
    return [path]
