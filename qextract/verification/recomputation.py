"""One exported layer recomputed in NumPy and compared with the Keras layer's own output.

:func:`compare` chooses a route per layer kind and says which in its result:

- ``numpy``: feed-forward layers (Dense, convolutions incl. grouped and
  ``channels_first`` ones, batch norm, average pooling). The layer's output is
  taken from a *copy* of the Keras layer with its activation switched off;
  the NumPy reference (:mod:`qextract.verification.reference`) uses only the exported
  weights and the manifest's geometry (explicit padding, strides, groups).
- ``numpy-recurrent``: SimpleRNN / LSTM / GRU / Bidirectional, Q and plain. An
  activation inside a recurrence cannot be switched off, so the NumPy
  recurrence applies the cell's own activations, re-implemented in NumPy
  (:mod:`qextract.verification.reference_activations`) where qextract knows them; any other
  is evaluated through TensorFlow on the NumPy values, and the note says so.
  Samples that pass within rounding of a quantized activation's step are set
  aside (float32 and float64 may round them to different levels) and counted.
- ``weights``: kinds without a NumPy reference (plain Keras layers such as
  Conv3D or Embedding): the exported values must equal the layer's variables.

The Keras side is a copy of the layer (:mod:`qextract.verification.layer_copy`): built
from its config or, where QKeras cannot rebuild it so, from its quantizer
objects; ``bernoulli`` is compared at its deterministic value. The user's
model is never changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import reference as R
from . import reference_activations as A
from ..errors import VerificationError
from ..kinds import Kind, find_kind
from ..layouts import LayoutError
from ..manifest.entries import LayerEntry
from .layer_copy import keras_output

MAX_INPUT_ELEMENTS = 1 << 24
"""Most input elements (samples x input size) drawn for one layer whose input shape the model cannot confirm."""

OPEN_SIZE = 7
"""Size drawn for an input axis the model leaves open (``None``: a sequence of any length)."""

_MANIFEST_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, LayoutError)


@dataclass(frozen=True)
class Outcome:
    """How one layer compared: error, tolerance, verdict, the route taken and anything worth saying."""

    max_abs_error: float
    tolerance: float
    passed: bool
    route: str
    note: str = ""


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
            f"({type(e).__name__}: {_first_line(e)}); the manifest does not describe this layer. Fix: re-export."
        ) from None


# --- feed-forward layers -------------------------------------------------------------------


def _feedforward(
    layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, rng: np.random.Generator, samples: int, where: str
) -> Outcome:
    x = rng.standard_normal((samples, *_input_shape(layer, keras_layer, samples, where))).astype(np.float32)
    ours = _numpy_feedforward(layer, w, x, keras_layer)
    try:
        expected, notes = keras_output(keras_layer, x, keep_activation=False)
    except Exception as e:
        return _cannot_run(e)
    route = "numpy (window sum x multiplier)" if layer.kind == Kind.POOLING else "numpy"
    return _verdict(ours, expected, route, notes)


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
    axis = -1 if g.axis is None else g.axis
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


def _input_shape(layer: LayerEntry, keras_layer: Any, samples: int, where: str) -> tuple[int, ...]:
    """The manifest's input shape without the batch axis, checked against the model before anything is drawn.

    A size the model leaves open (a sequence of any length, an image of any size) is drawn as
    :data:`OPEN_SIZE`.
    """
    recorded = layer.geometry.input_shape
    name, shape = layer.name, None if recorded is None else list(recorded)
    if shape is None and hasattr(keras_layer, "get_input_shape_at"):  # a shared layer: the manifest has no single shape
        try:
            shape = list(keras_layer.get_input_shape_at(0))
        except (AttributeError, RuntimeError, ValueError, TypeError):
            shape = None
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(d is None or (isinstance(d, int) and d >= 0) for d in shape[1:])
    ):
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape is {_brief(shape)}; expected [null, size, ...]"
        )
    try:
        theirs = keras_layer.input_shape
    except (AttributeError, RuntimeError):  # a layer called on several inputs has no single input shape
        theirs = None
    if isinstance(theirs, tuple) and list(theirs[1:]) != shape[1:]:
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape {_brief(shape)} is not the model layer's input shape "
            f"{list(theirs)}; the export was made from another model or the manifest was edited"
        )
    drawn = tuple(OPEN_SIZE if d is None else d for d in shape[1:])
    if not isinstance(theirs, tuple) and math.prod(drawn) * samples > MAX_INPUT_ELEMENTS:
        raise VerificationError(
            f"{where}: layer '{name}' geometry.input_shape {_brief(shape)} has {math.prod(drawn)} elements per sample, "
            "more than verification draws for a layer whose input shape the model cannot confirm"
        )
    return drawn


# --- recurrent layers ---------------------------------------------------------------------------


def _recurrent(
    layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, rng: np.random.Generator, samples: int, where: str
) -> Outcome:
    shape = _input_shape(layer, keras_layer, samples, where)
    if layer.kind == Kind.BIDIRECTIONAL:
        directions = [("forward/", keras_layer.forward_layer), ("backward/", keras_layer.backward_layer)]
    else:
        directions = [("", keras_layer)]
    cells = [(prefix, inner, _cell_activations(inner)) for prefix, inner in directions]
    stepped = any(a.stepped for _, _, acts in cells for a in acts.values())
    n = samples * 8 if stepped else samples  # some samples may be set aside near a quantization step
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    watch = _Watch(n)
    outs = []
    for prefix, inner, acts in cells:
        outs.append(_sequence(layer, inner, {k: watch(a) for k, a in acts.items()}, w, prefix, x))
    ours = outs[0]
    if layer.kind == Kind.BIDIRECTIONAL:
        ours = R.bidirectional(outs[0], outs[1], keras_layer.merge_mode, bool(keras_layer.return_sequences))
    try:
        expected, notes = keras_output(keras_layer, x, keep_activation=True)
    except Exception as e:
        return _cannot_run(e)
    via_tf = sorted({a.name for _, _, acts in cells for a in acts.values() if a.name.endswith("(TensorFlow)")})
    notes += [f"activations evaluated through TensorFlow: {', '.join(via_tf)}"] if via_tf else []
    keep = ~watch.flags
    if not keep.all():
        notes.append(
            f"{int((~keep).sum())} of {n} samples set aside: they pass within rounding of a quantized activation's step"
        )
    if not keep.any():
        return Outcome(math.nan, math.nan, False, "numpy-recurrent", "; ".join(notes + ["no sample left to compare"]))
    return _verdict(ours[keep], expected[keep], "numpy-recurrent", notes)


def _sequence(
    layer: LayerEntry,
    inner: Any,
    acts: dict[str, Callable[[np.ndarray], np.ndarray]],
    w: dict[str, np.ndarray],
    prefix: str,
    x: np.ndarray,
) -> np.ndarray:
    """One direction's output sequence (or last output) from the exported kernels."""
    kind = Kind(layer.kind) if layer.kind != Kind.BIDIRECTIONAL else _recurrent_kind(inner)
    kernel, recurrent, bias = w[f"{prefix}kernel"], w[f"{prefix}recurrent_kernel"], w.get(f"{prefix}bias")
    options = {"return_sequences": bool(inner.return_sequences), "go_backwards": bool(inner.go_backwards), **acts}
    if kind is Kind.SIMPLE_RNN:
        options.pop("recurrent_activation", None)
        return R.simple_rnn(x, kernel, recurrent, bias, **options)
    if kind is Kind.LSTM:
        return R.lstm(x, kernel, recurrent, bias, **options)
    if kind is Kind.GRU:
        reset_after = layer.geometry.reset_after
        reset_after = getattr(inner, "reset_after", True) if reset_after is None else reset_after
        return R.gru(x, kernel, recurrent, bias, bool(reset_after), **options)
    raise ValueError(f"no NumPy recurrence for a {type(inner).__name__} inside a Bidirectional layer")


