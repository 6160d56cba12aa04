"""The bundled example: a small QKeras CNN trained on scikit-learn's digits, in each QKeras generation's format.

``digits_qcnn.h5`` (with ``.json`` + ``_weights.h5``) is the QKeras 0.9 model
(:mod:`.build_digits`); ``digits_qcnn.keras`` is the same model with the same
weights saved by qkeras-v3 (:mod:`.build_digits_keras3`).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def bundled_model() -> Path:
    """The bundled model file the installed stack reads: the ``.h5`` under QKeras 0.9, the ``.keras`` under v3."""
    from .._keras import generation

    return HERE / generation().example
