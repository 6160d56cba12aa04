"""One exported layer recomputed in NumPy and compared with the Keras layer's own output.

:func:`compare` chooses a route per layer kind and says which in its result:

- ``numpy``: feed-forward layers (Dense, convolutions incl. grouped and
  ``channels_first`` ones, batch norm, average pooling). The layer's output is
  taken from a *copy* of the Keras layer with its activation switched off;
  the NumPy reference (:mod:`qextract.verification.reference`) uses only the exported
  weights and the manifest's geometry (explicit padding, strides, groups).
- ``numpy-recurrent``: SimpleRNN / LSTM / GRU / Bidirectional, Q and plain,
  with the cells' own activations in NumPy (:mod:`qextract.verification.recurrence`).
- ``weights``: kinds without a NumPy reference (plain Keras layers such as
  Conv3D or Embedding): the exported values must equal the layer's variables.

The Keras side is a copy of the layer (:mod:`qextract.verification.layer_copy`): built
from its config or, where QKeras cannot rebuild it so, from its quantizer
objects; ``bernoulli`` is compared at its deterministic value. The user's
model is never changed. What every route shares (the input drawn, the
verdict, :class:`Outcome`) is :mod:`qextract.verification.outcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._keras import generation
from ..errors import VerificationError
from ..kinds import Kind, find_kind
from ..layouts import LayoutError
from ..manifest.entries import LayerEntry
from . import reference as R
from .layer_copy import keras_output
from .outcome import MAX_INPUT_ELEMENTS, OPEN_SIZE, Outcome, cannot_run, first_line, input_shape, verdict
from .recurrence import compare_recurrent

__all__ = ["FEEDFORWARD", "MAX_INPUT_ELEMENTS", "OPEN_SIZE", "RECURRENT", "ROUTES", "Outcome", "compare"]

_MANIFEST_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, LayoutError)


def compare(
    layer: LayerEntry,
    weights: dict[str, np.ndarray],
    keras_layer: Any,
    rng: np.random.Generator,
    samples: int,
    where: str,
) -> Outcome:
    """Recompute ``layer`` (a manifest entry) from ``weights`` (native layout) and compare with ``keras_layer``.

    ``where`` names the manifest in errors. A manifest entry that cannot be
    recomputed (a field of the wrong type or size) is a VerificationError
    naming it; a Keras layer that cannot run is a failed row saying why.
    """
    kind = layer.kind
    route = ROUTES.get(find_kind(kind) or Kind.OTHER, _weights)  # a kind no entry has: its values are compared
    try:
        return route(layer, weights, keras_layer, rng, samples, where)
    except _MANIFEST_ERRORS as e:
        raise VerificationError(
            f"{where}: layer '{layer.name}' ({kind}) cannot be recomputed from its manifest entry "
            f"({type(e).__name__}: {first_line(e)}); the manifest does not describe this layer. Fix: re-export."
        ) from None


# --- feed-forward layers -------------------------------------------------------------------


def _feedforward(
    layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, rng: np.random.Generator, samples: int, where: str
) -> Outcome:
    x = rng.standard_normal((samples, *input_shape(layer, keras_layer, samples, where))).astype(np.float32)
    ours = _numpy_feedforward(layer, w, x, keras_layer)
    try:
        expected, notes = keras_output(keras_layer, x, keep_activation=False)
    except Exception as e:
        return cannot_run(e)
    route = "numpy (window sum x multiplier)" if layer.kind == Kind.POOLING else "numpy"
    return verdict(ours, expected, route, notes)


def _padding_of(layer: LayerEntry) -> list[tuple[int, int]] | str:
    """The manifest's explicit (before, after) pads per spatial axis."""
    g = layer.geometry
    pads = g.explicit_padding
    if pads is None:
        return g.padding or "valid"
    if "top" in pads:
        return [(pads["top"], pads["bottom"]), (pads["left"], pads["right"])]
    return [(pads["left"], pads["right"])]


def _numpy_feedforward(layer: LayerEntry, w: dict[str, np.ndarray], x: np.ndarray, keras_layer: Any) -> np.ndarray:
    kind, g = Kind(layer.kind), layer.geometry
    first = g.data_format == "channels_first" and kind not in (Kind.DENSE, Kind.BATCHNORM)
    y = FEEDFORWARD[kind](layer, g, w, R.channels_last(x) if first else x, keras_layer)
    return R.channels_first(y) if first and y.ndim > 2 else y


