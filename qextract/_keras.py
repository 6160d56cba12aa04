"""Legacy-Keras set-up and the only place TensorFlow and QKeras are imported.

QKeras 0.9.0 works on TensorFlow 2.21 only through the legacy Keras 2 package
``tf-keras``, selected by ``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is
first imported. Importing :mod:`qextract` sets the variable; TensorFlow itself
is imported lazily, on first use, so that ``qextract --help`` stays instant.
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

__all__ = ["KerasEnvironmentError", "custom_objects", "keras_in_use", "qkeras", "start_quietly", "tf"]


def _arrange_legacy_keras() -> None:
    """Select tf-keras for TensorFlow, which reads the variable when it is imported.

    Only before TensorFlow is imported: TensorFlow fixes at import where
    ``import tensorflow.keras...`` resolves (its ``__path__``), so setting the
    variable later would give a session in which ``tf.keras`` and the
    submodules QKeras imports are two different Kerases. A variable the user
    set is left alone.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


_arrange_legacy_keras()


def keras_in_use(tensorflow: ModuleType) -> str:
    """The package ``tf.keras`` really resolves to: ``"tf_keras"``, ``"keras"`` (Keras 3), ...

    Read from the module of the ``Layer`` class, never from ``tf.keras.__name__``,
    which reads ``tensorflow.keras`` as soon as anything imports that submodule
    whichever Keras runs behind it.
    """
    return tensorflow.keras.layers.Layer.__module__.split(".")[0]


@cache
def tf() -> ModuleType:
    """TensorFlow, imported on first use, checked to run legacy Keras (tf-keras)."""
    import tensorflow

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
def qkeras() -> ModuleType:
    """The qkeras package, imported after TensorFlow has been checked."""
    tensorflow = tf()
    with quiet_keras():  # QKeras's own imports (distutils in tensorflow_model_optimization) warn
        import qkeras as _qkeras

    if not issubclass(_qkeras.QDense, tensorflow.keras.layers.Layer):
        raise KerasEnvironmentError(
            f"QKeras {getattr(_qkeras, '__version__', '?')} is built on another Keras than tf.keras "
            f"({keras_in_use(tensorflow)}): it was imported before legacy Keras was selected. Fix: import "
            "qextract before qkeras, or set TF_USE_LEGACY_KERAS=1 in the environment before Python starts."
        )
    return _qkeras


def require_keras_model(model: Any, what: str = "model") -> None:
    """Refuse anything that is not a tf-keras model, naming what it is."""
    keras = tf().keras
    if not isinstance(model, keras.Model):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        if kind.startswith("keras."):
            raise KerasEnvironmentError(
                f"the {what} is a Keras 3 model ({kind}); QKeras 0.9.0 models are tf-keras models. "
                "Fix: build it with tf.keras / qkeras after importing qextract, or load it with qextract.load_model."
            )
        raise UsageError(f"the {what} is a {kind}, not a tf-keras model; give a model (qextract.load_model(path)).")


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
