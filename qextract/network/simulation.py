"""``simulate``: the whole QKeras network in exact integer arithmetic, in NumPy, batch by batch.

TensorFlow reads the model once (:mod:`.plan`: graph, extraction, a batch
norm's constants); every batch is then computed from that alone. Each layer's
output is a :class:`~.result.LayerResult`; a :class:`Simulation` holds them by
layer name, in model order, and compares them with QKeras's own forward pass
(:meth:`Simulation.compare`).

>>> sim = qextract.simulate(model, "digits", input_format="ap_fixed<6,2>")   # doctest: +SKIP
>>> sim["act1"].codes[0, :2, :2, 0], sim["act1"].format, sim["act1"].exact_integer
>>> sim.compare(model)                    # one row per layer: equal, differ, and why
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..analysis.data import batches
from ..errors import UnsupportedError
from .plan import Plan, build, check_layers
from .result import LayerResult, concatenate
from .signal import Signal
from .step import Output

__all__ = ["Simulation", "simulate", "simulate_batches"]


class Simulation(Mapping[str, LayerResult]):
    """Every simulated layer's :class:`LayerResult` by name, in model order; ``input`` is the quantized input.

    Batches are joined into one result per layer when that layer is first
    looked up (then kept): a simulation holds each output once, in the
    arrays the batches produced, until asked for it.
    """

    def __init__(self, parts: dict[str, list[LayerResult]], input_parts: list[LayerResult], plan: Plan) -> None:
        self._parts = parts
        self._joined: dict[str, LayerResult] = {}
        self._input_parts = input_parts
        self._plan = plan

    @property
    def input(self) -> LayerResult:
        """The input as the network receives it: on the input format's grid (codes), or the data itself (floats)."""
        if len(self._input_parts) != 1:
            self._input_parts = [concatenate(self._input_parts)]
        return self._input_parts[0]

    @property
    def samples(self) -> int:
        return sum(p.shape[0] for p in self._input_parts)

    def __getitem__(self, name: str) -> LayerResult:
        joined = self._joined.get(name)
        if joined is not None:
            return joined
        if name not in self._parts:
            raise KeyError(
                f"no simulated layer '{name}' in model '{self._plan.model_name}'; layers: {', '.join(self._parts)}"
            )
        joined = self._joined[name] = concatenate(self._parts[name])
        self._parts[name] = [joined]
        return joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def compare(self, model: Any, *, batch_size: int = 1024) -> Any:
        """Each layer against QKeras's own forward pass on :attr:`input`: a pandas DataFrame.

        See :func:`qextract.network.comparison.compare` for the columns.
        """
        from .comparison import compare_plan

        return compare_plan(self._plan, model, _input_batches(self.input, batch_size), list(self._parts))

    def __repr__(self) -> str:
        exact = sum(all(p.exact_integer for p in parts) for parts in self._parts.values())
        return (
            f"Simulation(model '{self._plan.model_name}': {self.samples} samples, {len(self)} layers, "
            f"{exact} in exact integers)"
        )


def _input_batches(inp: LayerResult, batch_size: int) -> Iterator[Signal]:
    n = inp.values.shape[0]
    for start in range(0, n, batch_size):
        if inp.codes is not None:
            yield Signal(inp.codes[start : start + batch_size], np.asarray(inp.scale, np.float64), None, inp.format)
        else:
            yield Signal(None, np.ones(()), inp.values[start : start + batch_size], None, True)


def prepared(plan: Plan, data: Any, batch_size: int, samples: int | None = None) -> Iterator[Signal]:
    """The data in batches (the first ``samples`` only, if given), each put on the input grid
    (or kept as floats where the model takes floats)."""
    left = samples
    for x in _stream(plan, data, batch_size):
        if left is not None:
            if left <= 0:
                return
            x, left = x[:left], left - len(x)
        yield _on_grid(plan, x)


def _stream(plan: Plan, data: Any, batch_size: int) -> Any:
    return batches(data, plan.input_shape, batch_size)


def _on_grid(plan: Plan, x: np.ndarray) -> Signal:
    if plan.input_format is not None:
        return plan.input_format.apply(x)
    return Signal(None, np.ones(()), x.astype(np.float64), None, True)


