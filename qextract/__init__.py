"""qextract: exact quantized weights from QKeras models, exported for hardware flows.

Importing qextract selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) for
TensorFlow; TensorFlow itself is imported only when a model is touched.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

from . import _keras  # noqa: F401  (must run before anything imports TensorFlow)

try:
    __version__ = _version("qextract")
except _NotInstalled:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

from .errors import QExtractError, QExtractWarning
from .export import ExportResult, export
from .extract import extract
from .fcn import fully_convolutional
from .importing import LoadReport, load_weights
from .layouts import ExportedTensor, Layout
from .model import load_model
from .report import error_report, weight_report
from .twin import float_model
from .verify import verify
from .numformat import Binary, FixedPoint, Float, LookupTable, NumberFormat, PowerOfTwo, Ternary
from .tensor import ActivationRecord, Extraction, LayerRecord, QuantizedTensor

__all__ = [
    "load_model",
    "extract",
    "export",
    "verify",
    "load_weights",
    "fully_convolutional",
    "float_model",
    "error_report",
    "weight_report",
    "ExportResult",
    "LoadReport",
    "Layout",
    "ExportedTensor",
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
