"""qextract: exact quantized weights from QKeras models, exported for hardware flows.

Both QKeras generations are supported, whichever is installed
(:mod:`qextract.generation`): under QKeras 0.9, importing qextract selects legacy
Keras (``TF_USE_LEGACY_KERAS=1``) for TensorFlow; under qkeras-v3 it leaves Keras 3
alone. TensorFlow itself is imported only when a model is touched.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

from . import _keras  # noqa: F401  (must run before anything imports TensorFlow)

try:
    __version__ = _version("qextract")
except _NotInstalled:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

from .analysis.report import error_report, weight_report
from .analysis.twin import float_model
from .errors import QExtractError, QExtractWarning
from .exporting.exporter import ExportResult, export
from .exporting.qonnx import to_qonnx
from .importing import LoadReport, load_weights
from .importing.fcn import fully_convolutional
from .layouts import ExportedTensor, Layout
from .migration import MigrationResult, migrate
from .network import simulate
from .network.golden import accumulator_widths, golden_vectors
from .numformat import Binary, FixedPoint, Float, LookupTable, NumberFormat, PowerOfTwo, Ternary
from .reading.extraction import extract
from .reading.loading import load_model
from .tensor import ActivationRecord, Extraction, LayerRecord, QuantizedTensor
from .verification.comparison import ExportDiff, diff
from .verification.verifier import verify

__all__ = [
    "ActivationRecord",
    "Binary",
    "ExportDiff",
    "ExportResult",
    "ExportedTensor",
    "Extraction",
    "FixedPoint",
    "Float",
    "LayerRecord",
    "Layout",
    "LoadReport",
    "LookupTable",
    "MigrationResult",
    "NumberFormat",
    "PowerOfTwo",
    "QExtractError",
    "QExtractWarning",
    "QuantizedTensor",
    "Ternary",
    "accumulator_widths",
    "diff",
    "error_report",
    "export",
    "extract",
    "float_model",
    "fully_convolutional",
    "golden_vectors",
    "load_model",
    "load_weights",
    "migrate",
    "simulate",
    "to_qonnx",
    "verify",
    "weight_report",
]
