"""Extraction: ``qextract.extract`` against QKeras's ``model_save_quantized_weights``.

qextract's time includes everything ``extract`` does: running every layer's
quantizer on copies, deriving integer codes and scales, and the exactness
check (codes in range, ``codes x scale`` equal to the quantizer output bit for
bit). The baseline runs on a clone carrying the same weights (it overwrites the
model it is given); the clone's weights are restored, untimed, before each
call. ``model.get_weights()`` is the floor: reading the raw floats at all.

qextract keeps the graphs it traces for large quantizers in a process-wide
cache, so after the first call the same configuration runs without tracing.
Both are timed: warm (best of N after a warm-up, as in a long-running
process), and cold, with the cache emptied before every call (what a one-shot
``qextract export`` pays).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

import qextract
from qextract import _keras

from ._harness import Contender, Row, best_of, spread
from ._models import Context, tf


def _agrees_with_qkeras(ex: qextract.Extraction, quantized: Any) -> bool:
    """qextract's values equal the quantized weights QKeras wrote into the model it was given, tensor by tensor.

    The model's weights, not the returned dictionary: qkeras-v3 returns the hardware form there (an auto_po2
    kernel as integers), QKeras 0.9 the values the layer computes with; both write the latter into the model.
    """
    for record in ex:
        if not record.tensors:  # the input layer
            continue
        theirs = quantized.get_layer(record.name).get_weights()
        for ours, w in zip(record.tensors.values(), theirs):
            if not np.array_equal(ours.values, np.asarray(w, np.float32)):
                return False
    return True


def _empty_graph_cache() -> None:
    """Empty qextract's cache of traced quantizer graphs (its public hook)."""
    from qextract.quantizers import graph_cache

    graph_cache.clear()


def run(ctx: Context) -> list[Row]:
    tf()  # through qextract first: importing qkeras before it would load Keras 3
    from qkeras.utils import model_save_quantized_weights

    model, weights = ctx.conv_model, ctx.conv_weights
    clone = _keras.keras().models.clone_model(model)
    clone.set_weights(weights)
    saved: dict = {}

    def baseline() -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "... quantizing model"
            saved.update(model_save_quantized_weights(clone, None))

    results: dict[str, qextract.Extraction] = {}
    times = best_of(
        {
            "extract": Contender(lambda: results.update(ex=qextract.extract(model))),
            "extract_cold": Contender(lambda: qextract.extract(model), setup=_empty_graph_cache, warmup=False),
            "qkeras": Contender(baseline, setup=lambda: clone.set_weights(weights)),
            "get_weights": Contender(model.get_weights),
        },
        ctx.sizes.repeats,
        ctx.sizes.warmup,
    )
    ours, cold, theirs, floor = (min(times[k]) for k in ("extract", "extract_cold", "qkeras", "get_weights"))
    ex = results["ex"]
    n = sum(w.size for w in weights)
    unchanged = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    agree = _agrees_with_qkeras(ex, clone)  # the last timed baseline call left it quantized
    layers = sum(1 for r in ex if r.tensors)
    size = f"{layers} x QConv2D 3x3 {ctx.sizes.conv_channels}->{ctx.sizes.conv_channels}, {n / 1e6:.1f} M weights"
    return [
        Row(
            "extract vs model_save_quantized_weights",
            ours,
            theirs,
            target="<= 1.00x (aim 0.50x)",
            met=ours <= theirs,
            note=(
                f"{size}; runs {spread(times['extract'])} vs {spread(times['qkeras'])}; "
                f"values equal QKeras's: {'yes' if agree else 'NO'}; model unchanged: {'yes' if unchanged else 'NO'}"
            ),
            samples={k: times[k] for k in ("extract", "qkeras")},
        ),
        Row(
            "extract, first call (graph cache emptied) vs model_save_quantized_weights",
            cold,
            theirs,
            target="<= 1.00x",
            met=cold <= theirs,
            note=(
                f"runs {spread(times['extract_cold'])}; includes tracing each quantizer configuration once, "
                "as a one-shot `qextract export` does"
            ),
            samples={k: times[k] for k in ("extract_cold", "qkeras")},
        ),
        Row(
            "extract vs model.get_weights() (floor)",
            ours,
            floor,
            note=f"reading the {n / 1e6:.1f} M raw floats; {n / 1e6 / ours:.0f} M weights/s extracted",
            samples={k: times[k] for k in ("extract", "get_weights")},
        ),
    ]
