"""What an import did, as typed records first and DataFrames second.

One :class:`Placement` per tensor (assigned, kept, unused or ignored) and one
:class:`PaddingCheck` per convolution whose padding was compared; a
:class:`LoadReport` holds them with the model that received the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..layouts import Layout

if TYPE_CHECKING:
    import pandas as pd

ASSIGNED = "assigned"
KEPT = "kept"  # the source has no such tensor (strict=False): the layer keeps its weight
UNUSED = "unused"  # the model has no place for a source tensor (strict=False)
IGNORED = "ignored"  # not a weight (num_batches_tracked, a pooling layer's derived multiplier)


@dataclass(frozen=True)
class Incoming:
    """A source tensor bound for one target tensor, still in the source's layout.

    ``order`` is the flatten order (``hwc`` / ``chw``) of a Dense kernel fed by
    Flatten; ``flatten_shape`` the (H, W, C) the source says it was flattened
    from (None: the Keras model's own).
    """

    layer: str
    tensor: str
    array: np.ndarray
    source: str
    layout: Layout
    values: str  # what the numbers are: "float32", "codes x scale", "raw", "int8 dequantized", ...
    order: str = "hwc"
    flatten_shape: tuple[int, ...] | None = None
    note: str = ""  # a transform done while reading (squeezed unit axis, summed biases, reordered gates)


@dataclass
class Gathered:
    """Everything a source reader found, before any array is converted or assigned.

    ``unused`` and ``ignored`` are (source name, why) pairs; ``paddings`` the
    source's own explicit padding per layer, where it records one; ``hint``
    is added to a shape error (how the source's names were paired).
    """

    kind: str
    incoming: list[Incoming] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    paddings: dict[str, tuple[int, ...]] = field(default_factory=dict)
    padding_rule: str = "tf"
    hint: str = ""


@dataclass(frozen=True)
class Placement:
    """Where one tensor went: Keras layer and tensor, source name and layout, shapes, transform."""

    layer: str
    layer_class: str
    tensor: str
    source: str
    source_layout: str
    source_shape: tuple[int, ...]
    shape: tuple[int, ...]
    transform: str
    values: str
    status: str


@dataclass(frozen=True)
class PaddingCheck:
    """A convolution's padding in the source against what the Keras layer computes.

    ``keras`` and ``source`` are (top, bottom, left, right), or (left, right)
    for 1-D; ``keras`` includes a ZeroPadding layer directly before the layer.
    """

    layer: str
    keras: tuple[int, ...] | None
    source: tuple[int, ...] | None
    rule: str
    status: str  # "match", "mismatch", "padded explicitly", "not checked: ..."


def frame(records: tuple[Any, ...], kind: type) -> pd.DataFrame:
    import pandas as pd

    columns = [f.name for f in fields(kind)]
    return pd.DataFrame([asdict(r) for r in records], columns=columns)


@dataclass(frozen=True, eq=False)
class LoadReport:
    """The result of :func:`qextract.load_weights`.

    ``model`` received the weights: your model, or with ``pad_explicitly=True``
    a new one. ``table()`` has one row per :class:`Placement`,
    ``padding_table()`` one per :class:`PaddingCheck`.
    """

    model: Any
    source: str
    source_kind: str
    placements: tuple[Placement, ...]
    paddings: tuple[PaddingCheck, ...] = ()

    def table(self) -> pd.DataFrame:
        return frame(self.placements, Placement)

    def padding_table(self) -> pd.DataFrame:
        return frame(self.paddings, PaddingCheck)

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.placements)

    def __repr__(self) -> str:
        layers = len({p.layer for p in self.placements if p.status == ASSIGNED})
        padded = sum(p.status == "padded explicitly" for p in self.paddings)
        extra = f", {padded} layer(s) padded explicitly" if padded else ""
        return (
            f"LoadReport({self.source_kind} '{self.source}' -> model '{self.model.name}': "
            f"{self.count(ASSIGNED)} tensors "
            f"in {layers} layers assigned, {self.count(KEPT)} kept, {self.count(UNUSED)} unused{extra})"
        )
