"""Patterns compiled into recipes: which native axes are split, permuted and merged into which result axes.

A :class:`Recipe` depends only on the layer kind, the tensor, the layout and
the tensor's rank (and, for a Dense kernel fed by Flatten, the rank of what
Flatten received): it is compiled once and cached. Sizes enter only when a
:class:`~qextract.layouts.LayoutPlan` is made for one native shape.

A Dense kernel fed by Flatten follows the layout's ``conv2d`` pattern, its
``H W`` replaced by the spatial axes of what Flatten received (none, ``K``,
``H W`` or ``D H W``): in convolution form that is the pattern itself, as a
matrix every letter but ``O`` is merged into one input axis. So ``oihw``
(``O I H W``) orders a flat input channels first, as PyTorch and ONNX flatten
NCHW tensors, while hwio and ohwi keep Keras's channels-last order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import LayoutError
from .layout import Layout
from .rules import KINDS, NATIVE

Group = tuple[str, ...]  # letters merged into one axis; () is a unit axis


@dataclass(frozen=True)
class Recipe:
    """Native axis groups -> result axis groups, with the letter naming each result axis."""

    native: tuple[Group, ...]
    out: tuple[Group, ...]
    labels: str  # one letter per result axis
    flattened: bool = False  # native axis 0 is a Flatten output: its letters take flatten_shape's sizes

    @property
    def native_letters(self) -> tuple[str, ...]:
        return tuple(letter for group in self.native for letter in group)

    @property
    def out_letters(self) -> tuple[str, ...]:
        return tuple(letter for group in self.out for letter in group)

    @property
    def perm(self) -> tuple[int, ...]:
        native = self.native_letters
        return tuple(native.index(letter) for letter in self.out_letters)

    def group_of(self, letter: str) -> int:
        return next(i for i, group in enumerate(self.out) if letter in group)


def groups(pattern: str) -> tuple[Group, ...]:
    """``"1 H W (C M)"`` -> ``((), ("H",), ("W",), ("C", "M"))``."""
    found: list[Group] = []
    for merged, single in re.findall(r"\(([^)]*)\)|(\S+)", pattern):
        found.append(() if single == "1" else (single,) if single else tuple(merged.split()))
    return tuple(found)


def _label(group: Group) -> str:
    if not group:
        return "1"
    if len(group) == 1:
        return group[0]
    assert group == ("C", "M"), group  # the only merge a result has: depthwise channels
    return "O"


@lru_cache(maxsize=256)
def compile_recipe(native: str, out: str, labels: str | None = None, flattened: bool = False) -> Recipe:
    native_groups, out_groups = groups(native), groups(out)
    recipe = Recipe(native_groups, out_groups, labels or "".join(_label(g) for g in out_groups), flattened)
    assert sorted(recipe.native_letters) == sorted(recipe.out_letters), (native, out)
    return recipe


_SPATIAL = ("", "K", "H W", "D H W")  # what Flatten received, by rank: (C,), (L,C), (H,W,C), (D,H,W,C)


def flatten_recipe(layout: Layout, rank: int, conv: bool) -> Recipe:
    """A Dense kernel fed by Flatten: in convolution form, or as a matrix whose rows follow the layout's flatten order.

    Keras flattens channels last, so the native rows run (spatial..., C); the
    result follows the layout's ``conv2d`` pattern (see the module docstring).
    """
    if not 1 <= rank <= len(_SPATIAL):
        raise LayoutError(f"flatten_shape must have 1 to 4 entries ((C,), (L,C), (H,W,C) or (D,H,W,C)), not {rank}")
    spatial = _SPATIAL[rank - 1]
    native = f"({spatial} I) O"
    conv_form = layout.rule.pattern("conv2d").replace("H W", spatial)
    if conv:
        return compile_recipe(native, conv_form, flattened=True)
    letters = conv_form.split()
    inputs = " ".join(letter for letter in letters if letter != "O")
    out = f"({inputs}) O" if letters[-1] == "O" else f"O ({inputs})"
    return compile_recipe(native, out, "IO" if letters[-1] == "O" else "OI", flattened=True)


def _unchanged(ndim: int) -> Recipe:
    letters = " ".join("abcdefghijklmnopqrstuvwxyz"[:ndim])
    return compile_recipe(letters, letters, "N" if ndim == 1 else "X" * ndim)


def _short(name: str) -> str:
    """Bidirectional tensors are named ``forward/kernel``: the last component decides."""
    return name.rsplit("/", 1)[-1]


def select(
    kind: str,
    name: str,
    layout: Layout,
    ndim: int | None,
    flatten_rank: int | None = None,
    conv: bool = True,
    shape: tuple[int, ...] | None = None,
) -> Recipe:
    """The recipe for tensor ``name`` of a ``kind`` layer of rank ``ndim`` (None: a fixed-rank tensor's only one).

    ``flatten_rank`` is the rank of what Flatten received (a Dense kernel fed
    by Flatten), ``conv`` its convolution form; ``shape`` only words the error.
    """
    what = f"shape {shape}" if shape is not None else f"rank {ndim}"
    if flatten_rank is not None and kind != "dense":
        raise LayoutError(f"{kind} tensor '{name}': flatten_shape applies only to a dense layer fed by Flatten")
    candidates = KINDS.get(kind, {}).get(_short(name))
    if candidates is None:  # unknown kind or tensor: no layout applies
        return _unchanged(1 if ndim is None else ndim)
    if flatten_rank is not None and candidates == ("dense",):
        recipe = flatten_recipe(layout, flatten_rank, conv)
        if ndim is not None and ndim != 2:
            raise LayoutError(f"dense tensor '{name}' has {what}; expected rank 2 (I,O)")
        return recipe
    for rule in candidates:
        recipe = compile_recipe(NATIVE[rule], layout.rule.pattern(rule))
        if ndim is None or len(recipe.native) == ndim:
            return recipe
    expected = " or ".join(f"rank {len(groups(NATIVE[r]))} ({','.join(NATIVE[r].split())})" for r in candidates)
    raise LayoutError(f"{kind} tensor '{name}' has {what}; expected {expected}")
