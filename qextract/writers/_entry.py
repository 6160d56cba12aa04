"""What a reader needs to know about one tensor, taken from ``manifest.json``.

The manifest describes each tensor (shape, number format) and the export
(``word_bits``); :func:`entries` turns that into one :class:`Entry` per
tensor, deriving the names the writers gave it (the C identifier in
``weights.h``) exactly as the writers derive them: from every tensor of the
export, in order, so repeated names are numbered alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..numformat import NumberFormat, from_description
from . import _text

number_format = from_description
"""The :class:`~qextract.numformat.NumberFormat` a manifest's format description describes (ValueError if none)."""

if TYPE_CHECKING:
    from ..manifest.entries import Manifest


@dataclass(frozen=True)
class Entry:
    """One exported tensor as the readers see it.

    ``shape`` is the laid-out shape; ``word_bits`` the export's packing (None:
    one code per memory word); ``c_name`` the tensor's identifier in ``weights.h``.
    """

    key: str
    layer: str
    name: str
    shape: tuple[int, ...]
    format: NumberFormat
    word_bits: int | None = None
    c_name: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def quantized(self) -> bool:
        return self.format.quantized


def entries(manifest: Manifest | Mapping[str, Any]) -> dict[str, Entry]:
    """Every tensor of ``manifest`` (a :class:`~qextract.manifest.Manifest` or its JSON form) by key, in export order.

    Needs only the manifest's ``layers`` (``name``; each tensor's ``key``,
    ``name``, ``shape`` and ``format``) and ``word_bits``.
    """
    if isinstance(manifest, Mapping):
        word_bits = manifest.get("word_bits")
        rows = [
            (layer["name"], t["key"], t["name"], t["shape"], t["format"])
            for layer in manifest["layers"]
            for t in layer["tensors"]
        ]
    else:
        word_bits = manifest.word_bits
        rows = [(layer.name, t.key, t.name, t.shape, t.format) for layer in manifest.layers for t in layer.tensors]
    c_names = _text.c_names([(layer, name) for layer, _, name, _, _ in rows])
    return {
        key: Entry(key, layer, name, tuple(shape), number_format(fmt), word_bits, c_name)
        for (layer, key, name, shape, fmt), c_name in zip(rows, c_names)
    }
