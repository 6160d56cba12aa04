"""The simulation against QKeras's own forward pass, layer by layer, every differing element explained or counted.

QKeras computes in float32. Where that is exact (power-of-two scales, partial
sums below 2**24 LSBs) its outputs must equal the simulation's bit for bit.
Elsewhere each differing element is re-simulated from QKeras's *own* input to
that layer (isolated), and sorted:

- ``propagated``: the layer computes exactly what QKeras does from the same
  input; the difference came from an earlier layer;
- ``float32_accumulator`` / ``float32_scale`` / ``float_input``: QKeras's
  value lies within the float32 rounding bound of the layer's cause
  (:mod:`.step`); for a quantized output, QKeras's code is what the quantizer
  gives somewhere within that bound;
- ``unexplained``: anything else. ``passed`` is False for a layer with any.

One tap model gives every layer's QKeras output in one pass per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from .plan import Plan, build, check_layers
from .quantize import quantize
from .signal import Signal
from .simulation import one_thread_blas, prepared, run
from .step import CAUSES, FLOAT_FUNCTION_TOLERANCE, Output, Step, activation_name, is_float_function, quantizer_text

COLUMNS = (
    "layer",
    "class",
    "output",
    "format",
    "exact_integer",
    "elements",
    "equal",
    "differ",
    "propagated",
    *CAUSES,
    "unexplained",
    "max_abs_diff",
    "passed",
)
SHOWN = tuple(c for c in COLUMNS if c not in ("differ", "max_abs_diff"))
"""The columns ``qextract simulate`` prints (all of them go to ``--csv``)."""


@dataclass
class Tally:
    """One layer's counts over every batch compared."""

    step: Step
    format: str = "-"
    exact_integer: bool = True
    elements: int = 0
    equal: int = 0
    propagated: int = 0
    float32_accumulator: int = 0
    float32_scale: int = 0
    float_input: int = 0
    unexplained: int = 0
    max_abs_diff: float = 0.0
    first: str = ""

    def row(self) -> dict[str, Any]:
        differ = self.elements - self.equal
        return {
            "layer": self.step.name,
            "class": self.step.class_name,
            "output": quantizer_text(self.step.activation)
            if activation_name(self.step.activation) != "linear"
            else "-",
            "format": self.format,
            "exact_integer": self.exact_integer,
            "elements": self.elements,
            "equal": self.equal,
            "differ": differ,
            "propagated": self.propagated,
            **{c: getattr(self, c) for c in CAUSES},
            "unexplained": self.unexplained,
            "max_abs_diff": self.max_abs_diff,
            "passed": self.unexplained == 0,
        }


def compare(
    model: Any,
    data: Any,
    *,
    input_format: Any = None,
    batch_size: int = 1024,
    layers: list[str] | None = None,
    samples: int | None = None,
) -> Any:
    """Simulate ``model`` on ``data`` and compare every layer with QKeras, streaming: memory of one batch.

    ``samples`` stops after that many samples of ``data``.

    Returns a DataFrame, one row per layer: ``elements`` compared, ``equal``
    bit for bit, ``differ``, then the differing elements sorted into
    ``propagated``, ``float32_accumulator``, ``float32_scale``,
    ``float_input`` and ``unexplained`` (see the module docstring),
    ``max_abs_diff`` and ``passed``. ``df.attrs`` holds ``samples``,
    ``passed`` (every layer) and ``first_divergence`` (the first layer whose
    own arithmetic differs from QKeras's, or None).
    """
    plan = build(model, input_format)
    keep = check_layers(plan, layers)
    inputs = prepared(plan, data, batch_size, samples)
    return compare_plan(plan, model, inputs, [s.name for s in plan.steps if s.name in keep])


def compare_plan(plan: Plan, model: Any, inputs: Iterable[Signal], keep: list[str]) -> Any:
    """The comparison over batches of prepared inputs (see :func:`compare`)."""
    import pandas as pd

    from ..analysis.taps import Runner

    taps = Runner(_tap_model(plan, model))
    tallies = {name: Tally(plan.step(name)) for name in keep}
    samples = 0
    for x in inputs:
        samples += x.shape[0]
        fed = x.values.astype(np.float32)
        if not np.array_equal(fed, x.values):
            raise UsageError(
                "the simulation's input does not fit float32 (an input format of more than 24 significant bits), so "
                "QKeras cannot be given the same input. Fix: a narrower input_format"
            )
        theirs = dict(zip([s.name for s in plan.steps], taps(fed)))
        theirs[plan.input_name] = x.values
        with one_thread_blas():
            ours = run(plan, x)
        _compare_batch(plan, x, ours, theirs, tallies)
    frame = pd.DataFrame([t.row() for t in tallies.values()], columns=list(COLUMNS))
    frame.attrs["samples"] = samples
    frame.attrs["passed"] = bool(frame["passed"].all()) if len(frame) else True
    own = frame[(frame["differ"] > frame["propagated"])]
    frame.attrs["first_divergence"] = str(own["layer"].iloc[0]) if len(own) else None
    frame.attrs["unexplained"] = [t.first for t in tallies.values() if t.first]
    return frame


