"""A layout plan: one tensor's move into a layout, worked out once for its native shape and reused.

:meth:`LayoutPlan.of` parses ``(kind, tensor, layout, native shape[,
flatten_shape, dense_as_conv])`` once (cached) into the sizes of every letter
and the three steps reshape -> transpose -> reshape; :meth:`~LayoutPlan.apply`
runs them, :meth:`~LayoutPlan.invert` runs them backwards, so
``plan.invert(plan.apply(x)) == x`` bit for bit. :attr:`~LayoutPlan.axes`
names the result's axes, :meth:`~LayoutPlan.move_scale` moves a per-channel
scale with its axis. The functions below the class are the same operations
for one call each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import LayoutError
from .layout import Layout
from .recipe import Group, Recipe, flatten_recipe, select

_FLATTEN_LETTERS = {"I": "C", "K": "L"}  # recipe letters -> the letters of a flattened activation
_PLANS = 4096  # plans kept: more distinct tensors than any model has


@dataclass(frozen=True, eq=False)
class LayoutPlan:
    """How one tensor of one native shape moves into ``layout``.

    >>> plan = LayoutPlan.of("depthwise_conv2d", "depthwise_kernel", "oihw", (3, 3, 2, 4))
    >>> plan.shape, plan.axes
    ((8, 1, 3, 3), 'O1HW')
    >>> plan.move_scale(np.array([1.0, 2.0, 3.0, 4.0]), 3)  # per multiplier, tiled over C=2
    (array([1., 2., 3., 4., 1., 2., 3., 4.]), 0)
    """

    kind: str
    tensor: str
    layout: Layout
    native_shape: tuple[int, ...]
    flatten_shape: tuple[int, ...] | None
    dense_as_conv: bool
    recipe: Recipe = field(repr=False)
    sizes: dict[str, int] = field(repr=False)  # the size of every letter
    shape: tuple[int, ...] = ()  # the laid-out shape

    @classmethod
    def of(
        cls,
        kind: str,
        tensor: str,
        layout: str | Layout,
        native_shape: tuple[int, ...],
        *,
        flatten_shape: tuple[int, ...] | None = None,
        dense_as_conv: bool = True,
    ) -> LayoutPlan:
        """The plan for tensor ``tensor`` of a ``kind`` layer, ``native_shape`` in Keras's own layout.

        ``flatten_shape=(H, W, C)`` (the shape a channels_last Flatten
        receives) marks a Dense kernel fed by Flatten: it is laid out in
        convolution form ``(H,W,C,O)`` / ``(O,H,W,C)`` / ``(O,C,H,W)``, or with
        ``dense_as_conv=False`` as a matrix whose input axis follows
        :attr:`flatten_order` (``oihw``: PyTorch's NCHW flatten order).
        Raises LayoutError when the shape does not fit the kind.
        """
        fs = None if flatten_shape is None else tuple(int(d) for d in flatten_shape)
        return _plan(kind, tensor, Layout.parse(layout), tuple(int(d) for d in native_shape), fs, bool(dense_as_conv))

    @property
    def axes(self) -> str:
        """Letters naming each axis of the laid-out tensor (see :data:`~qextract.layouts.AXIS_MEANINGS`)."""
        return self.recipe.labels

    @property
    def flatten_order(self) -> str | None:
        """A Dense kernel fed by Flatten: the order of its flat input (``"HWC"``, ``"CHW"``...); else None."""
        return _flatten_order(self.recipe) if self.recipe.flattened else None

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``array`` (native layout, :attr:`native_shape`) rearranged into the layout, C-contiguous."""
        array = np.asarray(array)
        if array.shape != self.native_shape:
            raise LayoutError(
                f"{self.kind} tensor '{self.tensor}' has shape {array.shape}; "
                f"this plan lays out native shape {self.native_shape}"
            )
        expanded = [self.sizes[letter] for letter in self.recipe.native_letters]
        return np.ascontiguousarray(array.reshape(expanded).transpose(self.recipe.perm).reshape(self.shape))

    def invert(self, array: np.ndarray) -> np.ndarray:
        """The exact inverse of :meth:`apply`: ``array`` in the layout back to :attr:`native_shape`."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise LayoutError(
                f"{self.kind} tensor '{self.tensor}' in layout {self.layout} has shape {array.shape}; "
                f"expected {self.shape} ({self.axes}) for native shape {self.native_shape}"
            )
        expanded = [self.sizes[letter] for letter in self.recipe.out_letters]
        inverse = np.argsort(self.recipe.perm)
        return np.ascontiguousarray(array.reshape(expanded).transpose(inverse).reshape(self.native_shape))

    def scale_axis(self, native_axis: int | None) -> int | None:
        """The axis of the laid-out tensor that holds native axis ``native_axis`` (None stays None)."""
        if native_axis is None:
            return None
        return _scale_group(self.recipe, self.kind, self.tensor, len(self.native_shape), native_axis)[0]

    def move_scale(self, scale: np.ndarray, native_axis: int | None) -> tuple[np.ndarray, int | None]:
        """``(scale, axis)`` for the laid-out tensor.

        A per-tensor scale (shape ``()``) is returned unchanged with axis None. A
        per-channel scale moves with its axis; on a merged axis it is expanded so
        that element ``k`` of the merged axis gets its own entry, e.g. a depthwise
        per-multiplier scale on ``(C M)`` becomes ``np.tile(scale, C)``
        (index ``c*M + m``); on a reordered merged axis (a Dense kernel's rows in
        another flatten order) it is reordered alike.
        """
        scale = np.asarray(scale)
        if scale.ndim == 0 or native_axis is None:
            return scale, None
        recipe, sizes = self.recipe, self.sizes
        index, native = _scale_group(recipe, self.kind, self.tensor, len(self.native_shape), native_axis)
        size = math.prod(sizes[g] for g in native)
        if scale.ndim != 1 or scale.size not in (1, size):
            raise LayoutError(
                f"{self.kind} tensor '{self.tensor}' of shape {self.native_shape}: scale of shape {scale.shape} "
                f"does not run along axis {native_axis} (size {size})"
            )
        group = recipe.out[index]
        if len(group) == 1:
            return scale, index
        if len(native) > 1:  # the same letters in another order
            full = np.broadcast_to(scale, (size,)).reshape([sizes[g] for g in native])
            moved = full.transpose([native.index(g) for g in group])
            return np.ascontiguousarray(moved.reshape(-1)), index
        along = [-1 if g == native[0] else 1 for g in group]
        expanded = np.broadcast_to(scale.reshape(along), [sizes[g] for g in group]).reshape(-1)
        return np.ascontiguousarray(expanded), index


@lru_cache(maxsize=_PLANS)
def _plan(
    kind: str, name: str, layout: Layout, shape: tuple[int, ...], fs: tuple[int, ...] | None, conv: bool
) -> LayoutPlan:
    recipe = select(kind, name, layout, len(shape), None if fs is None else len(fs), conv, shape)
    sizes: dict[str, int] = {}
    for axis, (group, dim) in enumerate(zip(recipe.native, shape)):
        if not (recipe.flattened and axis == 0):
            sizes[group[0]] = int(dim)
        elif fs is not None and math.prod(fs) == dim:
            sizes.update(zip(group, fs))
        else:
            raise LayoutError(
                f"{kind} tensor '{name}' of shape {shape} does not fit flatten_shape {fs}: "
                f"{math.prod(fs or ())} inputs != {dim} rows; pass the shape Flatten receives (H,W,C)"
            )
    out_shape = tuple(math.prod(sizes[letter] for letter in group) for group in recipe.out)
    return LayoutPlan(kind, name, layout, shape, fs, conv, recipe, sizes, out_shape)


def clear_cache() -> None:
    """Forget every cached plan (they are bounded, so this is needed only to free memory at once)."""
    _plan.cache_clear()


def _scale_group(recipe: Recipe, kind: str, name: str, ndim: int, axis: int) -> tuple[int, Group]:
    """The result axis a per-channel scale along native ``axis`` lands on, and that native axis's letters.

    A merged native axis (a Flatten output) can carry a scale only where the
    result keeps it as one axis, merely reordered (a Dense kernel's rows).
    """
    if not -ndim <= axis < ndim:
        raise LayoutError(f"{kind} tensor '{name}': scale axis {axis} is out of range for rank {ndim}")
    group = recipe.native[axis % ndim]
    if len(group) == 1:
        return recipe.group_of(group[0]), group
    same = [i for i, out in enumerate(recipe.out) if sorted(out) == sorted(group)]
    if not same:
        raise LayoutError(
            f"{kind} tensor '{name}': a per-channel scale along the flattened input axis cannot follow "
            "the reshape to convolution form; export it without dense_as_conv"
        )
    return same[0], group


# --- one call each ---------------------------------------------------------------------


def to_layout(
    kind: str,
    tensor_name: str,
    array: np.ndarray,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> np.ndarray:
    """``array`` (native Keras layout) rearranged into ``layout``, C-contiguous: :meth:`LayoutPlan.apply`."""
    array = np.asarray(array)
    plan = LayoutPlan.of(
        kind, tensor_name, layout, array.shape, flatten_shape=flatten_shape, dense_as_conv=dense_as_conv
    )
    return plan.apply(array)


def from_layout(
    kind: str,
    tensor_name: str,
    array: np.ndarray,
    layout: str | Layout,
    native_shape: tuple[int, ...],
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> np.ndarray:
    """The exact inverse of :func:`to_layout`: ``array`` in ``layout`` back to ``native_shape``.

    The same as :meth:`LayoutPlan.invert`.
    """
    plan = LayoutPlan.of(
        kind, tensor_name, layout, native_shape, flatten_shape=flatten_shape, dense_as_conv=dense_as_conv
    )
    return plan.invert(array)


def axes(
    kind: str,
    tensor_name: str,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
    dense_as_conv: bool = True,
) -> str:
    """Letters naming each axis of the tensor in ``layout`` (see :data:`~qextract.layouts.AXIS_MEANINGS`).

    ``ndim`` (the native rank) is needed only where a tensor's rank varies:
    a GRU bias ``(3u,)`` or ``(2, 3u)``, and tensors no layout applies to.
    No shape is needed: this is :attr:`LayoutPlan.axes` of any plan for that rank.

    >>> axes("conv2d", "kernel", "ohwi"), axes("depthwise_conv2d", "depthwise_kernel", "hwio")
    ('OHWI', 'HWCM')
    """
    fs = None if flatten_shape is None else len(tuple(flatten_shape))
    return select(kind, tensor_name, Layout.parse(layout), ndim, fs, dense_as_conv).labels


def scale_axis(
    kind: str,
    tensor_name: str,
    layout: str | Layout,
    native_ndim: int,
    native_axis: int | None,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> int | None:
    """The axis of the laid-out tensor that holds native axis ``native_axis`` (None stays None).

    The axis may be a merged one: a depthwise per-multiplier scale (native
    axis M) lands on the ``C*M`` axis, where it must be expanded with
    :func:`layout_scale`. No shape is needed: this is :meth:`LayoutPlan.scale_axis` of any plan for that rank.
    """
    if native_axis is None:
        return None
    fs = None if flatten_shape is None else len(tuple(flatten_shape))
    recipe = select(kind, tensor_name, Layout.parse(layout), native_ndim, fs, dense_as_conv)
    return _scale_group(recipe, kind, tensor_name, native_ndim, native_axis)[0]


def layout_scale(
    kind: str,
    tensor_name: str,
    layout: str | Layout,
    scale: np.ndarray,
    native_shape: tuple[int, ...],
    native_axis: int | None,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> tuple[np.ndarray, int | None]:
    """``(scale, axis)`` for the laid-out tensor: :meth:`LayoutPlan.move_scale`."""
    scale = np.asarray(scale)
    if scale.ndim == 0 or native_axis is None:
        return scale, None
    plan = LayoutPlan.of(
        kind, tensor_name, layout, native_shape, flatten_shape=flatten_shape, dense_as_conv=dense_as_conv
    )
    return plan.move_scale(scale, native_axis)


def flatten_order(layout: str | Layout, flatten_shape: tuple[int, ...], *, dense_as_conv: bool = True) -> str:
    """The order of the flattened activation a Dense kernel fed by Flatten expects, e.g. ``"HWC"`` or ``"CHW"``.

    Letters: C channels, L length, D depth, H rows, W columns, in the order
    their indices run in the flat input vector (the last fastest). hwio and
    ohwi keep Keras's channels-last order (``"HWC"``); oihw uses the
    channels-first order that PyTorch's and ONNX's Flatten of an NCHW tensor
    produce (``"CHW"``), with or without ``dense_as_conv``.

    >>> flatten_order("oihw", (4, 4, 16)), flatten_order("ohwi", (8, 3))
    ('CHW', 'LC')
    """
    recipe = flatten_recipe(Layout.parse(layout), len(tuple(flatten_shape)), dense_as_conv)
    return _flatten_order(recipe)


def _flatten_order(recipe: Recipe) -> str:
    return "".join(_FLATTEN_LETTERS.get(letter, letter) for letter in recipe.out_letters if letter != "O")
