"""Load QKeras models from every form they are published in.

``.h5`` (full model), ``.keras``, a SavedModel folder, or an architecture
``.json`` plus a weights ``.h5``. Every QKeras custom object is registered.
Failures become :class:`ModelLoadError` naming the file and, where known,
the layer class and the fix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ._keras import custom_objects, tf
from .errors import ModelLoadError

__all__ = ["load_model"]

_UNKNOWN = (
    re.compile(r"Unknown (?:layer|object|activation|initializer|constraint)[^'\"`]*['\"`]?([\w.]+)"),
    re.compile(r"`([\w.]+)` is a custom class"),
)


def load_model(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> Any:
    """Load a (Q)Keras model for extraction; the files are only read.

    >>> model = qextract.load_model("model.h5")                       # doctest: +SKIP
    >>> model = qextract.load_model("arch.json", weights="weights.h5")  # doctest: +SKIP
    """
    p = Path(path)
    _must_exist(p, "model")
    if weights is not None:
        _must_exist(Path(weights), "weights")
        if Path(weights).is_dir():
            raise ModelLoadError(f"{weights}: is a folder; --weights expects a weights .h5 file")
    if p.is_dir():
        return _load_savedmodel(p)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return _load_json(p, weights)
    if suffix in (".h5", ".hdf5", ".keras"):
        model = _load_file(p)
        if weights is not None:
            _load_weights(model, Path(weights))
        return model
    raise ModelLoadError(
        f"{p}: unknown model file type '{suffix or '(none)'}'. Fix: give a .h5, .keras, "
        "architecture .json (with --weights), or a SavedModel folder."
    )


def _must_exist(p: Path, what: str) -> None:
    if not p.exists():
        raise ModelLoadError(f"{p}: no such {what} file or folder")
    if p.is_file() and not os.access(p, os.R_OK):
        raise ModelLoadError(f"{p}: {what} file is not readable (permissions)")


def _translate(p: Path, e: Exception) -> ModelLoadError:
    text = str(e)
    m = next((found for pattern in _UNKNOWN if (found := pattern.search(text))), None)
    if m:
        return ModelLoadError(
            f"{p}: unknown layer or object class '{m.group(1)}'. Fix: it is not a QKeras or "
            "Keras class; load the model yourself with its custom_objects and call qextract.extract(model)."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return ModelLoadError(f"{p}: cannot read model ({type(e).__name__}: {first[:300]})")


def _load_file(p: Path) -> Any:
    if p.suffix.lower() in (".h5", ".hdf5"):
        _check_h5(p)
    try:
        return tf().keras.models.load_model(str(p), custom_objects=custom_objects(), compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises anything from OSError to TypeError
        raise _translate(p, e) from None


def _check_h5(p: Path) -> None:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError as e:
        raise ModelLoadError(f"{p}: not a readable HDF5 file, truncated or corrupt ({e})") from None
    if not has_config:
        raise ModelLoadError(
            f"{p}: holds weights only, no architecture. Fix: pass the architecture .json as the "
            "model and this file as --weights."
        )


def _load_savedmodel(p: Path) -> Any:
    if not (p / "saved_model.pb").exists():
        raise ModelLoadError(f"{p}: is a folder but not a SavedModel (no saved_model.pb). Fix: give a model file.")
    try:
        return tf().keras.models.load_model(str(p), custom_objects=custom_objects(), compile=False)
    except Exception as e:  # noqa: BLE001
        raise _translate(p, e) from None


def _load_json(p: Path, weights: str | os.PathLike[str] | None) -> Any:
    try:
        text = p.read_text()
        json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{p}: not a JSON model architecture ({e})") from None
    if weights is None:
        raise ModelLoadError(
            f"{p}: an architecture .json has no weights. Fix: pass the weights .h5 too "
            "(--weights FILE, or load_model(path, weights=...))."
        )
    try:
        model = tf().keras.models.model_from_json(text, custom_objects=custom_objects())
    except Exception as e:  # noqa: BLE001
        raise _translate(p, e) from None
    _load_weights(model, Path(weights))
    return model


def _load_weights(model: Any, w: Path) -> None:
    try:
        model.load_weights(str(w))
    except Exception as e:  # noqa: BLE001
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"{w}: weights do not fit model '{model.name}' ({type(e).__name__}: {text[:300]}). "
            "Fix: use the weights saved from this very architecture."
        ) from None
