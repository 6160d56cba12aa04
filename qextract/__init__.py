"""qextract: exact quantized weights from QKeras models, exported for hardware flows.

Importing qextract selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) for
TensorFlow; TensorFlow itself is imported only when a model is touched.
"""

from . import _keras  # noqa: F401  (must run before anything imports TensorFlow)
from .errors import QExtractError, QExtractWarning
from .extract import extract
from .model import load_model
from .numformat import Binary, FixedPoint, Float, LookupTable, NumberFormat, PowerOfTwo, Ternary
from .tensor import ActivationRecord, Extraction, LayerRecord, QuantizedTensor

__all__ = [
    "load_model",
    "extract",
    "QExtractError",
    "QExtractWarning",
    "NumberFormat",
    "FixedPoint",
    "PowerOfTwo",
    "Binary",
    "Ternary",
    "LookupTable",
    "Float",
    "QuantizedTensor",
    "LayerRecord",
    "ActivationRecord",
    "Extraction",
]
