"""Legacy-Keras set-up and the only place TensorFlow and QKeras are imported.

QKeras 0.9.0 works on TensorFlow 2.21 only through the legacy Keras 2 package
``tf-keras``, selected by ``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is
first imported. Importing :mod:`qextract` sets the variable; TensorFlow itself
is imported lazily, on first use, so that ``qextract --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import ModuleType
from typing import Any

from .errors import QExtractError



def _arrange_legacy_keras() -> None:
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"


_arrange_legacy_keras()


class KerasEnvironmentError(QExtractError):
    """TensorFlow was imported under Keras 3 before qextract could select legacy Keras."""

    exit_code = 10


@lru_cache(maxsize=None)
def tf() -> ModuleType:
    """TensorFlow, imported on first use, checked to run legacy Keras (tf-keras)."""
    import tensorflow

    keras_module = tensorflow.keras.__name__
    if not keras_module.startswith("tf_keras"):
        raise KerasEnvironmentError(
            f"TensorFlow was imported with Keras 3 ({keras_module}) before qextract could select "
            "legacy Keras; QKeras 0.9.0 needs tf-keras 2.x. Fix: import qextract before "
            "tensorflow, or set TF_USE_LEGACY_KERAS=1 in the environment before Python starts."
        )
    _restore_removed_tf_aliases(tensorflow)
    return tensorflow


@lru_cache(maxsize=None)
def qkeras() -> ModuleType:
    """The qkeras package, imported after TensorFlow has been checked."""
    tf()
    import qkeras as _qkeras

    return _qkeras


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


@lru_cache(maxsize=None)
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
