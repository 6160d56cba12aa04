"""One stored tf-keras / QKeras 0.9 layer configuration, translated to what qkeras-v3's ``from_config`` takes.

What QKeras 0.9 writes and qkeras-v3 reads differently (measured on the bundled example and the
migration fixtures, against the configurations qkeras-v3 writes for the same layers):

- a registered QKeras object (quantizer, ``Clip``, ``QInitializer``) is named ``Name`` in 0.9 and
  ``qkeras>Name`` in Keras 3, which finds it only under that name;
- an ``InputLayer``'s ``batch_input_shape`` is Keras 3's ``batch_shape``;
- batch normalisation's ``axis`` is a list (``[3]``) in tf-keras and one int in Keras 3 (a list of
  several axes has no Keras 3 form and is refused);
- keys the Keras 3 class does not take: dropped only where they cannot change what the model
  computes (None, an initializer: the weights are set afterwards, ``groups=1``); any other is
  refused, naming the layer and the key, never dropped silently.

Nothing here builds a layer; :mod:`.build` does, and the extraction comparison proves the result.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LayerFailure", "Translated", "translate"]

_HARMLESS = {("groups", 1)}
"""(key, value) pairs of a 0.9 configuration that are Keras 3's behaviour anyway when the key is gone."""


@dataclass(frozen=True)
class LayerFailure:
    """A layer that could not be migrated: its name, class, and why (the step that failed and its error)."""

    layer: str
    class_name: str
    reason: str


@dataclass(frozen=True)
class Translated:
    """A layer's Keras 3 class and configuration, and the keys of the 0.9 configuration left out (why: harmless)."""

    cls: type
    config: dict[str, Any]
    dropped: tuple[str, ...]


class Untranslatable(Exception):
    """A stored configuration that has no faithful qkeras-v3 form; the message says which key and why."""


def translate(class_name: str, config: Mapping[str, Any], objects: Mapping[str, Any], layers: Any) -> Translated:
    """``config`` of a stored ``class_name`` layer for qkeras-v3: a QKeras class from ``objects``, else ``layers``.

    Raises :class:`Untranslatable` naming the key or class.
    """
    cls = objects.get(class_name) if class_name[:1].isupper() else None
    if cls is None:
        cls = getattr(layers, class_name, None)
    if not isinstance(cls, type):
        raise Untranslatable(f"no class '{class_name}' in qkeras-v3 or Keras 3")
    out = {k: _registered(v, objects) for k, v in config.items()}
    out.pop("batch_input_shape", None)  # the model's input, built by :mod:`.build`, not the layer's
    if "axis" in out and isinstance(out["axis"], list):
        if len(out["axis"]) != 1:
            raise Untranslatable(f"axis={out['axis']}: Keras 3 normalises over one axis only")
        out["axis"] = out["axis"][0]
    accepted = _accepted(cls, layers.Layer)
    dropped = []
    for key in [k for k in out if k not in accepted]:
        value = out.pop(key)
        if not (value is None or key.endswith("_initializer") or (key, value) in _HARMLESS):
            raise Untranslatable(
                f"its configuration sets {key}={_short(value)}, which qkeras-v3's {cls.__name__} does not take"
            )
        dropped.append(key)
    return Translated(cls, out, tuple(dropped))


def _registered(value: Any, objects: Mapping[str, Any]) -> Any:
    """``value`` with every registered QKeras object renamed as Keras 3 finds it (``qkeras>Clip``)."""
    if isinstance(value, list):
        return [_registered(v, objects) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _registered(v, objects) for k, v in value.items()}
    name = out.get("class_name")
    if isinstance(name, str) and name in objects and out.get("registered_name") in (name, None) and "config" in out:
        out["registered_name"] = f"qkeras>{name}"
    return out


def _accepted(cls: type, base: type) -> set[str]:
    """The keyword arguments ``cls`` takes: its own ``__init__``'s and its bases', down to Keras's ``Layer``."""
    names: set[str] = set()
    for c in cls.__mro__:
        if "__init__" in c.__dict__:
            params = inspect.signature(c.__dict__["__init__"]).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if c is base:
            break
    names.discard("self")
    return names


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
