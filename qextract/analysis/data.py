"""Input data for reports: anything reasonable -> validated float32 batches.

``data`` may be a NumPy array of samples, a ``.npy`` / ``.npz`` path, the name
``"digits"`` (scikit-learn's bundled 8x8 digit images, scaled to [0, 1]), a
``tf.data.Dataset`` (batched or not; ``(x, y)`` elements use ``x``) or any
iterable of batches (arrays, or ``(x, y)`` tuples). Every batch is checked
against the model's input shape; a mismatch raises :class:`DataError` naming
the expected shape.

>>> stream = batches(np.zeros((10, 8, 8, 1)), (8, 8, 1), batch_size=4)   # doctest: +SKIP
>>> [b.shape[0] for b in stream], stream.total                             # doctest: +SKIP
([4, 4, 2], 10)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

Shape = tuple[int | None, ...]

NAMED_DATA = ("digits",)
"""Data sets addressable by name."""

_NPZ_KEYS = ("x", "inputs", "data", "images")


def expected(input_shape: Shape) -> str:
    """The expected batch shape as text, e.g. ``(N, 8, 8, 1)``."""
    dims = ["N"] + ["?" if d is None else str(d) for d in input_shape]
    return f"({', '.join(dims)})"


def digits(input_shape: Shape = (8, 8, 1)) -> np.ndarray:
    """scikit-learn's 1797 digit images, scaled to [0, 1] (``/16``), float32.

    Shaped ``(N, 8, 8, 1)``, or ``(N, 8, 8)`` / ``(N, 64)`` when the model takes that.
    """
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / np.float32(16.0)
    for shape in ((8, 8, 1), (8, 8), (64,)):
        if _fits(shape, input_shape):
            return images.reshape((-1, *shape))
    return images.reshape(-1, 8, 8, 1)


def _fits(shape: tuple[int, ...], input_shape: Shape) -> bool:
    return len(shape) == len(input_shape) and all(e is None or e == s for s, e in zip(shape, input_shape))


@dataclass
class BatchStream:
    """An iterable of validated float32 batches; ``total`` samples if known."""

    source: Callable[[], Iterator[Any]]
    input_shape: Shape
    total: int | None
    description: str

    def __iter__(self) -> Iterator[np.ndarray]:
        seen = 0
        for i, raw in enumerate(self.source()):
            batch = check_batch(raw, self.input_shape, f"{self.description}, batch {i}")
            if batch.shape[0] == 0:
                continue
            seen += batch.shape[0]
            yield batch
        if seen == 0:
            raise DataError(
                f"{self.description} holds no samples; expected batches of shape {expected(self.input_shape)}"
            )


def check_batch(raw: Any, input_shape: Shape, where: str = "data") -> np.ndarray:
    """``raw`` as a float32 array of shape ``(N, *input_shape)``, or :class:`DataError`."""
    if isinstance(raw, tuple) and len(raw) in (2, 3):
        raw = raw[0]  # (x, y) or (x, y, sample_weight)
    if isinstance(raw, dict):
        raise DataError(
            f"{where}: got a dict with keys {', '.join(map(str, raw))}; give the inputs as an array "
            f"of shape {expected(input_shape)}"
        )
    try:
        x = np.asarray(raw)
    except Exception as exc:  # ragged lists, unconvertible objects
        raise DataError(f"{where}: cannot be read as an array ({exc}); expected {expected(input_shape)}") from None
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(
            f"{where}: dtype {x.dtype} is not numeric; expected float32 values of shape {expected(input_shape)}"
        )
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: complex dtype {x.dtype}; expected real values of shape {expected(input_shape)}")
    if x.ndim != len(input_shape) + 1 or not _fits(x.shape[1:], input_shape):
        hint = ""
        if _fits(x.shape, input_shape):
            hint = " (this looks like one sample: add a batch axis)"
        elif x.ndim == len(input_shape) and x.ndim >= 1 and _fits((*x.shape[1:], 1), input_shape):
            hint = " (add a trailing channel axis: x[..., None])"
        raise DataError(
            f"{where}: shape {x.shape} does not fit the model input; expected {expected(input_shape)}{hint}"
        )
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: contains NaN or infinite values")
    return x


def batches(data: Any, input_shape: Shape, batch_size: int = 256) -> BatchStream:
    """Turn ``data`` into a :class:`BatchStream` of float32 batches for a model
    taking samples of ``input_shape`` (without the batch axis)."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    input_shape = tuple(input_shape)
    if isinstance(data, str) and data in NAMED_DATA:
        return _array_stream(digits(input_shape), input_shape, batch_size, "digits data")
    if isinstance(data, (str, os.PathLike)):
        return _array_stream(_load_file(Path(data)), input_shape, batch_size, f"'{data}'")
    if isinstance(data, tuple) and len(data) in (2, 3) and isinstance(data[0], np.ndarray):
        data = data[0]  # Keras-style (x, y)
    if isinstance(data, np.ndarray):
        return _array_stream(data, input_shape, batch_size, "data")
    if _is_tf_dataset(data):
        return _dataset_stream(data, input_shape, batch_size)
    if _is_tensor(data):
        return _array_stream(np.asarray(data), input_shape, batch_size, "data")
    if isinstance(data, Mapping):
        raise DataError(
            f"cannot use a {type(data).__name__} as data; give the model inputs as an array of shape "
            f"{expected(input_shape)} (for an .npz file, pass its path)"
        )
    if isinstance(data, Iterable):
        total = None
        if isinstance(data, (list, tuple)):
            try:
                total = sum(int(np.shape(b[0] if isinstance(b, tuple) else b)[0]) for b in data)
            except Exception:  # malformed batches are reported when iterated
                total = None
        return BatchStream(lambda: iter(data), input_shape, total, "data")
    raise DataError(
        f"cannot use {type(data).__name__} as data; give a NumPy array of shape {expected(input_shape)}, "
        "a .npy/.npz path, 'digits', a tf.data.Dataset or an iterable of batches"
    )


def _array_stream(x: np.ndarray, input_shape: Shape, batch_size: int, description: str) -> BatchStream:
    # Check shape and dtype up front, so errors name the array, not "batch 0".
    if x.ndim != len(input_shape) + 1 or not _fits(x.shape[1:], input_shape):
        check_batch(x, input_shape, description)
    check_batch(x[:1], input_shape, description)
    n = int(x.shape[0])

    def source() -> Iterator[np.ndarray]:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size]

    return BatchStream(source, input_shape, n, description)


def _load_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if len(keys) == 1:
                    return archive[keys[0]]
                for key in _NPZ_KEYS:
                    if key in keys:
                        return archive[key]
                raise DataError(
                    f"'{path}' holds arrays {', '.join(keys)}; name the input array one of {', '.join(_NPZ_KEYS)} "
                    "or save only that array"
                )
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read data file '{path}': {exc}") from None
    raise DataError(f"data file '{path}' is neither .npy nor .npz")


def _is_tf_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _is_tensor(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "numpy") and hasattr(data, "shape")


def _dataset_stream(ds: Any, input_shape: Shape, batch_size: int) -> BatchStream:
    spec = ds.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    rank = getattr(getattr(x_spec, "shape", None), "rank", None)
    if rank == len(input_shape):  # unbatched samples
        ds = ds.batch(batch_size)

    def source() -> Iterator[Any]:
        for element in ds:
            if isinstance(element, (tuple, list)):
                element = element[0]
            yield element.numpy() if hasattr(element, "numpy") else element

    return BatchStream(source, input_shape, None, "dataset")
