"""Layer classes qextract reads: one registry entry per class owns everything known about it.

- :mod:`.spec` - what an entry says (:class:`LayerSpec`: kind, tensors and
  their quantizers, float twin, whether it fuses an activation);
- :mod:`.readers` - tensors a layer computes rather than holds;
- :mod:`.registry` - the entries (:data:`LAYERS` for QKeras classes,
  :data:`KERAS_LAYERS` for plain Keras ones) and how a layer finds its own.

Adding a layer class is one entry in :data:`LAYERS` (with a case in tests/zoo.py, and its twin's in
tests/test_twin.py).
"""

from .registry import KERAS_LAYERS, LAYERS, applied_quantizer, class_spec, spec_for
from .spec import Binding, LayerSpec, LayerTwin, Refusal, TensorSource

__all__ = [
    "KERAS_LAYERS",
    "LAYERS",
    "Binding",
    "LayerSpec",
    "LayerTwin",
    "Refusal",
    "TensorSource",
    "applied_quantizer",
    "class_spec",
    "spec_for",
]
