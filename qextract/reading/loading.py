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

from .. import _keras
from .._keras import custom_objects, generation, quiet_keras, tf
from ..errors import ModelLoadError, QExtractError, UntrustedCodeError

__all__ = ["load_model"]

_UNKNOWN = (
    re.compile(r"Unknown (?:layer|object|activation|initializer|constraint)[^'\"`]*['\"`]?([\w.]+)"),
    re.compile(r"`([\w.]+)` is a custom class"),
    re.compile(r"Could not locate class '([\w.]+)'"),  # Keras 3, in the cause of its "could not be deserialized"
)


def load_model(
    path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, *, trusted: bool = False
) -> Any:
    """Load a (Q)Keras model for extraction; the files are only read.

    A model whose configuration carries Python code (a ``Lambda`` layer: Keras
    marshals its bytecode into the file and runs it while rebuilding the
    model) is refused with :class:`UntrustedCodeError` before Keras reads it,
    unless ``trusted=True`` says the file comes from a source you trust.

    >>> model = qextract.load_model("model.h5")                       # doctest: +SKIP
    >>> model = qextract.load_model("arch.json", weights="weights.h5")  # doctest: +SKIP
    """
    p = Path(path)
    _must_exist(p, "model")
    if weights is not None:
        _must_exist(Path(weights), "weights")
        if Path(weights).is_dir():
            raise ModelLoadError(
                f"{weights}: is a folder; weights must name a weights .h5 file", arguments=("weights",)
            )
    if p.is_dir():
        return _load_savedmodel(p, trusted)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return _load_json(p, weights, trusted)
    if suffix in (".h5", ".hdf5", ".keras"):
        model = _load_file(p, trusted)
        if weights is not None:
            _load_weights(model, Path(weights))
        return model
    raise ModelLoadError(
        f"{p}: unknown model file type '{suffix or '(none)'}'. Fix: give a .h5, .keras, "
        "architecture .json (with weights=...), or a SavedModel folder.",
        arguments=("weights",),
    )


def _must_exist(p: Path, what: str) -> None:
    if not p.exists():
        raise ModelLoadError(f"{p}: no such {what} file or folder")
    if p.is_file() and not os.access(p, os.R_OK):
        raise ModelLoadError(f"{p}: {what} file is not readable (permissions)")


