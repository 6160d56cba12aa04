"""The ``numpy-recurrent`` route: SimpleRNN / LSTM / GRU / Bidirectional, QKeras and plain, recomputed in NumPy.

An activation inside a recurrence cannot be switched off, so the NumPy
recurrence (:mod:`qextract.verification.reference`) applies the cell's own
activations, re-implemented in NumPy
(:mod:`qextract.verification.reference_activations`) where qextract knows
them; any other is evaluated through TensorFlow on the NumPy values, and the
note says so. Samples that pass within rounding of a quantized activation's
step are set aside (float32 and float64 may round them to different levels)
and counted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._keras import generation
from ..kinds import Kind
from ..manifest.entries import LayerEntry
from . import reference as R
from . import reference_activations as A
from .layer_copy import keras_output
from .outcome import Outcome, cannot_run, input_shape, verdict


def compare_recurrent(
    layer: LayerEntry, w: dict[str, np.ndarray], keras_layer: Any, rng: np.random.Generator, samples: int, where: str
) -> Outcome:
    shape = input_shape(layer, keras_layer, samples, where)
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
        return cannot_run(e)
    via_tf = sorted({a.name for _, _, acts in cells for a in acts.values() if a.name.endswith("(TensorFlow)")})
    notes += [f"activations evaluated through TensorFlow: {', '.join(via_tf)}"] if via_tf else []
    keep = ~watch.flags
    if not keep.all():
        notes.append(
            f"{int((~keep).sum())} of {n} samples set aside: they pass within rounding of a quantized activation's step"
        )
    if not keep.any():
        return Outcome(math.nan, math.nan, False, "numpy-recurrent", "; ".join([*notes, "no sample left to compare"]))
    return verdict(ours[keep], expected[keep], "numpy-recurrent", notes)


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
    sequences, backwards = bool(inner.return_sequences), bool(inner.go_backwards)
    if kind is Kind.SIMPLE_RNN:
        simple = {k: f for k, f in acts.items() if k != "recurrent_activation"}
        return R.simple_rnn(x, kernel, recurrent, bias, return_sequences=sequences, go_backwards=backwards, **simple)
    if kind is Kind.LSTM:
        return R.lstm(x, kernel, recurrent, bias, return_sequences=sequences, go_backwards=backwards, **acts)
    if kind is Kind.GRU:
        reset_after = layer.geometry.reset_after
        reset_after = getattr(inner, "reset_after", True) if reset_after is None else reset_after
        return R.gru(
            x, kernel, recurrent, bias, bool(reset_after), return_sequences=sequences, go_backwards=backwards, **acts
        )
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
        key = generation().keras_activations.get(key, key)  # Keras's functions that differ between generations
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