def _tap_model(plan: Plan, model: Any) -> Any:
    from .._keras import keras

    outputs = [model.get_layer(s.name).output for s in plan.steps]
    return keras().Model(model.inputs, outputs, name="qextract_simulate_taps")


def _compare_batch(
    plan: Plan, x: Signal, ours: dict[str, Output], theirs: dict[str, np.ndarray], tallies: dict[str, Tally]
) -> None:
    signals = {plan.input_name: x, **{name: out.signal for name, out in ours.items()}}
    for name, tally in tallies.items():
        step, out = tally.step, ours[name]
        sig = out.signal
        tally.format = (
            str(sig.format) if sig.format is not None else ("accumulator" if sig.codes is not None else "float")
        )
        tally.exact_integer = tally.exact_integer and sig.codes is not None and sig.exact
        s = sig.values
        q = np.asarray(theirs[name], np.float64)
        differ = ~(s == q)
        tally.elements += s.size
        tally.equal += int(s.size - np.count_nonzero(differ))
        if not differ.any():
            continue
        tally.max_abs_diff = max(tally.max_abs_diff, float(np.nanmax(np.abs(s - q)[differ])))
        inputs = [_as_signal(theirs[n], signals[n]) for n in step.inbound]
        iso = step.run(inputs)
        same = iso.signal.values == q
        tally.propagated += int(np.count_nonzero(differ & same))
        rest = differ & ~same
        if not rest.any():
            continue
        explained = _explained(step, inputs, iso, q) & rest
        cause = iso.cause or "float32_accumulator"  # an exact layer's only excuse: the STE's float32 sum
        setattr(tally, cause, getattr(tally, cause) + int(np.count_nonzero(explained)))
        bad = rest & ~explained
        if bad.any():
            tally.unexplained += int(np.count_nonzero(bad))
            if not tally.first:
                i = tuple(int(k) for k in np.argwhere(bad)[0])
                tally.first = (
                    f"layer '{name}' at {i}: simulation {s[i]!r} (isolated {iso.signal.values[i]!r}), QKeras {q[i]!r}"
                )


def _as_signal(values: np.ndarray, like: Signal) -> Signal:
    """QKeras's tensor on the simulation's grid for it where it lies there (codes), else as floats."""
    v = np.asarray(values, np.float64)
    if like.codes is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = v / like.scale
        if np.all(np.isfinite(codes)) and np.all(codes == np.rint(codes)) and np.all(np.abs(codes) < 2.0**53):
            c = codes.astype(np.int64)
            if np.array_equal(c * like.scale, v):
                return Signal(c, like.scale, None, like.format, like.exact)
    return Signal(None, np.ones(()), v, None, False)


def _explained(step: Step, inputs: list[Signal], iso: Output, q: np.ndarray) -> np.ndarray:
    """Where QKeras's output lies within what float32 rounding of this layer's computation can give.

    For a quantized output both codes must be what the quantizer gives somewhere
    within the bound around the exact value: QKeras's (rounded in float32) and
    the simulation's own (so a simulation that quantizes wrongly is never excused).
    """
    pre = iso.pre if iso.pre is not None else iso.signal
    v = pre.values
    e = step.error_bound(inputs, pre) if iso.cause is not None else np.zeros(v.shape)
    out = iso.signal.values
    if step.quantizer is not None:
        lo = quantize(step.quantizer, Signal.of_floats(v - e), step.where).values
        hi = quantize(step.quantizer, Signal.of_floats(v + e), step.where).values
        low, high = np.minimum(lo, hi), np.maximum(lo, hi)
        ste = 2.0**-23 * (np.abs(v) + e)  # QKeras returns x + (q - x): float32 rounds it for a large x
        ours = (out >= low) & (out <= high)  # the simulation's own code is what the quantizer gives its value
        return ours & (q >= low - ste) & (q <= high + ste)
    if is_float_function(step.activation):
        spread = e.max(axis=-1, keepdims=True) if e.ndim else e
        return np.abs(q - out) <= FLOAT_FUNCTION_TOLERANCE * (1.0 + np.abs(out)) + spread
    return np.abs(q - out) <= e
