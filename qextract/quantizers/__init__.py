"""Registry: QKeras quantizer class -> one entry owning everything qextract knows about it.

An entry (:class:`QuantizerEntry`, :mod:`.entry`) gives a quantizer's number
format, codes and scale, output bounds, float twin, rounding mode, integer
requantization and QONNX node. The families, one module each:

==============  ================================================================
module          quantizer classes
==============  ================================================================
``fixed``       quantized_bits, quantized_hswish
``relu``        quantized_relu
``sigmoid``     quantized_tanh, quantized_sigmoid
``ulaw``        quantized_ulaw
``po2``         quantized_po2, quantized_relu_po2
``sign``        binary, ternary
``stochastic``  stochastic_binary, stochastic_ternary, bernoulli
==============  ================================================================

To support a quantizer class, add a :func:`register`-ed entry to its family's
module (or a new module imported below) and its case to
``tests/test_quantizer_registry.py``, which fails for an entry without one.
"""

from . import fixed, po2, relu, sigmoid, sign, stochastic, ulaw  # noqa: F401 - each registers its entries
from .activations import ActivationSpec
from .entry import Bounds, Encoding, QonnxQuant, QuantizerEntry, describe, qkeras_variables
from .execution import GRAPH_MIN_SIZE, GraphCache, apply, graph_cache, ste_explains
from .registry import (
    QUANTIZERS,
    entry_for,
    float_twin,
    is_quantizer,
    number_format,
    output_bounds,
    register,
    twin_names,
)
from .rounding import Rounding

__all__ = [
    "GRAPH_MIN_SIZE",
    "QUANTIZERS",
    "ActivationSpec",
    "Bounds",
    "Encoding",
    "GraphCache",
    "QonnxQuant",
    "QuantizerEntry",
    "Rounding",
    "apply",
    "describe",
    "entry_for",
    "float_twin",
    "graph_cache",
    "is_quantizer",
    "number_format",
    "output_bounds",
    "qkeras_variables",
    "register",
    "ste_explains",
    "twin_names",
]
