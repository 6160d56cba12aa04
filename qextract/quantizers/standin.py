"""Quantizers built from a stored configuration without QKeras: QKeras's attributes, QKeras's ``str``.

:func:`build` does what QKeras's ``get_quantizer`` and the quantizer's
``__init__`` do, from the entry's declared constructor (:attr:`QuantizerEntry.params
<qextract.quantizers.entry.QuantizerEntry.params>`): positional and keyword
arguments bound as Python binds them, the entry's ``initialize`` for what the
constructor derives (``quantized_po2``'s exponent range, ``alpha="auto"`` making
``quantized_bits`` symmetric), and, where the layer asks for it, the entry's
``optimize`` (QKeras's ``_set_trainable_parameter``: a kernel's
``quantized_bits`` without alpha becomes ``alpha="auto_po2"``).

The object's class is named after the QKeras class, so every registry entry
(:func:`~qextract.quantizers.entry_for`, ``number_format``, ``encode``) reads it
as it reads QKeras's own object.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import NeedsQKeras
from ..generation import LEGACY, Generation
from .parse import QuantizerCall
from .registry import QUANTIZERS

__all__ = ["StoredQuantizer", "build"]


class StoredQuantizer:
    """A quantizer's attributes as QKeras's constructor sets them; ``str()`` as QKeras prints it."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def __str__(self) -> str:
        return QUANTIZERS[type(self).__name__].text(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} built from a configuration: {vars(self)}>"

    def get_config(self) -> dict[str, Any]:
        """QKeras's ``get_config()`` of the same quantizer (what ``describe`` falls back to)."""
        return {k: getattr(self, k) for k in QUANTIZERS[type(self).__name__].config_keys if hasattr(self, k)}


@cache
def _class(name: str) -> type[StoredQuantizer]:
    return type(name, (StoredQuantizer,), {"__module__": __name__, "__qualname__": name})


def build(call: QuantizerCall, optimized: bool = False, generation: Generation = LEGACY) -> StoredQuantizer:
    """The quantizer ``call`` builds in ``generation``'s QKeras, ``optimized`` as a QKeras layer optimizes its weight
    quantizers.

    The constructor's arguments are ``generation``'s (:attr:`~qextract.generation.Generation.quantizer_arguments`,
    else the entry's, QKeras 0.9's). Raises :class:`NeedsQKeras` for a class without a NumPy form,
    arguments the constructor would reject (it raises; the engine lets QKeras say so), and an
    argument the generation adds whose value is not its default (no NumPy form reproduces it).
    """
    entry = QUANTIZERS.get(call.class_name)
    if entry is None or entry.params is None:
        raise NeedsQKeras(f"quantizer {call.class_name} has no NumPy form in qextract")
    params = generation.quantizer_arguments.get(call.class_name, entry.params)
    names = [name for name, _ in params]
    if len(call.args) > len(names):
        raise NeedsQKeras(f"{call.text}: more positional arguments than {call.class_name} takes")
    attributes = dict(params)
    attributes.update(zip(names, call.args))
    for key, value in call.kwargs:
        if key not in attributes or key in names[: len(call.args)]:
            raise NeedsQKeras(f"{call.text}: argument {key!r}, which {call.class_name}'s constructor rejects")
        attributes[key] = value
    defaults = dict(params)
    for key in sorted(generation.default_only_arguments.get(call.class_name, ())):
        if attributes[key] != defaults[key]:
            raise NeedsQKeras(
                f"{call.class_name} argument {key}={attributes[key]!r} ({generation.distribution}; the NumPy forms "
                f"reproduce only its default, {defaults[key]!r})"
            )
    attributes.update(generation.derived_quantizer_attributes(call.class_name, attributes))
    q = _class(call.class_name)(**attributes)
    entry.initialize(q)
    if optimized:
        entry.optimize(q)
        vars(q).update(generation.derived_quantizer_attributes(call.class_name, vars(q)))  # as re-derived there
    return q
