"""Migrate a QKeras 0.9 model file to qkeras-v3 (Keras 3), proven tensor by tensor before anything is written.

The old file is read without QKeras 0.9 (h5py and its stored configuration:
:mod:`qextract.reading.stored`), each layer translated to qkeras-v3 (:mod:`.translate`), the graph
wired from the stored nodes and the weights set by name (:mod:`.build`). Then what the new model
computes (its own quantizers: :func:`qextract.extract`) is compared with what QKeras 0.9 computed
(:mod:`.compare`): by default the old file extracted by the NumPy engine, which reproduces
QKeras 0.9 bit for bit without it; or an export made under QKeras 0.9. All or nothing: the new
file is written (atomically) only when every layer migrated and every row is the same.

Runs under qkeras-v3 only: it builds qkeras-v3 layers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .._atomic import atomic_file, check_outputs, within
from ..errors import ExportError, KerasEnvironmentError, ModelLoadError, UnsupportedError, UsageError
from ..tensor import Extraction
from .result import LayerFailure, MigrationResult

__all__ = ["LayerFailure", "MigrationResult", "migrate"]

PathLike = str | os.PathLike[str]


def migrate(
    old: PathLike,
    *,
    weights: PathLike | None = None,
    out: PathLike,
    reference: PathLike | None = None,
    force: bool = False,
) -> MigrationResult:
    """Rebuild the QKeras 0.9 model file ``old`` (``.h5``, or ``.json`` with ``weights``) with qkeras-v3 into ``out``.

    ``out`` (``.keras``, or ``.h5``) is written only if every layer migrated and the new model's
    codes, scales, formats, shapes and activation formats equal QKeras 0.9's: those computed from
    ``old``'s raw weights (the NumPy engine), or, with ``reference``, those of an export folder made
    under QKeras 0.9. Otherwise nothing is written and the result says what differs (``table``)
    or which layers could not be migrated (``failures``); see :attr:`MigrationResult.exit_code`.
    ``out`` never replaces ``old``, ``weights`` or a file in ``reference``; an existing ``out`` only
    with ``force=True``.

    >>> r = qextract.migrate("model.h5", out="model.keras")  # doctest: +SKIP
    >>> r.migrated, r.differences  # doctest: +SKIP
    """
    from .._keras import generation
    from ..generation import KERAS3

    if generation() is not KERAS3:
        raise KerasEnvironmentError(
            f"migrate builds qkeras-v3 layers; run it in the Keras 3 environment: see requirements-keras3.txt "
            f"(installed: {generation().label})"
        )
    old_p, out_p = Path(old), Path(out)
    ref_p = None if reference is None else Path(reference)
    _check_paths(old_p, None if weights is None else Path(weights), out_p, ref_p, force)
    from ..reading.stored import read_stored
    from .build import build_model

    stored = read_stored(old_p, weights)
    if stored.generation is KERAS3:
        raise UsageError(
            f"{old_p}: is already a Keras 3 (qkeras-v3) model file; there is nothing to migrate. Fix: load it with "
            "qextract.load_model"
        )
    against: Extraction | Path
    if ref_p is not None:
        from ..verification.verifier import load_export

        load_export(ref_p)  # a complete, unchanged export, before anything is built
        against, what = ref_p, f"the export {ref_p}"
    else:
        against = _reference_extraction(old_p, weights)
        what = "QKeras 0.9's, computed from the old file's raw weights (numpy engine)"
    built = build_model(stored)
    if built.failures:
        return MigrationResult(old_p, None, what, _empty(), built.failures)
    from ..reading.extraction import extract
    from .compare import compare

    new_ex = extract(built.model)
    with tempfile.TemporaryDirectory(prefix="qextract-migrate-") as tmp:
        found = compare(new_ex, against, tmp, built.model)
    result = MigrationResult(old_p, None, what, found.table, found.failures, found.header)
    if found.failures or not result.differences.empty:
        return result
    unreadable = _save(built.model, out_p)
    if unreadable:
        return MigrationResult(old_p, None, what, found.table, unreadable, found.header)
    return MigrationResult(old_p, out_p, what, found.table, (), found.header)


def _check_paths(old: Path, weights: Path | None, out: Path, reference: Path | None, force: bool) -> None:
    """Inputs exist; ``out`` is a new model file that is no input and not inside ``reference``."""
    from .._keras import generation

    for path, what in ((old, "model"), (weights, "weights")):
        if path is not None and not path.exists():
            raise ModelLoadError(f"{path}: no such {what} file", arguments=() if what == "model" else ("weights",))
        if path is not None and path.is_dir():
            raise ModelLoadError(f"{path}: is a folder; give the {what} file")
    if old.suffix.lower() == ".json" and weights is None:
        raise ModelLoadError(
            f"{old}: an architecture .json holds no weights. Fix: pass weights=...", arguments=("weights",)
        )
    if reference is not None and not reference.is_dir():
        raise UsageError(
            f"{reference}: reference must be an export folder (made under QKeras 0.9)", arguments=("reference",)
        )
    suffixes = generation().model_suffixes
    if not out.name.lower().endswith(suffixes):
        raise UsageError(
            f"out={out}: give a {suffixes[0]} file for the new model (or {', '.join(suffixes[1:])})", arguments=("out",)
        )
    try:
        check_outputs({"out": out}, {"model": old, "weights file": weights, "reference": reference})
    except ExportError as e:
        raise ExportError(str(e), arguments=("out",)) from None
    if reference is not None and within(out, reference):
        raise ExportError(
            f"out={out}: lies inside the reference export {reference}, which is only read. Fix: choose another out.",
            arguments=("out",),
        )
    if os.path.lexists(out) and not force:
        raise ExportError(
            f"out={out}: exists. Fix: choose another out, or pass force=True to replace it.", arguments=("out", "force")
        )


def _reference_extraction(old: Path, weights: PathLike | None) -> Extraction:
    """QKeras 0.9's quantized tensors of ``old``, by the NumPy engine; refused naming why and the fix."""
    from ..engines import extract_file

    try:
        return extract_file(old, weights=weights, engine="numpy")
    except UnsupportedError as e:
        raise UnsupportedError(
            f"{str(e).rstrip('.')}. Without it migrate has nothing to check the new model against. Fix: export the "
            "model under QKeras 0.9 and pass that folder as reference=...",
            arguments=("reference",),
        ) from None


