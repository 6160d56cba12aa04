"""qextract: exact quantized weights from QKeras models, exported for hardware flows.

Both QKeras generations are supported, whichever is installed
(:mod:`qextract.generation`): under QKeras 0.9, importing qextract selects legacy
Keras (``TF_USE_LEGACY_KERAS=1``) for TensorFlow; under qkeras-v3 it leaves Keras 3
alone. TensorFlow itself is imported only when a model is touched.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING, Any

from . import _keras  # noqa: F401  (must run before anything imports TensorFlow)

# The public names and the module each lives in. They are imported on first use (PEP 562), so that
# `import qextract` and a command that needs a few modules (`--help`, the numpy engine's `inspect`)
# do not pay for pandas, the network simulation and every pipeline at start-up.
_WHERE = {
    "error_report": "analysis.report",
    "weight_report": "analysis.report",
    "float_model": "analysis.twin",
    "QExtractError": "errors",
    "QExtractWarning": "errors",
    "ExportResult": "exporting.exporter",
    "export": "exporting.exporter",
    "to_qonnx": "exporting.qonnx",
    "LoadReport": "importing",
    "load_weights": "importing",
    "fully_convolutional": "importing.fcn",
    "ExportedTensor": "layouts",
    "Layout": "layouts",
    "MigrationResult": "migration",
    "migrate": "migration",
    "simulate": "network",
    "accumulator_widths": "network.golden",
    "golden_vectors": "network.golden",
    "Binary": "numformat",
    "FixedPoint": "numformat",
    "Float": "numformat",
    "LookupTable": "numformat",
    "NumberFormat": "numformat",
    "PowerOfTwo": "numformat",
    "Ternary": "numformat",
    "extract": "reading.extraction",
    "load_model": "reading.loading",
    "ActivationRecord": "tensor",
    "Extraction": "tensor",
    "LayerRecord": "tensor",
    "QuantizedTensor": "tensor",
    "ExportDiff": "verification.comparison",
    "diff": "verification.comparison",
    "verify": "verification.verifier",
}

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


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("qextract")
        except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
            value = "0+unknown"
    elif name in _WHERE:
        value = getattr(_import_module(f".{_WHERE[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'qextract' has no attribute {name!r}")
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


if TYPE_CHECKING:  # what type checkers and editors see: the names, from their modules
    __version__: str
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
