"""Running a quantizer on a tensor as its layer does: eagerly, or as a cached traced graph.

Tensors at least :data:`GRAPH_MIN_SIZE` large run the quantizer as a traced
graph (as the layer does inside ``model.predict``): about 35 % faster than
op-by-op eager execution, but each new quantizer configuration costs one
trace, which only large tensors repay. Only configurations whose arithmetic is
exact in any order take this path (:meth:`QuantizerEntry.graph_safe`): for
those the graph gives the same bits as QKeras's eager call, which tests check.

The traced graphs live in :data:`graph_cache`, bounded (least recently used
out first) and cleared with ``graph_cache.clear()``.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from ..errors import QExtractError, QExtractWarning, UnsupportedError
from .entry import QuantizerEntry, describe
from .registry import entry_for

GRAPH_MIN_SIZE = 1 << 18
"""Default smallest tensor (elements) that runs as a traced graph."""

Traced = Callable[[Any], tuple[Any, Any]]
"""A traced quantizer call: tensor -> (output, scale)."""


class GraphCache:
    """Traced quantizer graphs keyed by configuration, at most ``maxsize``, least recently used dropped first.

    ``min_size`` is the smallest tensor (in elements) worth tracing for.
    ``len(cache)`` counts the graphs held; :meth:`clear` drops them all (a
    benchmark measuring a cold start, a long process freeing memory).
    """

    def __init__(self, maxsize: int = 64, min_size: int = GRAPH_MIN_SIZE) -> None:
        self.maxsize = maxsize
        self.min_size = min_size
        self._graphs: OrderedDict[Hashable, Traced] = OrderedDict()

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every traced graph."""
        self._graphs.clear()

    def get(self, key: Hashable) -> Traced | None:
        """The graph traced for ``key``, marked most recently used; None if there is none."""
        fn = self._graphs.get(key)
        if fn is not None:
            self._graphs.move_to_end(key)
        return fn

    def put(self, key: Hashable, fn: Traced) -> None:
        """Keep ``fn`` for ``key``, dropping the least recently used graphs beyond ``maxsize``."""
        self._graphs[key] = fn
        self._graphs.move_to_end(key)
        while len(self._graphs) > max(self.maxsize, 0):
            self._graphs.popitem(last=False)


graph_cache = GraphCache()
"""The process-wide cache of traced quantizer graphs."""


def apply(q: Any, raw: np.ndarray, where: str = "") -> tuple[np.ndarray, Any]:
    """Run quantizer ``q`` on ``raw`` exactly as the layer does, without touching ``q``.

    The quantizer is shallow-copied first: calling a QKeras quantizer stores
    its scale on itself, and extraction must not change the model's objects.
    Returns the output as float32 NumPy and the copy (holding ``.scale``).
    """
    from .._keras import tf

    entry = entry_for(q, where)
    if entry.stochastic_note:
        warnings.warn(f"{where}: {entry.stochastic_note}", QExtractWarning, stacklevel=3)
    qc = copy.copy(q)
    try:
        out = _run(entry, qc, tf().constant(raw, dtype=tf().float32))
    except QExtractError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UnsupportedError(
            f"{where}: QKeras's own {describe(q)} fails on this tensor ({type(e).__name__}: {first}). "
            "Fix: correct the quantizer configuration; the layer cannot run with it either."
        ) from None
    return np.asarray(out, dtype=np.float32), qc


def _run(entry: QuantizerEntry, qc: Any, x: Any) -> Any:
    """``entry.inference(qc, x)``; as a cached graph for large tensors where that is bit-identical."""
    key = _graph_key(qc, x) if entry.graph_safe(qc) else None
    if key is None:
        return entry.inference(qc, x)
    fn = graph_cache.get(key)
    if fn is None:
        fn = _trace(entry, copy.copy(qc), x.shape.rank)
        graph_cache.put(key, fn)
    out, scale = fn(x)
    qc.scale = scale.numpy()
    return out


def _trace(entry: QuantizerEntry, template: Any, rank: int) -> Traced:
    from .._keras import tf

    t = tf()

    def run(x: Any) -> tuple[Any, Any]:
        q = copy.copy(template)
        out = entry.inference(q, x)
        scale = 1.0 if getattr(q, "scale", None) is None else q.scale
        return out, t.cast(t.convert_to_tensor(scale), t.float32)

    return t.function(run, input_signature=[t.TensorSpec([None] * rank, t.float32)])


def _graph_key(q: Any, x: Any) -> tuple[Hashable, ...] | None:
    """A hashable snapshot of everything the quantizer's call reads, or None (run eagerly)."""
    if x.shape.num_elements() is None or x.shape.num_elements() < graph_cache.min_size:
        return None
    items: list[tuple[str, Any]] = [("class", type(q)), ("rank", x.shape.rank)]
    for name, value in sorted(vars(q).items()):
        if name == "scale" or name.startswith("_self_"):  # _self_*: TF object tracking, not maths
            continue
        if hasattr(value, "numpy"):
            value = value.numpy()
        if isinstance(value, np.ndarray):
            value = (value.dtype.str, value.shape, value.tobytes())
        try:
            hash(value)
        except TypeError:
            return None
        items.append((name, value))
    return tuple(items)


def ste_explains(raw: np.ndarray, grid: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Where QKeras's straight-through form ``x + (xq - x)`` turned ``grid`` into ``out``.

    In float32 that sum is not always ``xq`` again when ``xq`` lies far from
    ``x`` (clipped weights with a non-power-of-two scale): the layer then
    computes with a value off the grid by rounding. Returns a boolean mask.
    """
    x = raw.astype(np.float32)
    ste = (x + (grid.astype(np.float32) - x)).astype(np.float32)
    return ste == out