def _translate(p: Path, e: Exception) -> QExtractError:
    if isinstance(e, QExtractError):  # e.g. KerasEnvironmentError from the first TensorFlow import
        return e
    text, cause = str(e), e.__cause__ or e.__context__
    for _ in range(8):  # Keras 3 names the class only in the error it re-raised from
        if cause is None:
            break
        text, cause = f"{text}\n{cause}", cause.__cause__ or cause.__context__
    m = next((found for pattern in _UNKNOWN if (found := pattern.search(text))), None)
    if m:
        return ModelLoadError(
            f"{p}: unknown layer or object class '{m.group(1)}'. Fix: it is not a QKeras or "
            "Keras class; load the model yourself with its custom_objects and call qextract.extract(model)."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return ModelLoadError(f"{p}: cannot read model ({type(e).__name__}: {first[:300]})")


def _load_file(p: Path, trusted: bool) -> Any:
    import zipfile

    import h5py

    # Keras's own refusal of lambdas, lifted only when trusted (tf-keras applies it to .keras only, Keras 3 to .h5 too)
    kwargs: dict[str, Any] = {"safe_mode": not trusted}
    if p.suffix.lower() in (".h5", ".hdf5") or (not zipfile.is_zipfile(p) and h5py.is_hdf5(p)):
        # tf-keras reads a ".keras" file that is not a zip archive as HDF5 (an .h5 renamed): check it as one
        _check_h5(p, trusted)
        if p.suffix.lower() == ".keras" and not generation().reads_h5_named_keras:
            raise ModelLoadError(
                f"{p}: an HDF5 model file named .keras; Keras 3 reads a .keras name as a zip archive only. "
                "Fix: give it its own suffix (.h5)."
            )
    else:
        config = _keras_zip_config(p)
        _refuse_other_generation(p, _keras_zip_version(p), config)
        if not trusted:
            _refuse_code(p, config)
    try:
        with quiet_keras():
            return _keras.keras().models.load_model(str(p), custom_objects=custom_objects(), compile=False, **kwargs)
    except Exception as e:
        raise _translate(p, e) from None


def _check_h5(p: Path, trusted: bool) -> None:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            config, version = f.attrs.get("model_config"), f.attrs.get("keras_version")
    except OSError as e:
        raise ModelLoadError(f"{p}: not a readable HDF5 file, truncated or corrupt ({e})") from None
    if config is None:
        raise ModelLoadError(
            f"{p}: holds weights only, no architecture. Fix: pass the architecture .json as the "
            "model and this file as its weights (load_model(path, weights=...)).",
            arguments=("weights",),
        )
    parsed = _parse_config(p, config)
    _refuse_other_generation(p, version, parsed)
    if not trusted:
        _refuse_code(p, parsed)


# Layer classes whose configuration is (or names) Python code that Keras runs while rebuilding the model
# ("__lambda__": a lambda in the newer serialization format).
_CODE_CLASSES = frozenset({"Lambda", "__lambda__"})


def _refuse_other_generation(p: Path, keras_version: Any, config: Any) -> None:
    """Refuse, by name, a file of QKeras layers saved by the other Keras generation: it cannot be rebuilt here.

    QKeras 0.9 files (Keras 2.x, tf-keras) name classes and arguments qkeras-v3 does not take, and the
    other way round; a plain Keras file is left to Keras, which reads many of the other generation's.
    """
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode()
    major = str(keras_version or "").split(".")[0]
    gen = generation()
    if not major.isdigit() or int(major) == gen.keras_major or not _qkeras_classes(config):
        return
    made_by = "QKeras 0.9 on tf-keras" if int(major) == 2 else "qkeras-v3 on Keras 3"
    fix = (
        "migrate it to a qkeras-v3 .keras file, or read it with the QKeras 0.9 stack (pip install qextract)"
        if int(major) == 2
        else "read it with the Keras 3 stack (see the README)"
    )
    raise ModelLoadError(
        f"{p}: saved by Keras {keras_version} ({made_by}); the installed {gen.label} cannot rebuild its QKeras "
        f"layers ({', '.join(_qkeras_classes(config)[:4])}). Fix: {fix}."
    )


def _qkeras_classes(config: Any) -> list[str]:
    """The QKeras class names (layers and quantizers) a model configuration refers to, each once."""
    known = set(_keras.custom_objects())
    found: dict[str, None] = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in known:
                found[node["class_name"]] = None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


def _parse_config(p: Path, text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ModelLoadError(f"{p}: the model configuration is not valid JSON ({type(e).__name__})") from None


def _keras_zip_config(p: Path) -> Any:
    """The ``config.json`` of a ``.keras`` archive (None if it is not one: Keras then says why)."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            return _parse_config(p, z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError):
        return None


def _keras_zip_version(p: Path) -> Any:
    """The ``keras_version`` in a ``.keras`` archive's ``metadata.json`` (None if unreadable)."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, AttributeError):
        return None


def _code_layers(config: Any) -> list[str]:
    """Names of every layer, at any depth of ``config``, that carries code (``Lambda`` and the like)."""
    found: list[str] = []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            inner = node.get("config")
            if node.get("class_name") in _CODE_CLASSES:
                name = inner.get("name", "?") if isinstance(inner, dict) else "?"
                found.append(f"'{name}' ({node['class_name']})")
                continue
            if any(_marshalled(key, value) for key, value in node.items()):  # bytecode in any other layer's config
                found.append(f"'{node.get('name', '?')}' (marshalled function)")
                continue
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(set(found))


def _marshalled(key: Any, value: Any) -> bool:
    """A config entry saying a function beside it is marshalled bytecode: ``function_type`` (Lambda),
    ``residual_fn_type`` / ``dropout_fn_type`` (the RNN cell wrappers), all equal to ``"lambda"``."""
    return value == "lambda" and isinstance(key, str) and key.endswith(("function_type", "_fn_type"))


def _refuse_code(p: Path, config: Any) -> None:
    layers = _code_layers(config)
    if layers:
        raise UntrustedCodeError(
            f"{p}: layer {', '.join(layers)} carries Python code that Keras would run while loading the "
            "model; qextract does not run code from a model file. Fix: if you trust where the file comes "
            "from, load it with trusted=True."
        )


def _savedmodel_configs(p: Path) -> list[Any]:
    """Every layer's metadata JSON in a SavedModel's ``keras_metadata.pb``."""
    meta = p / "keras_metadata.pb"
    if not meta.is_file():
        return []
    tf()
    from tf_keras.protobuf import saved_metadata_pb2

    proto = saved_metadata_pb2.SavedMetadata()
    try:
        proto.ParseFromString(meta.read_bytes())
    except Exception as e:
        raise ModelLoadError(f"{meta}: unreadable Keras metadata ({type(e).__name__})") from None
    return [_parse_config(meta, node.metadata) for node in proto.nodes if node.metadata]


def _load_savedmodel(p: Path, trusted: bool) -> Any:
    if not (p / "saved_model.pb").exists():
        raise ModelLoadError(f"{p}: is a folder but not a SavedModel (no saved_model.pb). Fix: give a model file.")
    if not generation().loads_savedmodel:
        raise ModelLoadError(
            f"{p}: a SavedModel folder, which Keras 3 cannot load as a model (only export to), so the installed "
            f"{generation().label} cannot read its layers. Fix: save the model as a .keras file where it was made "
            "(model.save('model.keras')), or read the folder with the QKeras 0.9 stack."
        )
    if not trusted:
        _refuse_code(p, _savedmodel_configs(p))
    try:
        with quiet_keras():
            return _keras.keras().models.load_model(str(p), custom_objects=custom_objects(), compile=False)
    except Exception as e:
        raise _translate(p, e) from None


def _load_json(p: Path, weights: str | os.PathLike[str] | None, trusted: bool) -> Any:
    try:
        text = p.read_text()
        config = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelLoadError(f"{p}: not a JSON model architecture ({type(e).__name__}: {str(e)[:200]})") from None
    if not trusted:
        _refuse_code(p, config)
    if weights is None:
        raise ModelLoadError(
            f"{p}: an architecture .json has no weights. Fix: pass the weights .h5 too "
            "(load_model(path, weights=...)).",
            arguments=("weights",),
        )
    _refuse_other_generation(p, config.get("keras_version") if isinstance(config, dict) else None, config)
    try:
        with quiet_keras(), _unsafe_if(trusted):
            model = _keras.keras().models.model_from_json(text, custom_objects=custom_objects())
    except Exception as e:
        raise _translate(p, e) from None
    _load_weights(model, Path(weights))
    return model


def _unsafe_if(trusted: bool) -> Any:
    """Keras's own safe mode (tf-keras's refuses a marshalled lambda in JSON, not in .h5), lifted only when trusted."""
    from contextlib import nullcontext

    if not trusted:
        return nullcontext()
    import importlib

    tf()
    return importlib.import_module(generation().serialization).SafeModeScope(False)


def _load_weights(model: Any, w: Path) -> None:
    try:
        model.load_weights(str(w))
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"{w}: weights do not fit model '{model.name}' ({type(e).__name__}: {text[:300]}). "
            "Fix: use the weights saved from this very architecture."
        ) from None
