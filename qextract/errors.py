"""The one exception family of qextract.

Low-level code raises short exact messages; public entry points add context
(file, layer, tensor). The CLI maps each class to an exit code.
"""

from __future__ import annotations


class QExtractError(Exception):
    """Base class of every error qextract raises on purpose."""

    exit_code = 1


class UsageError(QExtractError, ValueError):
    """An argument out of range or unknown (a layer name, a word width, a sample count)."""

    exit_code = 2


class ModelLoadError(QExtractError):
    """A model file is missing, unreadable, corrupt or of an unknown kind."""

    exit_code = 3


class UntrustedCodeError(ModelLoadError):
    """The model file carries executable code (a Lambda layer) and was not declared trusted."""


class UnsupportedError(QExtractError):
    """A layer or quantizer qextract cannot extract exactly."""

    exit_code = 4


class ExactnessError(QExtractError):
    """Integer codes times scale do not reproduce what the layer computes with."""

    exit_code = 5


class LayoutError(QExtractError):
    """A layout a layer kind cannot take, or a shape that does not fit it."""

    exit_code = 6


class DataError(QExtractError):
    """Calibration or verification data of the wrong shape, dtype or content."""

    exit_code = 7


class ExportError(QExtractError):
    """Output could not be written (folder exists, not writable, write failed)."""

    exit_code = 8


class VerificationError(QExtractError):
    """Recomputed layer outputs do not match the Keras layer's own output."""

    exit_code = 9


class KerasEnvironmentError(QExtractError):
    """tf.keras is Keras 3 (chosen before qextract could select legacy Keras for QKeras 0.9)."""

    exit_code = 10


class TwinMismatchError(QExtractError):
    """A user's float model does not match the quantized model layer by layer."""

    exit_code = 11


class NotAnExportError(QExtractError):
    """A folder given as an export is not one (no manifest.json, or not qextract's)."""

    exit_code = 12


class QExtractWarning(UserWarning):
    """Something worth knowing that does not stop extraction (e.g. stochastic quantizers)."""