def run(plan: Plan, x: Signal) -> dict[str, Output]:
    """Every step's :class:`~.step.Output` on one batch, by layer name."""
    outputs: dict[str, Output] = {}
    signals = {plan.input_name: x}
    for step in plan.steps:
        out = step.run([signals[name] for name in step.inbound])
        expected = plan.shapes.get(step.name)
        got = out.signal.shape[1:]
        if expected is not None and None not in expected and tuple(expected) != got:
            raise UnsupportedError(
                f"{step.where}: the simulation computed shape {got}, Keras says {tuple(expected)}; this layer's "
                "configuration is not simulated correctly"
            )
        signals[step.name] = out.signal
        outputs[step.name] = out
    return outputs


def result(name: str, sig: Signal, inputs: tuple[str, ...], class_name: str, out: Output | None = None) -> LayerResult:
    """A :class:`LayerResult` from a step's output signal (one batch)."""
    scale = np.asarray(sig.scale, np.float64)
    return LayerResult(
        name=name,
        codes=sig.codes,
        scale=float(scale) if scale.ndim == 0 else scale,
        format=sig.format,
        exact_integer=sig.codes is not None and sig.exact,
        inputs=inputs,
        accumulator=out.accumulator if out is not None else None,
        class_name=class_name,
        notes=out.notes if out is not None else (),
        floats=sig.floats if sig.codes is None else None,
    )


def one_thread_blas() -> Any:
    """A context keeping BLAS to one thread: the products here are small (a few hundred columns), and BLAS
    threads waiting for each other or for a busy core cost more than they give (3x on a loaded 2-core machine)."""
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER: Any = None


def _computed(plan: Plan, stream: Iterable[np.ndarray]) -> Iterator[tuple[Signal, dict[str, Output]]]:
    """Each batch on the input grid, and every layer's output."""
    for x in stream:
        with one_thread_blas():
            sig = _on_grid(plan, x)
            outputs = run(plan, sig)
        yield sig, outputs


def _batch_simulation(plan: Plan, x: Signal, outputs: dict[str, Output], keep: set[str]) -> Simulation:
    parts = {
        s.name: [result(s.name, outputs[s.name].signal, s.inbound, s.class_name, outputs[s.name])]
        for s in plan.steps
        if s.name in keep
    }
    return Simulation(parts, [result(plan.input_name, x, (), "InputLayer")], plan)


def simulate_batches(
    model: Any, data: Any, *, input_format: Any = None, batch_size: int = 1024, layers: list[str] | None = None
) -> Iterator[Simulation]:
    """:func:`simulate`, one :class:`Simulation` per batch: memory stays that of one batch, whatever the data's size."""
    plan = build(model, input_format)
    keep = check_layers(plan, layers)
    for x, outputs in _computed(plan, _stream(plan, data, batch_size)):
        yield _batch_simulation(plan, x, outputs, keep)


def simulate(
    model: Any, data: Any, *, input_format: Any = None, batch_size: int = 1024, layers: list[str] | None = None
) -> Simulation:
    """The whole network on ``data`` in exact integer arithmetic, computed in NumPy from the extraction.

    ``data``: an array of samples, a ``.npy``/``.npz`` path, ``"digits"``, a
    ``tf.data.Dataset`` or an iterable of batches (:mod:`qextract.analysis.data`).
    ``input_format`` puts the input on a grid: an ``ap_fixed<W,I>`` /
    ``ap_ufixed<W,I>`` type (Vivado HLS modes optional) or a QKeras quantizer
    (string or object); by default the model's first layer's quantizer, if it
    is a QActivation, else the data stays float and the first layer computes
    in float64 (flagged). ``layers`` keeps only those layers' results
    (everything is computed). TensorFlow only reads the model.

    Raises :class:`~qextract.errors.UnsupportedError` naming every layer or
    quantizer that cannot be simulated exactly, and
    :class:`~qextract.errors.DataError` for data of the wrong shape.
    """
    plan = build(model, input_format)
    keep = check_layers(plan, layers)
    parts: dict[str, list[LayerResult]] = {s.name: [] for s in plan.steps if s.name in keep}
    inputs: list[LayerResult] = []
    for x, outputs in _computed(plan, _stream(plan, data, batch_size)):
        inputs.append(result(plan.input_name, x, (), "InputLayer"))
        for name, batch in parts.items():
            step = plan.step(name)
            batch.append(result(name, outputs[name].signal, step.inbound, step.class_name, outputs[name]))
    return Simulation(parts, inputs, plan)