_RECURRENCES = {"SimpleRNN": Kind.SIMPLE_RNN, "LSTM": Kind.LSTM, "GRU": Kind.GRU}


def _recurrent_kind(inner: Any) -> Kind | None:
    """The kind of a layer inside a Bidirectional, from its class (Q or plain); None: no NumPy recurrence."""
    names = [c.__name__.lstrip("Q") for c in type(inner).__mro__]
    return next((_RECURRENCES[n] for n in names if n in _RECURRENCES), None)


def _cell_activations(inner: Any) -> dict[str, A.Activation]:
    """The cell's activation, recurrent activation and (QKeras) state quantizer, as NumPy functions."""
    cell = inner.cell
    found = {"activation": _numpy_activation(cell.activation)}
    if hasattr(cell, "recurrent_activation"):
        found["recurrent_activation"] = _numpy_activation(cell.recurrent_activation)
    state = getattr(cell, "state_quantizer_internal", None)
    if state is not None and getattr(cell, "state_quantizer", None):
        found["state"] = _numpy_activation(state)
    return found


def _numpy_activation(obj: Any) -> A.Activation:
    """``obj`` (a Keras function or a QKeras quantizer) re-implemented in NumPy, else evaluated through TensorFlow."""
    if obj is None:
        return A.Activation("linear", A.FLOAT["linear"])
    name, module = getattr(obj, "__name__", None), getattr(obj, "__module__", "") or ""
    if name is not None and not isinstance(obj, type):
        key = f"qkeras.{name}" if module.startswith("qkeras") and f"qkeras.{name}" in A.FLOAT else name
        key = "keras.hard_sigmoid" if key == "hard_sigmoid" else key
        if key in A.FLOAT:
            return A.Activation(key, A.FLOAT[key])
    made = _numpy_quantizer(obj)
    return made if made is not None else _through_tensorflow(obj)


