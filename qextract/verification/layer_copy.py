"""A copy of a Keras layer to compare an export against, and what it outputs.

Verification compares the recomputed layer with the layer's *own* output,
but must never change the user's model: it runs a copy, built from the
layer's config (inside QKeras's custom-object scope) with the activation
switched off where asked. QKeras cannot rebuild some layers from their own
config (a ``quantized_hswish`` kernel quantizer: its config carries
``keep_negative``, which its constructor rejects); those are built from
copies of the layer's quantizer objects instead, and the note says so.

On the copy, each ``bernoulli`` quantizer (which samples at random on every
call, even at inference) is replaced by its documented deterministic value
``scale * (x >= 0)``, the value qextract exports; ``stochastic_binary`` and
``stochastic_ternary`` are already deterministic at inference and are only
noted.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .. import _keras
from .._keras import quiet_config

__all__ = ["keras_output"]


def keras_output(keras_layer: Any, x: np.ndarray, *, keep_activation: bool) -> tuple[np.ndarray, list[str]]:
    """The output of a copy of ``keras_layer`` (its activation switched off unless ``keep_activation``) on ``x``."""
    clone, notes = _rebuild(keras_layer, keep_activation)
    clone(x[:1], training=False)  # builds every sub-layer (a folded layer's batch norm too)
    clone.set_weights(keras_layer.get_weights())
    notes += _determinise(clone)
    out = clone(x, training=False)
    if isinstance(out, (list, tuple)):  # Bidirectional(merge_mode=None); return_state: the output comes first
        out = np.concatenate([np.asarray(o) for o in out], axis=-1) if _two_directions(keras_layer) else out[0]
    return np.asarray(out), notes


def _two_directions(keras_layer: Any) -> bool:
    return hasattr(keras_layer, "forward_layer") and getattr(keras_layer, "merge_mode", "concat") is None


def _rebuild(keras_layer: Any, keep_activation: bool) -> tuple[Any, list[str]]:
    """A new layer of the same class and configuration (the weights are set by the caller)."""
    from .._keras import custom_objects

    config = quiet_config(keras_layer)
    if not keep_activation and "activation" in config:
        config["activation"] = None
    cls = type(keras_layer)
    with _keras.keras().utils.custom_object_scope(custom_objects()):
        try:
            return cls.from_config(dict(config)), []
        except Exception:
            config.update(_quantizer_objects(keras_layer, config))
            note = "rebuilt from its quantizer objects (QKeras cannot rebuild it from its own config)"
            return cls.from_config(dict(config)), [note]


def _owners(layer: Any) -> list[Any]:
    """The layer and the sub-layers holding its quantizers (a recurrent cell, both directions)."""
    found = [layer]
    for attr in ("cell", "forward_layer", "backward_layer"):
        sub = getattr(layer, attr, None)
        if sub is not None:
            found += _owners(sub)
    return found


def _quantizer_objects(keras_layer: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Copies of the quantizer objects behind each quantizer entry of ``config``.

    Shallow copies, as extraction makes them: a quantizer called while the model was built holds a
    symbolic tensor (its last ``scale``), which cannot be deep-copied; the copy keeps the user's
    object from being touched when the rebuilt layer calls it.
    """
    from ..quantizers import is_quantizer

    out = {}
    for key, value in config.items():
        if value is None or not (key.endswith("_quantizer") or key in ("activation", "recurrent_activation")):
            continue
        for owner in _owners(keras_layer):
            obj = getattr(owner, f"{key}_internal" if key.endswith("_quantizer") else key, None)
            if obj is not None and is_quantizer(obj):
                out[key] = copy.copy(obj)
                break
    return out


def _determinise(clone: Any) -> list[str]:
    """Replace each ``bernoulli`` quantizer of ``clone`` by its deterministic value; notes saying so."""
    notes = []
    for owner in _owners(clone):
        for attr, value in list(vars(owner).items()):
            if type(value).__name__ == "bernoulli":
                object.__setattr__(owner, attr, _DeterministicBernoulli(value))
                notes.append(f"{attr}: bernoulli compared as scale * (x >= 0)")
            elif type(value).__name__ in ("stochastic_binary", "stochastic_ternary") and attr.endswith("_internal"):
                notes.append(f"{attr}: {type(value).__name__} at inference (deterministic)")
    return sorted(set(notes))


class _DeterministicBernoulli:
    """``bernoulli`` without its random draw: ``scale * (x >= 0)``, through its straight-through form."""

    def __init__(self, q: Any) -> None:
        self.alpha = q.alpha

    def __call__(self, x: Any) -> Any:
        from qkeras.quantizers import _get_scale

        from .._keras import tf

        t = tf()
        q01 = t.cast(x >= 0, x.dtype)
        return x + t.stop_gradient(-x + _get_scale(self.alpha, x, q01) * q01)
