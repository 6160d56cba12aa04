"""Engines: how an extraction of a model file is computed.

=========  ====================================================================
engine     what computes the quantized tensors
=========  ====================================================================
``numpy``  the file read with h5py (:mod:`qextract.reading.stored`), each
           quantizer's NumPy form (:mod:`qextract.quantizers.emulation`): no
           TensorFlow. A layer it cannot prove bit for bit is asked of QKeras
           (:mod:`.ask_qkeras`) where QKeras is installed, else refused, naming it.
``qkeras`` the model loaded by Keras and each layer's own quantizers (the path
           :func:`qextract.extract` takes for an in-memory model).
``auto``   ``numpy`` for a ``.h5`` / ``.json`` / ``.keras`` file it can read and place
           (flat models of the layer classes it knows), ``qkeras`` otherwise.
=========  ====================================================================

A file is computed with the semantics of the QKeras generation that wrote it
(:attr:`~qextract.reading.stored.StoredModel.generation`, read from the file),
whichever stack is installed: QKeras 0.9's for a tf-keras file, qkeras-v3's for a
Keras 3 file. QKeras is asked only for a layer of a file its own generation wrote;
a layer of another generation's file that the NumPy forms cannot prove is refused,
naming the stack that can compute it (the Keras path refuses such a file whole).

Both engines give the same :class:`~qextract.Extraction`, so the same export,
byte for byte (``tests/test_engine.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, NeedsQKeras, UnsupportedError, UsageError
from ..generation import Generation
from ..reading.stored import StoredModel
from ..tensor import Extraction
from .ask_qkeras import ask_qkeras, before_tensorflow, qkeras_installed

__all__ = ["ENGINES", "before_tensorflow", "extract_file", "qkeras_installed"]

ENGINES = ("auto", "numpy", "qkeras")
_NUMPY_SUFFIXES = (".h5", ".hdf5", ".json", ".keras")


def extract_file(
    path: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    layers: list[str] | None = None,
    engine: str = "auto",
    trusted: bool = False,
) -> Extraction:
    """The extraction of the model file ``path`` (with ``weights`` for an architecture ``.json``) by ``engine``.

    ``trusted`` is for the ``qkeras`` engine, which lets Keras build the model
    (:func:`qextract.load_model`); the ``numpy`` engine never runs code from a file.
    """
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", arguments=("engine",))
    p = Path(path)
    if engine == "qkeras" or (engine == "auto" and (p.is_dir() or p.suffix.lower() not in _NUMPY_SUFFIXES)):
        return _qkeras_engine(p, weights, layers, trusted)
    from .numpy_engine import numpy_extraction

    try:
        stored, places = _placed(p, weights)
    except (UnsupportedError, NeedsQKeras) as e:
        if engine == "auto" and qkeras_installed():
            return _qkeras_engine(p, weights, layers, trusted)
        raise UnsupportedError(
            f"{p}: the NumPy engine cannot read this model ({e}). Fix: engine='qkeras'", arguments=("engine",)
        ) from None
    except ModelLoadError:
        if engine == "auto" and qkeras_installed():  # a damaged file: the Keras path's own words for it
            return _qkeras_engine(p, weights, layers, trusted)
        raise
    own = _installed() is stored.generation  # QKeras computes only its own generation's files
    ask = ask_qkeras if qkeras_installed() and own else None
    refusal = None if own or not qkeras_installed() else _other_generation(stored.generation)
    try:
        return numpy_extraction(stored.name, places, layers, ask, stored.generation, refusal)
    except (ModelLoadError, UnsupportedError):
        if ask is None or engine != "auto":
            raise
        # a file Keras would refuse, or a layer it cannot build alone: the whole model as Keras loads it
        return _qkeras_engine(p, weights, layers, trusted)


def _installed() -> Generation | None:
    """The installed QKeras generation (None: none, or both, installed)."""
    from ..generation import AmbiguousInstall, installed

    try:
        return installed()
    except AmbiguousInstall:
        return None


def _other_generation(written_by: Generation) -> str:
    """Why a layer of a file ``written_by`` another generation is not asked of the installed QKeras, and the fix."""
    return (
        f"the file was written by {written_by.distribution} (Keras {written_by.keras_major}), whose layers the "
        f"installed QKeras of another generation must not compute. Fix: extract it where {written_by.distribution} "
        f"is installed (the {'QKeras 0.9 stack' if written_by.legacy_keras else 'Keras 3 stack'})"
    )


def _placed(p: Path, weights: Any) -> tuple[StoredModel, list[Any]]:
    """The stored model and its layers placed, or why the NumPy engine cannot read it."""
    from ..reading.stored import read_stored
    from .numpy_engine import stored_spec
    from .placement import place

    for path, what in ((p, "model"), (weights, "weights")):  # as load_model says it
        if path is not None and not Path(path).exists():
            raise ModelLoadError(f"{path}: no such {what} file or folder")
    if weights is not None and Path(weights).is_dir():
        raise ModelLoadError(f"{weights}: is a folder; weights must name a weights .h5 file", arguments=("weights",))
    if p.suffix.lower() == ".json" and weights is None:
        raise ModelLoadError(
            f"{p}: an architecture .json has no weights. Fix: pass the weights .h5 too (weights=...).",
            arguments=("weights",),
        )
    stored = read_stored(p, weights)
    places = place(stored)
    for place_ in places:
        stored_spec(place_.layer)
    return stored, places


def _qkeras_engine(p: Path, weights: Any, layers: list[str] | None, trusted: bool) -> Extraction:
    if not qkeras_installed():
        raise UnsupportedError(
            f"{p}: extracting this model needs QKeras (the NumPy engine reads flat .h5 and .json models of the layer "
            "classes it knows), and TensorFlow, tf-keras or QKeras is not installed. Fix: install qextract with its "
            "full dependencies (pip install qextract)"
        )
    while before_tensorflow:
        before_tensorflow.pop()()
    from ..reading.extraction import extract
    from ..reading.loading import load_model

    return extract(load_model(p, weights=weights, trusted=trusted), layers=layers)
