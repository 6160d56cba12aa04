"""The only place TensorFlow, Keras and QKeras are imported, and the guard that they fit together.

Two QKeras generations are supported (:mod:`qextract.generation`), chosen by
which one is installed. QKeras 0.9.0 works on TensorFlow 2.21 only through
the legacy Keras 2 package ``tf-keras``, selected by ``TF_USE_LEGACY_KERAS=1``
*before* TensorFlow is first imported: importing :mod:`qextract` sets the
variable when QKeras 0.9 is installed. qkeras-v3 runs on Keras 3, which needs
nothing of the kind: the variable is then left alone. TensorFlow itself is
imported lazily, on first use, so that ``qextract --help`` stays instant.

:func:`keras` is the Keras the installed QKeras runs on: every use of Keras
in qextract goes through it, never through ``tf.keras``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import Any

from .errors import KerasEnvironmentError, UsageError
from .generation import AmbiguousInstall, Generation, installed

__all__ = [
    "KerasEnvironmentError",
    "custom_objects",
    "generation",
    "keras",
    "keras_in_use",
    "qkeras",
    "start_quietly",
    "tf",
]


def _arrange_legacy_keras() -> None:
    """Select tf-keras for TensorFlow when the installed QKeras is 0.9 (TensorFlow reads the variable on import).

    Only before TensorFlow is imported: TensorFlow fixes at import where
    ``import tensorflow.keras...`` resolves (its ``__path__``), so setting the
    variable later would give a session in which ``tf.keras`` and the
    submodules QKeras imports are two different Kerases. A variable the user
    set is left alone; under qkeras-v3 nothing is set (it imports ``keras``).
    """
    if "tensorflow" in sys.modules:
        return
    try:
        legacy = installed().legacy_keras
    except AmbiguousInstall:
        return  # refused with the fix on first use (generation())
    if legacy:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


_arrange_legacy_keras()


@cache
def generation() -> Generation:
    """The installed QKeras generation: what differs between QKeras 0.9 on tf-keras and qkeras-v3 on Keras 3."""
    try:
        return installed()
    except AmbiguousInstall as e:
        raise KerasEnvironmentError(
            f"{e}; both install the package 'qkeras', so it holds a mix of their files. Fix: "
            "pip uninstall -y QKeras qkeras-v3, then install one stack again (pip install qextract for QKeras 0.9, "
            "or the Keras 3 stack as the README says)."
        ) from None


def keras_in_use(tensorflow: ModuleType) -> str:
    """The package ``tf.keras`` really resolves to: ``"tf_keras"``, ``"keras"`` (Keras 3), ...

    Read from the module of the ``Layer`` class, never from ``tf.keras.__name__``,
    which reads ``tensorflow.keras`` as soon as anything imports that submodule
    whichever Keras runs behind it.
    """
    return tensorflow.keras.layers.Layer.__module__.split(".")[0]


@cache
def tf() -> ModuleType:
    """TensorFlow, imported on first use; under QKeras 0.9 checked to run legacy Keras (tf-keras)."""
    gen = generation()
    import tensorflow

    if gen.legacy_keras:
        package = keras_in_use(tensorflow)
        if package != "tf_keras":
            raise KerasEnvironmentError(
                f"tf.keras is Keras 3 (package '{package}'): TensorFlow was imported before legacy Keras was "
                "selected, and QKeras 0.9.0 needs tf-keras 2.x. Fix: import qextract before tensorflow, qkeras "
                "and tf_keras, or set TF_USE_LEGACY_KERAS=1 in the environment before Python starts."
            )
        _restore_removed_tf_aliases(tensorflow)
    return tensorflow


@cache
def keras() -> ModuleType:
    """The Keras the installed QKeras runs on: tf-keras (through ``tf.keras``) for QKeras 0.9, ``keras`` 3 for v3.

    Under Keras 3 the backend must be TensorFlow: qextract runs QKeras's
    quantizers and layers eagerly and reads their tensors as TensorFlow's.
    """
    tensorflow = tf()
    if generation().legacy_keras:
        return tensorflow.keras
    chosen = os.environ.get("KERAS_BACKEND", "tensorflow")
    if chosen != "tensorflow":  # refused before Keras imports that backend (which may not even be installed)
        raise KerasEnvironmentError(_backend_message(chosen))
    import keras as _keras

    major = int(str(getattr(_keras, "__version__", "0")).split(".")[0])
    if major < 3:
        raise KerasEnvironmentError(
            f"qkeras-v3 needs Keras 3, but the package 'keras' is {_keras.__version__}. "
            "Fix: pip install 'keras>=3' (the Keras 3 stack as the README says)."
        )
    backend = _keras.backend.backend()  # also set by ~/.keras/keras.json
    if backend != "tensorflow":
        raise KerasEnvironmentError(_backend_message(backend))
    return _keras


def _backend_message(backend: str) -> str:
    return (
        f"Keras 3 runs on the '{backend}' backend (KERAS_BACKEND or ~/.keras/keras.json); qextract reads qkeras-v3 "
        "models on the TensorFlow backend only. Fix: set KERAS_BACKEND=tensorflow before Python starts."
    )


@cache
def qkeras() -> ModuleType:
    """The qkeras package, imported after TensorFlow and Keras have been checked."""
    base = keras().layers.Layer
    with quiet_keras():  # QKeras's own imports (distutils in tensorflow_model_optimization) warn
        import qkeras as _qkeras

    if not issubclass(_qkeras.QDense, base):
        gen = generation()
        built_on = _qkeras.QDense.__mro__[1].__module__.split(".")[0]
        fix = (
            "import qextract before qkeras, or set TF_USE_LEGACY_KERAS=1 in the environment before Python starts."
            if gen.legacy_keras
            else "reinstall one QKeras stack (see the README)."
        )
        raise KerasEnvironmentError(
            f"QKeras {getattr(_qkeras, '__version__', '?')} (installed as {gen.label}) is built on '{built_on}', "
            f"not on the Keras qextract uses for it ('{base.__module__.split('.')[0]}'). Fix: {fix}"
        )
    return _qkeras


def qkeras_object(spec: str) -> Any:
    """An object of the installed QKeras named ``module:attribute`` (a :class:`Generation` field names it)."""
    import importlib

    qkeras()
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def quantizer_base() -> type:
    """The class every quantizer of the installed QKeras derives from."""
    return qkeras_object(generation().quantizer_base)


def require_keras_model(model: Any, what: str = "model") -> None:
    """Refuse anything that is not a model of the Keras the installed QKeras runs on, naming what it is."""
    gen = generation()
    if isinstance(model, keras().Model):
        return
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if gen.legacy_keras and kind.startswith("keras."):
        raise KerasEnvironmentError(
            f"the {what} is a Keras 3 model ({kind}); QKeras 0.9.0 models are tf-keras models. "
            "Fix: build it with tf.keras / qkeras after importing qextract, or load it with qextract.load_model."
        )
    if not gen.legacy_keras and kind.startswith("tf_keras."):
        raise KerasEnvironmentError(
            f"the {what} is a tf-keras (Keras 2) model ({kind}), but the installed QKeras is {gen.label}, whose "
            "models are Keras 3 models. Fix: build it with keras / qkeras, or use the QKeras 0.9 stack for it."
        )
    raise UsageError(
        f"the {what} is a {kind}, not a {gen.keras.replace('_', '-')} model; give a model (qextract.load_model(path))."
    )


def _restore_removed_tf_aliases(tensorflow: ModuleType) -> None:
    """Put back two TensorFlow internals QKeras 0.9.0 still calls.

    ``QConv2DTranspose.call`` uses ``array_ops.stack``, ``QGRU`` ``array_ops.unstack``, and the ``QSimpleRNN`` /
    ``QLSTM`` / ``QGRU`` cells use ``nest.is_sequence``; TensorFlow 2.21 no
    longer has them, so those layers cannot even be built. Each alias is
    added only where it is missing, pointing at the public function that
    replaced it; nothing that exists is changed.
    """
    from tensorflow.python.ops import array_ops
    from tensorflow.python.util import nest

    for name in ("stack", "unstack"):
        if not hasattr(array_ops, name):
            setattr(array_ops, name, getattr(tensorflow, name))
    if not hasattr(nest, "is_sequence"):
        nest.is_sequence = nest.is_nested


@cache
def custom_objects() -> dict[str, Any]:
    """Every QKeras layer, quantizer and helper, for deserialising models."""
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    qkeras()
    _add_supported_quantized_objects(objects)
    # QKeras 0.9.0 forgets this one in its own table.
    objects.setdefault("quantized_hswish", qkeras().quantizers.quantized_hswish)
    return objects


@contextmanager
def quiet_keras() -> Iterator[None]:
    """Hide the deprecation chatter QKeras's own code raises (pyparsing, distutils) on every load,
    and the ``keras.constraints.serialize`` warning a wrapper (TimeDistributed, Bidirectional) gives
    when it rebuilds a QKeras layer from its config."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*keras\.constraints\.serialize", category=UserWarning)
        yield


