"""A quantizer as a layer configuration stores it, read the way QKeras reads it, without ``eval``.

A QKeras layer's configuration holds each quantizer either as a dict
``{"class_name": "quantized_bits", "config": {...}}`` (what ``get_config`` writes
for the layer's own quantizers) or as a string ``"quantized_relu(6,2)"`` (what
the user wrote, kept by ``QActivation``). QKeras turns the dict into
``cls(**config)`` and the string into ``cls(*args, **kwargs)`` with its own small
parser (``qkeras.safe_eval``): arguments are split at commas, a keyword's value
runs to the next ``,`` or ``)``, and each value is ``True``/``False``, an
``int``, a ``float``, or else the text with its first and last characters cut
off (meant for quotes: an unquoted ``None`` becomes ``"on"``). This module
reproduces that parser exactly, so that the NumPy engine builds the quantizer
QKeras builds; it never evaluates anything.

A name QKeras does not know as a quantizer class is a Keras activation
function (``"relu"``, ``"linear"``) or one of QKeras's own activation functions
(``"binary_tanh"``): :class:`ActivationFunction`, a float activation.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import NeedsQKeras
from ..generation import LEGACY, Generation

__all__ = ["ActivationFunction", "QuantizerCall", "parse_quantizer"]

# Keras activation names both Kerases know; the __name__ of the function each gives for them (what a layer reports)
# is the name itself but for the generation's Generation.activation_names.
KERAS_ACTIVATIONS = frozenset(
    {
        "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "softplus", "softsign", "tanh",
        "elu", "selu", "exponential", "gelu", "mish", "log_softmax", "swish", "leaky_relu", "silu",
    }
)  # fmt: skip
# QKeras's own module-level activation functions (quantizers.py), which get_quantizer finds first.
QKERAS_FUNCTIONS = frozenset(
    {"hard_sigmoid", "smooth_sigmoid", "binary_sigmoid", "binary_tanh", "hard_tanh", "smooth_tanh"}
)


@dataclass(frozen=True)
class QuantizerCall:
    """``class_name(*args, **kwargs)``: how QKeras builds the quantizer; ``text`` is what the file holds."""

    class_name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    text: str


@dataclass(frozen=True)
class ActivationFunction:
    """A float activation function, named as Keras names it (``layer.activation.__name__``)."""

    name: str


def parse_quantizer(
    stored: Any, known: frozenset[str], generation: Generation = LEGACY
) -> QuantizerCall | ActivationFunction | None:
    """What ``generation``'s QKeras ``get_quantizer(stored)`` builds: a quantizer call, a float function, or None.

    ``known`` are the quantizer class names QKeras defines. Raises :class:`NeedsQKeras`
    where QKeras would do something this reader does not reproduce (a name Keras does not
    know, a string QKeras's parser rejects or reads as a default instance).
    """
    if stored is None or stored == "":
        return None
    if isinstance(stored, Mapping):
        return _from_dict(stored, known)
    if isinstance(stored, str):
        return _from_string(stored, known, generation)
    raise NeedsQKeras(f"a quantizer stored as {type(stored).__name__} ({stored!r})")


def _from_dict(stored: Mapping[str, Any], known: frozenset[str]) -> QuantizerCall | ActivationFunction:
    name, config = stored.get("class_name"), stored.get("config")
    if name not in known or not isinstance(config, Mapping):
        raise NeedsQKeras(f"a serialized quantizer of class {name!r}, which is no QKeras quantizer class")
    return QuantizerCall(str(name), (), tuple(config.items()), repr(dict(stored)))


def _from_string(text: str, known: frozenset[str], generation: Generation) -> QuantizerCall | ActivationFunction:
    parts = text.split("(")
    name = parts[0]
    if len(parts) == 1:
        if name in known:
            return QuantizerCall(name, (), (), text)  # a class named alone: QKeras builds it with its defaults
        if name in QKERAS_FUNCTIONS:
            return ActivationFunction(name)
        if name in KERAS_ACTIVATIONS:
            return ActivationFunction(generation.activation_names.get(name, name))
        raise NeedsQKeras(f"activation {text!r}, which is no QKeras quantizer and no plain Keras activation name")
    if len(parts) > 2 or name not in known:
        # QKeras ignores every argument of a string with two '(' (it builds the class's defaults) and
        # passes arguments to a Keras function otherwise: neither is reproduced here.
        raise NeedsQKeras(f"quantizer string {text!r}, which QKeras's own parser reads in a way not reproduced here")
    args, kwargs = _arguments("(" + parts[1], text, generation)
    return QuantizerCall(name, tuple(args), tuple(kwargs.items()), text)


_TOKEN = re.compile(r"[^=,)\s]+")
_VALUE = re.compile(r"[^,)]*")


def _arguments(text: str, whole: str, generation: Generation) -> tuple[list[Any], dict[str, Any]]:
    """QKeras's ``GetParams``: ``(a, b, key=value, ...)``, each value read by :func:`_value`."""
    pos = 1  # after "("
    items: list[tuple[str, ...]] = []

    def skip(p: int) -> int:
        while p < len(text) and text[p].isspace():
            p += 1
        return p

    pos = skip(pos)
    if pos < len(text) and text[pos] == ")":
        return [], {}
    while True:
        pos = skip(pos)
        token = _TOKEN.match(text, pos)
        if token is None:
            raise NeedsQKeras(f"quantizer string {whole!r}, which QKeras's own parser rejects")
        pos = skip(token.end())
        if pos < len(text) and text[pos] == "=":
            value = _VALUE.match(text, skip(pos + 1))
            assert value is not None  # [^,)]* matches the empty string
            items.append((token.group(), value.group()))
            pos = value.end()
        else:
            items.append((token.group(),))
        pos = skip(pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == ")":
            break
        raise NeedsQKeras(f"quantizer string {whole!r}, which QKeras's own parser rejects")
    if any(len(b) == 1 and len(a) == 2 for a, b in itertools.pairwise(items)):
        raise NeedsQKeras(f"quantizer string {whole!r}: a positional argument after a keyword, which QKeras rejects")
    args = [_value(i[0], generation) for i in items if len(i) == 1]
    kwargs = {i[0]: _value(i[1], generation) for i in items if len(i) == 2}
    return args, kwargs


def _number(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        return float(s)


def _value(s: str, generation: Generation = LEGACY) -> Any:
    """QKeras's ``GetArg``: a bool, an int, a float, (qkeras-v3: None, a list of numbers ``[1 2]``), or the text
    without its first and last character."""
    if s in ("True", "False"):
        return s == "True"
    try:
        return _number(s)
    except ValueError:
        pass
    if generation.string_values_v3:
        if s == "None":
            return None
        parts = s.replace("[", "").replace("]", "").split(" ")
        if len(parts) > 1:
            try:
                return [_number(e) for e in parts]
            except ValueError:
                pass
    return s[1:-1]
