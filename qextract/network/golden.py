"""Golden vectors and accumulator widths of a whole model, from its integer simulation.

The simulation (:mod:`.simulation`) says what every layer receives and produces; these functions
turn that into the files a testbench reads (:mod:`.vectors`) and the accumulator table a
designer sizes hardware by (:mod:`.accumulators`). The worst-case bounds are computed from the
integer weights independently of the simulation, and every range the simulation observed must lie
inside them (ExactnessError otherwise): the two computations check each other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnsupportedError, UsageError
from ..numformat import FLOAT32, FixedPoint
from ..reading.nested import PASS_THROUGH
from .accumulators import SUPPORTED, AccumulatorBound, twos_complement_bits, widths_table, worst_case
from .layer_vectors import LayerVectors
from .result import LayerResult
from .simulation import Simulation, simulate
from .vectors import VectorsResult, write_vectors

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["accumulator_widths", "golden_vectors", "layer_vectors"]


def _side(r: LayerResult) -> dict[str, Any]:
    """``r`` as one side of a :class:`LayerVectors`: codes in their format, an accumulator as integers, or floats."""
    if r.codes is None:
        return {"codes": None, "format": FLOAT32, "scale": 1.0, "values": np.asarray(r.values, np.float32)}
    fmt = r.format
    if fmt is None:  # an accumulator: signed integers of the width its codes need
        lo, hi = (int(r.codes.min()), int(r.codes.max())) if r.codes.size else (0, 0)
        bits = twos_complement_bits(lo, hi)
        fmt = FixedPoint(bits=bits, integer=bits - 1)
    return {"codes": r.codes, "format": fmt, "scale": r.scale, "values": None}


def layer_vectors(sim: Simulation, layers: Iterable[str] | None = None) -> list[LayerVectors]:
    """Each chosen layer's input and output from ``sim`` (default: every layer with one input), in model order.

    A layer fed by more than one layer (Add, Concatenate) has no single input to write: naming it
    is a UsageError; by default it is left out, and the caller lists what was left out.
    """
    by_name = {sim.input.name: sim.input, **dict(sim.items())}
    names = list(sim) if layers is None else list(layers)
    unknown = [n for n in names if n not in sim]
    if unknown:
        raise UsageError(f"no simulated layer named {', '.join(map(repr, unknown))}; the layers are: {', '.join(sim)}")
    out = []
    for name in names:
        r = sim[name]
        if len(r.inputs) != 1:
            if layers is not None:
                raise UsageError(
                    f"layer '{name}' ({r.class_name}) has {len(r.inputs)} inputs; golden vectors hold one input per "
                    "layer. Fix: choose the layers feeding it instead"
                )
            continue
        i, o = _side(by_name[r.inputs[0]]), _side(r)
        out.append(
            LayerVectors(
                name,
                i["codes"],
                i["format"],
                i["scale"],
                o["codes"],
                o["format"],
                o["scale"],
                input_values=i["values"],
                output_values=o["values"],
            )
        )
    return out


def golden_vectors(
    model: Any,
    data: Any,
    out: str | os.PathLike[str],
    *,
    samples: int | None = None,
    layers: list[str] | None = None,
    input_format: Any = None,
    force: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> VectorsResult:
    """Simulate ``model`` on the first ``samples`` of ``data`` and write each layer's input and output codes to ``out``.

    The files are those of :func:`~.vectors.write_vectors` (npz, one ``.mem`` per tensor, hls4ml's
    ``tb_data`` files, ``vectors.json``), all or nothing.
    """
    if samples is not None:
        data = _first(model, data, samples)
    sim = simulate(model, data, input_format=input_format)
    chosen = layer_vectors(sim, layers)
    if not chosen:
        raise UsageError(f"model '{model.name}': no layer with a single input to write vectors for")
    return write_vectors(chosen, out, samples=samples, force=force, model_name=model.name, protect=protect)


def _first(model: Any, data: Any, samples: int) -> np.ndarray:
    """The first ``samples`` samples of ``data`` (any form :mod:`qextract.analysis.data` reads), read no further."""
    from ..analysis.data import batches

    if samples < 1:
        raise UsageError(f"samples must be at least 1, not {samples}")
    taken: list[np.ndarray] = []
    n = 0
    for batch in batches(data, tuple(model.inputs[0].shape[1:]), 1024):
        taken.append(np.asarray(batch)[: samples - n])
        n += len(taken[-1])
        if n >= samples:
            break
    return np.concatenate(taken)


def accumulator_widths(
    model: Any,
    input_format: Any = None,
    data: Any = None,
    *,
    per_channel: bool = False,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """One row per accumulation (per output channel with ``per_channel``): exact worst case, width, ap_fixed type.

    The worst case comes from the integer weights and the input format of each layer (the model's
    first quantizer, or ``input_format``); with ``data`` the simulation's observed range is added
    (``observed_min`` / ``observed_max``, in the same units). A layer fed by values on no grid
    (float data without ``input_format``, a batch norm's output) has no integer bound:
    UnsupportedError naming it and the fix.
    """
    from ..reading.extraction import extract

    shape = tuple(model.inputs[0].shape[1:])
    probe = data if data is not None else np.zeros((1, *shape), np.float32)
    sim = simulate(model, probe, input_format=input_format, batch_size=batch_size)
    ex = extract(model)
    by_name = {sim.input.name: sim.input, **dict(sim.items())}
    bounds: list[AccumulatorBound] = []
    grids: dict[str, tuple[Any, Any]] = {}  # layer -> (format, scale) its output codes are bounded by
    for name, r in sim.items():
        if name not in ex.names or ex[name].kind not in SUPPORTED:
            continue
        fmt, scale = _input_grid(name, r, by_name, grids)
        layer_bounds = worst_case(ex[name], fmt, scale, per_channel=per_channel)
        if data is not None and r.accumulator is not None:  # the simulation observes the last stage's sums
            last = layer_bounds[-1].tensor
            layer_bounds = [_observed(b, r) if b.tensor == last else b for b in layer_bounds]
        bounds.extend(layer_bounds)
        whole = layer_bounds[-1] if not per_channel else worst_case(ex[name], fmt, scale)[-1]
        if whole.step is not None:  # a linear layer's accumulator feeding the next one: bounded by this row
            grids[name] = (FixedPoint(bits=whole.bits, integer=whole.bits - 1), whole.step)
    return widths_table(bounds)


def _input_grid(
    name: str, r: LayerResult, by_name: dict[str, LayerResult], grids: dict[str, tuple[Any, Any]]
) -> tuple[Any, Any]:
    """The number format and scale bounding the codes that feed ``name``.

    A quantized output gives its format; an accumulator (a layer without activation) gives the
    two's complement width of its own worst case, also through layers that pass values on
    unchanged (Flatten, Reshape, Dropout). Values on no grid: UnsupportedError naming the layer.
    """
    feeding = by_name[r.inputs[0]]
    while feeding.format is None and feeding.name not in grids and feeding.class_name in PASS_THROUGH:
        feeding = by_name[feeding.inputs[0]]
    if feeding.format is not None and feeding.codes is not None:
        scale = np.asarray(feeding.scale, np.float64)
        return feeding.format, (scale if scale.ndim else float(scale))
    if feeding.name in grids:
        return grids[feeding.name]
    raise UnsupportedError(
        f"layer '{name}' ({r.class_name}) is fed by '{feeding.name}', whose values lie on no integer grid "
        "(float data or a float layer), so its accumulator has no integer bound. Fix: give input_format "
        "(e.g. 'ap_fixed<8,3>') for the model input, or quantize that layer's input",
        arguments=("input_format",),
    )


def _observed(b: AccumulatorBound, r: LayerResult) -> AccumulatorBound:
    """``b`` with the simulation's observed range, converted to ``b``'s step; ExactnessError outside the bound."""
    from dataclasses import replace
    from fractions import Fraction

    from ..errors import ExactnessError

    acc = r.accumulator
    assert acc is not None
    scales = np.broadcast_to(np.asarray(acc.scale, np.float64), acc.min.shape)
    channels = range(acc.min.size) if b.channel is None else [b.channel]
    step = b.step if b.step is not None else b.channel_steps[b.channel or 0]
    lo = min(Fraction(int(acc.min[c])) * Fraction(float(scales[c])) / Fraction(step) for c in channels)
    hi = max(Fraction(int(acc.max[c])) * Fraction(float(scales[c])) / Fraction(step) for c in channels)
    lo_i, hi_i = math.floor(lo), math.ceil(hi)  # exact: a finer bias step gives fractions of the bound's step
    if lo_i < b.acc_min or hi_i > b.acc_max:
        raise ExactnessError(
            f"layer '{b.layer}' {b.tensor}: the simulation's accumulators reach [{lo_i}, {hi_i}], outside the worst "
            f"case [{b.acc_min}, {b.acc_max}]; the bound and the simulation disagree"
        )
    return replace(b, observed_min=lo_i, observed_max=hi_i)