def _numpy_quantizer(q: Any) -> A.Activation | None:
    """The NumPy form of a deterministic ``quantized_tanh/sigmoid/relu/bits``; None for anything else."""
    cls = type(q).__name__
    if getattr(q, "use_stochastic_rounding", False) or any(hasattr(v, "assign") for v in vars(q).values()):
        return None
    mode = _internal_sigmoid()
    if cls == "quantized_tanh":
        return A.quantized_tanh(q.bits, bool(q.symmetric), bool(q.use_real_tanh), mode)
    if cls == "quantized_sigmoid":
        return A.quantized_sigmoid(q.bits, bool(q.symmetric), bool(q.use_real_sigmoid), mode)
    if cls == "quantized_relu":
        return A.quantized_relu(
            q.bits,
            q.integer,
            bool(q.use_sigmoid),
            float(q.negative_slope),
            q.relu_upper_bound,
            bool(q.is_quantized_clip),
            float(q.qnoise_factor),
            mode,
        )
    if cls == "quantized_bits" and not isinstance(q.alpha, str) and np.ndim(q.alpha) == 0:
        alpha = None if q.alpha is None else float(q.alpha)
        return A.quantized_bits(
            q.bits, q.integer, bool(q.symmetric), bool(q.keep_negative), alpha, float(q.qnoise_factor)
        )
    return None


def _internal_sigmoid() -> str:
    """Which sigmoid QKeras's quantizers use inside (``set_internal_sigmoid``): "hard", "smooth" or "real"."""
    import qkeras.quantizers as qq

    return {qq.hard_sigmoid: "hard", qq.smooth_sigmoid: "smooth"}.get(qq._sigmoid, "real")


def _through_tensorflow(obj: Any) -> A.Activation:
    """``obj`` run on a copy through TensorFlow: for activations qextract has no NumPy form of."""
    from .._keras import tf
    from ..quantizers import describe, is_quantizer

    quantizer = is_quantizer(obj)
    fn_obj = copy.copy(obj) if quantizer else obj  # a quantizer keeps state (its scale) on itself

    def fn(z: np.ndarray) -> np.ndarray:
        return np.asarray(fn_obj(tf().constant(z, tf().float32)), np.float64)

    label = describe(obj) if quantizer else getattr(obj, "__name__", type(obj).__name__)
    return A.Activation(f"{label} (TensorFlow)", fn, stepped=quantizer)


class _Watch:
    """Wraps activations to flag, per sample, values within rounding of a quantization step."""

    def __init__(self, n: int) -> None:
        self.flags = np.zeros(n, bool)

    def __call__(self, act: A.Activation) -> Callable[[np.ndarray], np.ndarray]:
        def watched(z: np.ndarray) -> np.ndarray:
            if act.stepped:
                self.flags |= act.near_step(z).reshape(z.shape[0], -1).any(axis=1)
            return act(z)

        return watched


# --- kinds without a NumPy reference ---------------------------------------------------------------


def _weights(layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, *_: Any) -> Outcome:
    """The exported values must be the layer's own variables, bit for bit."""
    variables: dict[str, list[np.ndarray]] = {}
    for var in keras_layer.weights:
        variables.setdefault(var.name.split("/")[-1].split(":")[0], []).append(np.asarray(var, np.float32))
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
    **{kind: _recurrent for kind in RECURRENT},
    Kind.ACTIVATION: _weights,  # no tensors to recompute with
    Kind.OTHER: _weights,
}
"""Every kind -> how :func:`compare` checks a layer of it (a test fails if a kind has none)."""


# --- verdicts ----------------------------------------------------------------------------------------


def _verdict(ours: np.ndarray, expected: np.ndarray, route: str, notes: list[str]) -> Outcome:
    if ours.shape != expected.shape:
        note = f"shapes differ: recomputed {ours.shape}, Keras {expected.shape}"
        return Outcome(math.nan, math.nan, False, route, "; ".join(notes + [note]))
    err = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
    tol = 1e-5 * float(np.max(np.abs(expected), initial=0.0)) + 1e-6
    return Outcome(err, tol, bool(err <= tol), route, "; ".join(notes))


def _cannot_run(e: Exception) -> Outcome:
    note = (
        f"the Keras layer's own forward pass fails ({type(e).__name__}: {_first_line(e)}), so nothing can be compared"
    )
    return Outcome(math.nan, math.nan, False, "none", note)


def _first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
