"""What every recomputation route shares: the input it draws, the verdict within tolerance, the Outcome.

A layer is fed standard-normal input of the shape its manifest entry records,
checked against the model layer's own input shape before anything is drawn
(an edited shape cannot make verification allocate without bound). The
recomputed output passes when it is within ``1e-5 x max|Keras output| + 1e-6``
of the Keras layer's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._keras import generation
from ..errors import VerificationError
from ..manifest.entries import LayerEntry

MAX_INPUT_ELEMENTS = 1 << 24
"""Most input elements (samples x input size) drawn for one layer whose input shape the model cannot confirm."""

OPEN_SIZE = 7
"""Size drawn for an input axis the model leaves open (``None``: a sequence of any length)."""


@dataclass(frozen=True)
class Outcome:
    """How one layer compared: error, tolerance, verdict, the route taken and anything worth saying."""

    max_abs_error: float
    tolerance: float
    passed: bool
    route: str
    note: str = ""


def input_shape(layer: LayerEntry, keras_layer: Any, samples: int, where: str) -> tuple[int, ...]:
    """The manifest's input shape without the batch axis, checked against the model before anything is drawn.

    A size the model leaves open (a sequence of any length, an image of any size) is drawn as
    :data:`OPEN_SIZE`.
    """
    recorded = layer.geometry.input_shape
    name, shape = layer.name, None if recorded is None else list(recorded)
    if shape is None:  # a shared layer: the manifest has no single shape
        try:
            shape = list(generation().first_input_shape(keras_layer))
        except (AttributeError, RuntimeError, ValueError, TypeError, IndexError):
            shape = None
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(d is None or (isinstance(d, int) and d >= 0) for d in shape[1:])
    ):
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape is {brief(shape)}; expected [null, size, ...]"
        )
    try:
        theirs = generation().input_shape(keras_layer)
    except (AttributeError, RuntimeError):  # a layer called on several inputs has no single input shape
        theirs = None
    if isinstance(theirs, tuple) and list(theirs[1:]) != shape[1:]:
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape {brief(shape)} is not the model layer's input shape "
            f"{list(theirs)}; the export was made from another model or the manifest was edited"
        )
    drawn = tuple(OPEN_SIZE if d is None else d for d in shape[1:])
    if not isinstance(theirs, tuple) and math.prod(drawn) * samples > MAX_INPUT_ELEMENTS:
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape {brief(shape)} has {math.prod(drawn)} elements per sample, "
            "more than verification draws for a layer whose input shape the model cannot confirm"
        )
    return drawn


def verdict(ours: np.ndarray, expected: np.ndarray, route: str, notes: list[str]) -> Outcome:
    if ours.shape != expected.shape:
        note = f"shapes differ: recomputed {ours.shape}, Keras {expected.shape}"
        return Outcome(math.nan, math.nan, False, route, "; ".join([*notes, note]))
    err = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
    tol = 1e-5 * float(np.max(np.abs(expected), initial=0.0)) + 1e-6
    return Outcome(err, tol, bool(err <= tol), route, "; ".join(notes))


def cannot_run(e: Exception) -> Outcome:
    note = f"the Keras layer's own forward pass fails ({type(e).__name__}: {first_line(e)}), so nothing can be compared"
    return Outcome(math.nan, math.nan, False, "none", note)


def first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