def _save(model: Any, out: Path) -> tuple[LayerFailure, ...]:
    """The new model under a temporary name beside ``out``, read back by Keras 3 and compared weight by weight, then
    renamed into place; the layers Keras 3 cannot read back (then nothing is written)."""
    import re

    import numpy as np

    from .._keras import generation

    class _Unreadable(Exception):
        pass

    try:
        with atomic_file(out) as tmp:
            generation().save_model(model, tmp, out.suffix.lower())
            try:
                back = _reload(tmp, out.suffix.lower())
            except Exception as e:  # qkeras-v3 writes some layers it cannot read back
                raise _Unreadable(" ".join(str(e).split())) from None
            if not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights())):
                raise _Unreadable("it reads back with other weights")
    except _Unreadable as e:
        text = str(e)
        named = re.search(r"<(\w+) name=([^,>]+)", text)
        layer, cls = (named.group(2), named.group(1)) if named else (model.name, type(model).__name__)
        why = text.split(":", 1)[-1].strip() if named else text
        return (LayerFailure(layer, cls, f"qkeras-v3 saves it but cannot load it back ({why[:300]})"),)
    except OSError as e:
        raise ExportError(
            f"out={out}: writing failed ({e.strerror or e}); nothing was left behind", arguments=("out",)
        ) from None
    return ()


def _reload(tmp: Path, suffix: str) -> Any:
    """The file saved under a temporary name, loaded by Keras 3 (which knows a format only by its file suffix)."""
    import shutil

    from .._keras import custom_objects, keras, quiet_keras

    with tempfile.TemporaryDirectory(prefix="qextract-migrate-") as folder, quiet_keras():
        named = Path(folder) / f"model{suffix}"
        shutil.copyfile(tmp, named)
        return keras().models.load_model(named, custom_objects=custom_objects(), compile=False)


def _empty() -> Any:
    import pandas as pd

    from ..verification.comparison import COLUMNS

    return pd.DataFrame(columns=[*COLUMNS, "raw_differ", "raw_max_ulp"])