_Entry = LayerEntry
_Weights = dict[str, np.ndarray]


def _dense(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    return R.dense(x.reshape(x.shape[0], -1) if layer.flatten_shape is not None else x, w["kernel"], w.get("bias"))


def _conv(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    groups = g.groups or x.shape[-1] // w["kernel"].shape[-2]
    return R.conv(x, w["kernel"], w.get("bias"), g.strides, _padding_of(layer), g.dilation_rate, groups=groups)


def _conv_transpose(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    return R.conv_transpose(x, w["kernel"], w.get("bias"), g.strides, g.padding or "valid")


def _depthwise(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    return R.depthwise(x, w["depthwise_kernel"], w.get("bias"), g.strides, _padding_of(layer), g.dilation_rate)


def _separable(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    dw, pw, padding = w["depthwise_kernel"], w["pointwise_kernel"], _padding_of(layer)
    return R.separable(x, dw, pw, w.get("bias"), g.strides, padding, g.dilation_rate)


def _batchnorm(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    axis: Any = -1 if g.axis is None else g.axis  # an int, or a manifest's [int]
    axis = axis[0] if isinstance(axis, (tuple, list)) and len(axis) == 1 else axis
    return R.batchnorm(
        x, w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"], g.require("epsilon"), axis=axis
    )


def _pooling(layer: _Entry, g: Any, w: _Weights, x: np.ndarray, keras_layer: Any) -> np.ndarray:
    multiplier = _scalar(w["average_multiplier"])
    if g.pool_size is not None:
        return R.average_pool(x, multiplier, g.pool_size, g.strides or g.pool_size, _padding_of(layer))
    return R.global_average_pool(x, multiplier, keepdims=bool(getattr(keras_layer, "keepdims", False)))


FEEDFORWARD: dict[Kind, Callable[..., np.ndarray]] = {
    Kind.DENSE: _dense, Kind.CONV1D: _conv, Kind.CONV2D: _conv, Kind.CONV2D_TRANSPOSE: _conv_transpose,
    Kind.DEPTHWISE_CONV2D: _depthwise, Kind.SEPARABLE_CONV1D: _separable, Kind.SEPARABLE_CONV2D: _separable,
    Kind.BATCHNORM: _batchnorm, Kind.POOLING: _pooling,
}  # fmt: skip
"""Feed-forward kind -> its NumPy reference, from the exported weights and the manifest's geometry alone."""


def _scalar(value: np.ndarray) -> float:
    if np.size(value) != 1:
        raise ValueError(f"average_multiplier has shape {np.shape(value)}; expected one number")
    return float(np.reshape(value, -1)[0])


# --- kinds without a NumPy reference ---------------------------------------------------------------


def _weights(layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, *_: Any) -> Outcome:
    """The exported values must be the layer's own variables, bit for bit."""
    variables: dict[str, list[np.ndarray]] = {}
    gen = generation()
    for var in keras_layer.weights:
        variables.setdefault(gen.weight_name(keras_layer, var), []).append(np.asarray(var, np.float32))
    err, problems = 0.0, []
    for name, value in w.items():
        found = variables.get(name, [])
        if len(found) != 1 or found[0].shape != np.shape(value):
            problems.append(
                f"{name}: the layer has {len(found)} variable(s) of that name"
                + (f" of shape {found[0].shape}, exported {np.shape(value)}" if len(found) == 1 else "")
            )
            continue
        err = max(err, float(np.max(np.abs(found[0] - value), initial=0.0)))
    missing = sorted(set(variables) - set(w))
    if missing:
        problems.append(f"not exported: {', '.join(missing)}")
    passed = not problems and err == 0.0
    return Outcome(
        err,
        0.0,
        passed,
        "weights",
        "; ".join(problems) or "no NumPy reference for this kind: values compared with its variables",
    )


RECURRENT = (Kind.SIMPLE_RNN, Kind.LSTM, Kind.GRU, Kind.BIDIRECTIONAL)
ROUTES: dict[Kind, Callable[..., Outcome]] = {
    **{kind: _feedforward for kind in FEEDFORWARD},
    **{kind: compare_recurrent for kind in RECURRENT},
    Kind.ACTIVATION: _weights,  # no tensors to recompute with
    Kind.OTHER: _weights,
}
"""Every kind -> how :func:`compare` checks a layer of it (a test fails if a kind has none)."""