def quiet_config(obj: Any) -> dict[str, Any]:
    """``obj.get_config()`` without the warning QKeras layers trigger by
    serializing quantizers through ``keras.constraints.serialize``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*keras\.constraints\.serialize", category=UserWarning)
        return obj.get_config()


def model_config(model: Any) -> dict[str, Any]:
    """``model.get_config()`` in tf-keras's functional form (:meth:`Generation.legacy_config`), for graph edits.

    A layer whose own ``get_config()`` fails (qkeras-v3 1.2.1's QAdaptiveActivation without
    ``ema_freeze_delay``) is named in an UnsupportedError instead of Keras's bare error.
    """
    from .errors import UnsupportedError

    try:
        config = quiet_config(model)
    except Exception as e:
        for layer in model._flatten_layers(include_self=False):
            try:
                quiet_config(layer)
            except Exception as inner:
                raise UnsupportedError(
                    f"layer '{layer.name}' ({type(layer).__name__}) cannot write its configuration under "
                    f"{generation().label} ({type(inner).__name__}: {str(inner).splitlines()[0][:200]}), so the "
                    "model cannot be rebuilt. Fix: configure the layer so that get_config() works (QAdaptiveActivation:"
                    " give ema_freeze_delay), or pass the float model yourself where one is asked for."
                ) from None
        raise UnsupportedError(
            f"model '{model.name}' cannot write its configuration ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    return generation().legacy_config(config)


@contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Silence file descriptor 2 (C++ logging bypasses Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_quietly() -> None:
    """Import TensorFlow and probe devices with its C++ start-up chatter silenced.

    TensorFlow 2.21 prints oneDNN, CUDA-probe and absl notices straight to
    file descriptor 2 before any log level applies; the CLI calls this once so
    that users see only qextract's own messages. Errors still surface as
    Python exceptions.
    """
    with _stderr_to_devnull():
        t = tf()
        t.config.list_physical_devices()
        t.constant(0.0)
