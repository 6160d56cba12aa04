"""``manifest.json``: typed entries (``entries``, checked against ``schema.json``) and how an export
builds them from an extraction (``building``)."""

from .building import activation_entry, geometry, layer_entry, tensor_entry
from .entries import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    ActivationEntry,
    FileEntry,
    Geometry,
    LayerEntry,
    Manifest,
    ScaleEntry,
    TensorEntry,
    schema,
    validate,
)

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_VERSION",
    "ActivationEntry",
    "FileEntry",
    "Geometry",
    "LayerEntry",
    "Manifest",
    "ScaleEntry",
    "TensorEntry",
    "activation_entry",
    "geometry",
    "layer_entry",
    "schema",
    "tensor_entry",
    "validate",
]
