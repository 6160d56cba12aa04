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
from dataclasses import replace
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
    """Every simulated layer's :class:`LayerResult` by name, in model order; ``input`` is the quantized input."""

    def __init__(self, results: dict[str, LayerResult], input: LayerResult, plan: Plan) -> None:
        self._results = results
        self._input = input
        self._plan = plan

    @property
    def input(self) -> LayerResult:
        """The input as the network receives it: on the input format's grid (codes), or the data itself (floats)."""
        return self._input

    @property
    def samples(self) -> int:
        return int(self._input.values.shape[0])

    def __getitem__(self, name: str) -> LayerResult:
        try:
            return self._results[name]
        except KeyError:
            raise KeyError(
                f"no simulated layer '{name}' in model '{self._plan.model_name}'; layers: {', '.join(self._results)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def compare(self, model: Any, *, batch_size: int = 1024) -> Any:
        """Each layer against QKeras's own forward pass on :attr:`input`: a pandas DataFrame.

        See :func:`qextract.network.comparison.compare` for the columns.
        """
        from .comparison import compare_plan

        return compare_plan(self._plan, model, _input_batches(self._input, batch_size), list(self._results))

    def __repr__(self) -> str:
        exact = sum(r.exact_integer for r in self._results.values())
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


class _Collector:
    """One layer's batches written into arrays for all samples (preallocated where the total is known)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.parts: list[LayerResult] = []
        self.array: np.ndarray | None = None
        self.filled = 0
        self.first: LayerResult | None = None
        self.accumulator: Any = None
        self.exact = True
        self.notes: dict[str, None] = {}

    def add(self, r: LayerResult) -> None:
        if self.first is None:
            self.first = r
        self.exact = self.exact and r.exact_integer
        self.notes.update(dict.fromkeys(r.notes))
        if r.accumulator is not None:
            self.accumulator = r.accumulator if self.accumulator is None else self.accumulator.merged(r.accumulator)
        same_grid = (r.codes is None) == (self.first.codes is None) and np.array_equal(r.scale, self.first.scale)
        if self.total is not None and same_grid and not self.parts:
            data = r.codes if r.codes is not None else r.floats
            assert data is not None
            if self.array is None:
                self.array = np.empty((self.total, *data.shape[1:]), data.dtype)
            self.array[self.filled : self.filled + data.shape[0]] = data
            self.filled += data.shape[0]
            return
        if self.array is not None:  # a batch on another grid (a float fallback): keep parts from here on
            self.parts.append(self._whole(self.array[: self.filled]))
            self.array = None
        self.parts.append(r)

    def _whole(self, data: np.ndarray) -> LayerResult:
        first = self.first
        assert first is not None
        coded = first.codes is not None
        return replace(first, codes=data if coded else None, floats=None if coded else data)

    def result(self) -> LayerResult:
        if self.array is not None:
            whole = self._whole(self.array[: self.filled])
        else:
            whole = concatenate(self.parts)
        return replace(whole, exact_integer=self.exact, accumulator=self.accumulator, notes=tuple(self.notes))


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
    results = {
        s.name: result(s.name, outputs[s.name].signal, s.inbound, s.class_name, outputs[s.name])
        for s in plan.steps
        if s.name in keep
    }
    return Simulation(results, result(plan.input_name, x, (), "InputLayer"), plan)


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
    stream = _stream(plan, data, batch_size)
    collectors = {name: _Collector(stream.total) for name in [plan.input_name, *(s.name for s in plan.steps)]}
    for x, outputs in _computed(plan, stream):
        sim = _batch_simulation(plan, x, outputs, keep)
        collectors[plan.input_name].add(sim.input)
        for name, r in sim.items():
            collectors[name].add(r)
    results = {s.name: collectors[s.name].result() for s in plan.steps if s.name in keep}
    return Simulation(results, collectors[plan.input_name].result(), plan)
