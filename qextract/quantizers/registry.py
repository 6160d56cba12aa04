"""The registry: QKeras quantizer class name -> its :class:`~.entry.QuantizerEntry`.

Family modules register their entries with :func:`register`; everything else
asks here (:func:`entry_for`, :func:`number_format`, :func:`output_bounds`,
:func:`float_twin`), never tests a class name itself.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import UnsupportedError
from ..numformat import NumberFormat
from .activations import ActivationSpec
from .entry import Bounds, QuantizerEntry, describe

QUANTIZERS: dict[str, QuantizerEntry] = {}
"""Every supported quantizer class name -> its entry. Filled by :func:`register`."""

E = TypeVar("E", bound=type[QuantizerEntry])


def register(cls: E) -> E:
    """Class decorator: register one instance of ``cls`` under ``cls.name``.

    >>> @register                                   # doctest: +SKIP
    ... class MyQuantizer(QuantizerEntry):
    ...     name = "my_quantizer"
    """
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no QKeras class name")
    if cls.name in QUANTIZERS:
        raise TypeError(
            f"quantizer class {cls.name} is registered twice ({type(QUANTIZERS[cls.name]).__name__}, {cls.__name__})"
        )
    QUANTIZERS[cls.name] = cls()
    return cls


def entry_for(q: Any, where: str = "") -> QuantizerEntry:
    """The entry of quantizer ``q``; an UnsupportedError naming it and ``where`` otherwise."""
    name = type(q).__name__
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise UnsupportedError(
            f"{where + ': ' if where else ''}quantizer {name} ({describe(q)}) is not supported; "
            f"supported: {', '.join(sorted(QUANTIZERS))}. Fix: use one of these, or register an entry "
            "for it in qextract.quantizers."
        ) from None


def is_quantizer(obj: Any) -> bool:
    """True for any QKeras quantizer object, registered or not."""
    from .._keras import quantizer_base

    return isinstance(obj, quantizer_base())


def number_format(q: Any, where: str = "") -> NumberFormat:
    """The number format ``q`` produces, from its configuration alone."""
    return entry_for(q, where).number_format(q)


def output_bounds(q: Any) -> Bounds | None:
    """The lowest and highest value activation quantizer ``q`` outputs (:meth:`QuantizerEntry.bounds`).

    None for no quantizer, an unregistered one, or where the bounds are
    unknown or meaningless.
    """
    entry = QUANTIZERS.get(type(q).__name__) if q is not None else None
    return None if entry is None else entry.bounds(q)


def twin_names() -> list[str]:
    """The quantizer classes with a float twin (their entry overrides :meth:`QuantizerEntry.float_twin`)."""
    return sorted(n for n, e in QUANTIZERS.items() if type(e).float_twin is not QuantizerEntry.float_twin)


def float_twin(q: Any, where: str = "") -> ActivationSpec:
    """The float activation quantizer ``q`` approximates; an UnsupportedError where it has none.

    ``where`` prefixes the message (e.g. ``"layer 'd' (QDense): "``).
    """
    entry = QUANTIZERS.get(type(q).__name__)
    spec = entry.float_twin(q) if entry is not None else None
    if spec is None:
        raise UnsupportedError(
            f"{where}quantizer {describe(q)} has no float twin (known: {', '.join(twin_names())}); "
            "pass your own float model instead"
        )
    return spec
