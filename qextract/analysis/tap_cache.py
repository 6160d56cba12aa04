"""Traced tap models kept between error reports, so that a second report on the same model only runs it.

Tracing the two tap models is most of a first report (benchmarks/RESULTS.md):
a report repeated on the same model, in a notebook or after each training
epoch, would trace them again every time. :data:`tap_cache` keeps, per
(quantized model, float model), everything a report builds before its first
batch: the layer graph, the rows, the float twin, and the traced runners of
each mode.

It can never be used stale, because an entry is found only by a
:func:`fingerprint` of everything that decides the numbers, taken anew on
every call: the model's configuration (layers, quantizers, activations), the
identity of every weight variable, and a digest of every weight's values;
the same for a float model given by the caller. Change one weight (``assign``,
``set_weights``, training), a quantizer or the float model, and the next
report builds and traces afresh; the entries of the old state are dropped
then, as they can no longer be found. The batch size is not part of the key:
the runners take any batch size (:class:`~qextract.analysis.taps.Runner`).

The cache holds no model alive: entries refer to the models weakly and are
dropped when a model is garbage-collected (the tap models hold the model's
layers, never the model object). It is bounded (:attr:`TapCache.maxsize`
entries, least recently used dropped first) and ``tap_cache.clear()`` drops
everything (``maxsize = 0`` turns it off).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Prepared", "TapCache", "fingerprint", "tap_cache"]


def fingerprint(model: Any) -> bytes:
    """A digest of what decides a model's outputs: its configuration, its weight variables and their values.

    Reading and hashing the weights costs about what one pass over them
    costs (a few ms for the bundled example), much less than one forward
    pass of a batch over the same weights.
    """
    from .._keras import quiet_config, tf

    h = hashlib.sha256()
    config = json.dumps(quiet_config(model), sort_keys=True, default=repr)
    h.update(config.encode())
    variables = list(model.weights)
    for v, value in zip(variables, tf().keras.backend.batch_get_value(variables)):
        a = np.ascontiguousarray(value)
        h.update(f"\0{id(v)}:{v.name}:{a.dtype.str}:{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.digest()


@dataclass(eq=False)
class Prepared:
    """What a report on one (model, float model) pair builds before its first batch.

    ``runners`` maps a mode to its quantized runner and, for ``"isolated"``,
    the :class:`~qextract.analysis.taps.IsolatedTaps` telling what each input
    is fed; they are traced on first use (:meth:`quantized`).
    """

    nodes: list[Any]
    rows: list[Any]
    float_model: Any
    float_runner: Any
    model: weakref.ReferenceType[Any] = field(repr=False)
    runners: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def quantized(self, mode: str) -> tuple[Any, Any]:
        """``(runner, isolated taps or None)`` of the quantized model in ``mode``, built once."""
        from . import taps

        if mode not in self.runners:
            model = self.model()
            if model is None:  # cannot happen while a caller holds the model it asks about
                raise RuntimeError("the model of this prepared report no longer exists")
            if mode == "propagated":
                self.runners[mode] = (taps.Runner(taps.quant_taps(model, self.rows, self.nodes)), None)
            else:
                isolated = taps.isolated_taps(self.rows, self.nodes)
                self.runners[mode] = (taps.Runner(isolated.model), isolated)
        return self.runners[mode]


def prepare(model: Any, float_model: Any) -> Prepared:
    """Build a report's graph, rows, float twin (unless ``float_model`` is given) and float runner."""
    from . import taps
    from .twin import check_float_model
    from .twin import float_model as build_float_model

    nodes = taps.graph(model)
    rows = taps.plan_rows(nodes)
    if float_model is None:
        float_model = build_float_model(model)
    else:
        check_float_model(model, float_model)
    runner = taps.Runner(taps.float_taps(float_model, rows))
    return Prepared(nodes, rows, float_model, runner, weakref.ref(model))


Key = tuple[int, bytes, int | None, bytes | None]


@dataclass(eq=False)
class _Entry:
    prepared: Prepared
    model: weakref.ReferenceType[Any]
    float_model: weakref.ReferenceType[Any] | None


class TapCache:
    """Prepared reports keyed by the fingerprints of their models: at most ``maxsize``, least recently used out first.

    ``len(cache)`` counts the entries; :meth:`clear` drops them all.
    """

    def __init__(self, maxsize: int = 4) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._watched: dict[int, weakref.finalize] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (and with them the traced tap models and float twins)."""
        with self._lock:
            self._entries.clear()
            for finalizer in self._watched.values():
                finalizer.detach()
            self._watched.clear()

    def get(self, model: Any, float_model: Any = None, build: Callable[[Any, Any], Prepared] = prepare) -> Prepared:
        """The prepared report of ``model`` against ``float_model`` (None: its float twin), built on a miss.

        The fingerprints are taken on every call, so a hit is a model in
        exactly the state the entry was built from.
        """
        key = _key(model, float_model)
        if key is None:  # no fingerprint (a model without a config): nothing to key on, built every time
            return build(model, float_model)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._alive(entry, model, float_model):
                self._entries.move_to_end(key)
                return entry.prepared
        prepared = build(model, float_model)
        if self.maxsize <= 0:
            return prepared
        try:
            refs = weakref.ref(model), None if float_model is None else weakref.ref(float_model)
        except TypeError:  # an object without weak references: never kept
            return prepared
        with self._lock:
            self._drop_stale(key)
            self._entries[key] = _Entry(prepared, *refs)
            for obj in (model, float_model):
                self._watch(obj)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return prepared

    @staticmethod
    def _alive(entry: _Entry, model: Any, float_model: Any) -> bool:
        """The entry's objects are these very ones (an id can be reused once its object is gone)."""
        same_float = float_model is None if entry.float_model is None else entry.float_model() is float_model
        return entry.model() is model and same_float

    def _drop_stale(self, key: Key) -> None:
        """Entries of the same models in another state: no fingerprint will ever find them again."""
        model_id, model_print, float_id, float_print = key
        for other in list(self._entries):
            if (other[0] == model_id and other[1] != model_print) or (
                float_id is not None and other[2] == float_id and other[3] != float_print
            ):
                del self._entries[other]

    def _watch(self, obj: Any) -> None:
        """Drop the entries of ``obj`` when it is garbage-collected."""
        if obj is None or id(obj) in self._watched:
            return
        ref = weakref.ref(self)
        self._watched[id(obj)] = weakref.finalize(obj, _forget, ref, id(obj))

    def _forget(self, obj_id: int) -> None:
        with self._lock:
            self._watched.pop(obj_id, None)
            for key in [k for k in self._entries if obj_id in (k[0], k[2])]:
                del self._entries[key]


def _key(model: Any, float_model: Any) -> Key | None:
    try:
        return (
            id(model),
            fingerprint(model),
            None if float_model is None else id(float_model),
            None if float_model is None else fingerprint(float_model),
        )
    except (NotImplementedError, TypeError, ValueError, AttributeError):  # e.g. a subclassed model's get_config
        return None


def _forget(cache: weakref.ReferenceType[TapCache], obj_id: int) -> None:
    alive = cache()
    if alive is not None:
        alive._forget(obj_id)


tap_cache = TapCache()
"""The process-wide cache of prepared reports."""
