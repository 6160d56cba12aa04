"""Legacy-Keras set-up and the only place TensorFlow and QKeras are imported.

QKeras 0.9.0 works on TensorFlow 2.21 only through the legacy Keras 2 package
``tf-keras``, selected by ``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is
first imported. Importing :mod:`qextract` sets the variable; TensorFlow itself
is imported lazily, on first use, so that ``qextract --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from types import ModuleType
from typing import Any

from .errors import QExtractError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    return tensorflow


@lru_cache(maxsize=None)
def qkeras() -> ModuleType:
    """The qkeras package, imported after TensorFlow has been checked."""
    tf()
    import qkeras as _qkeras

    return _qkeras


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
