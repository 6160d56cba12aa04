"""The one exception family of qextract, each class with its exit code and what that code means.

Low-level code raises short exact messages; public entry points add context
(file, layer, tensor). Messages speak the Python API: where the fix is an
argument, the message names it as a caller passes it (``trusted=True``,
``layers=[...]``) and the error lists it in :attr:`QExtractError.arguments`,
so that the command line can name its own option for it. The CLI exits with
:attr:`QExtractError.exit_code` and derives its list of exit codes from
:func:`exit_codes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar


class QExtractError(Exception):
    """Base class of every error qextract raises on purpose."""

    exit_code: ClassVar[int] = 1
    meaning: ClassVar[str] = "other failure"
    """One line: what every error with this exit code means (a subclass sharing its parent's code shares it)."""

    arguments: tuple[str, ...] = ()
    """Names of the API arguments the message's fix asks for (``"force"``, ``"layers"``): the CLI names its options."""

    def __init__(self, *args: object, arguments: Iterable[str] = ()) -> None:
        super().__init__(*args)
        if arguments:
            self.arguments = tuple(arguments)


class UsageError(QExtractError, ValueError):
    """An argument out of range or unknown (a layer name, a word width, a sample count)."""

    exit_code = 2
    meaning = "usage error (an unknown name, a number out of range)"


class ModelLoadError(QExtractError):
    """A model file is missing, unreadable, corrupt or of an unknown kind."""

    exit_code = 3
    meaning = "model cannot be loaded (missing, unreadable, corrupt, unknown class, untrusted code)"


class UntrustedCodeError(ModelLoadError):
    """The model file carries executable code (a Lambda layer) and was not declared trusted."""

    arguments = ("trusted",)


class UnsupportedError(QExtractError):
    """A layer or quantizer qextract cannot extract exactly."""

    exit_code = 4
    meaning = "unsupported layer, wrapper or quantizer, or codes no int64 holds"


class ExactnessError(QExtractError):
    """Integer codes times scale do not reproduce what the layer computes with."""

    exit_code = 5
    meaning = "not exact (codes x scale would not reproduce the values the layer computes with)"


class LayoutError(QExtractError):
    """A layout a layer kind cannot take, or a shape that does not fit it."""

    exit_code = 6
    meaning = "layout error"


class DataError(QExtractError):
    """Calibration or verification data of the wrong shape, dtype or content."""

    exit_code = 7
    meaning = "bad data"


class ExportError(QExtractError):
    """Output could not be written (folder exists, not writable, write failed)."""

    exit_code = 8
    meaning = "output cannot be written"


class VerificationError(QExtractError):
    """Recomputed layer outputs do not match the Keras layer's own output."""

    exit_code = 9
    meaning = "verification mismatch"


class KerasEnvironmentError(QExtractError):
    """The Keras in use does not fit the installed QKeras generation (:mod:`qextract.generation`).

    Under QKeras 0.9: tf.keras is Keras 3 (chosen before qextract could select
    legacy Keras), or a Keras 3 model. Under qkeras-v3: Keras on a backend other
    than TensorFlow, or a tf-keras model. Either: both QKeras distributions
    installed.
    """

    exit_code = 10
    meaning = "the Keras in use does not fit the installed QKeras (Keras 3 under QKeras 0.9, tf-keras under qkeras-v3)"


class TwinMismatchError(QExtractError):
    """A user's float model does not match the quantized model layer by layer."""

    exit_code = 11
    meaning = "your float model does not match the quantized model"


class NotAnExportError(QExtractError):
    """A folder given as an export is not one (no manifest.json, or not qextract's)."""

    exit_code = 12
    meaning = "not a qextract export folder"


class ExportsDiffer(QExtractError):
    """Two exports compared by ``qextract diff`` hold different tensors (codes, scales, formats or shapes)."""

    exit_code = 13
    meaning = "the exports compared differ (diff)"


class NeedsQKeras(Exception):
    """Internal signal, never raised to a caller: the NumPy engine cannot prove this result bit for bit.

    Raised by the NumPy forms of the quantizers (:mod:`qextract.quantizers.emulation`) where
    QKeras's own result depends on what NumPy cannot see: a float32 evaluation order (a scale
    search within rounding distance of a tie), a CPU-specific TensorFlow kernel, or a class or
    setting it has no NumPy form for. The engine (:mod:`qextract.engines`) catches it and asks
    QKeras for that layer, or, where QKeras is not installed, raises an :class:`UnsupportedError`
    naming the layer and tensor. Not a :class:`QExtractError`: it has no exit code of its own.
    """


class QExtractWarning(UserWarning):
    """Something worth knowing that does not stop extraction (e.g. stochastic quantizers)."""


@dataclass(frozen=True)
class ExitCode:
    """One exit code, what it means and the error classes that exit with it."""

    code: int
    meaning: str
    classes: tuple[str, ...]


def error_classes() -> list[type[QExtractError]]:
    """:class:`QExtractError` and every subclass of it, parents before children, in definition order."""
    found: list[type[QExtractError]] = []
    pending: list[type[QExtractError]] = [QExtractError]
    while pending:
        cls = pending.pop(0)
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def exit_codes() -> list[ExitCode]:
    """The exit codes of the error classes, lowest first, each with its meaning and classes."""
    by_code: dict[int, list[type[QExtractError]]] = {}
    for cls in error_classes():
        by_code.setdefault(cls.exit_code, []).append(cls)
    return [
        ExitCode(code, classes[0].meaning, tuple(c.__name__ for c in classes))
        for code, classes in sorted(by_code.items())
    ]
