"""Laid-out tensors: a :class:`~qextract.tensor.QuantizedTensor` moved into a layout by one plan, ready for a writer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import LayoutError
from ..numformat import NumberFormat
from ..tensor import CodedArray, QuantizedTensor
from .layout import Layout
from .plan import LayoutPlan, flatten_order


@dataclass(frozen=True, eq=False, repr=False)
class ExportedTensor(CodedArray):
    """A :class:`~qextract.tensor.QuantizedTensor` rearranged into one layout, ready for a writer.

    ``values``, ``raw``, ``codes`` and ``signs`` share the layout and shape;
    ``scale`` (shape ``()`` or ``(N,)``) runs along ``scale_axis`` of them, so
    ``decode()`` reproduces ``values`` bit for bit.
    """

    layer: str
    layer_class: str
    kind: str
    name: str
    layout: Layout
    axes: str
    values: np.ndarray
    raw: np.ndarray | None
    format: NumberFormat
    codes: np.ndarray | None = None
    signs: np.ndarray | None = None
    scale: np.ndarray = field(default_factory=lambda: np.ones((), np.float32))
    scale_axis: int | None = None
    quantizer_str: str | None = None
    native_shape: tuple[int, ...] = ()
    flatten_order: str | None = (
        None  # laid out with a flatten_shape (a Dense fed by Flatten): see :func:`flatten_order`
    )


def lay_out(
    tensor: QuantizedTensor,
    kind: str,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> ExportedTensor:
    """``tensor`` in ``layout``: values, raw, codes and signs moved alike by one plan, the scale moved or expanded.

    ``flatten_shape`` and ``dense_as_conv`` as for :meth:`LayoutPlan.of`; the
    result's ``flatten_order`` then says which flatten order its inputs follow.
    Raises LayoutError naming the layer when the tensor does not fit ``kind``.
    """
    lay = Layout.parse(layout)
    name, native_shape = tensor.name, tuple(tensor.values.shape)
    parts = {"raw": tensor.raw, "codes": tensor.codes, "signs": tensor.signs}
    try:
        mismatched = [f"{k} {np.shape(v)}" for k, v in parts.items() if v is not None and np.shape(v) != native_shape]
        if mismatched:
            raise LayoutError(f"{kind} tensor '{name}': values {native_shape} but {', '.join(mismatched)}")
        plan = LayoutPlan.of(kind, name, lay, native_shape, flatten_shape=flatten_shape, dense_as_conv=dense_as_conv)

        def move(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else plan.apply(array)

        scale, axis = plan.move_scale(tensor.scale, tensor.scale_axis)
        return ExportedTensor(
            layer=tensor.layer,
            layer_class=tensor.layer_class,
            kind=kind,
            name=name,
            layout=lay,
            axes=plan.axes,
            values=plan.apply(np.asarray(tensor.values, np.float32)),
            raw=move(None if tensor.raw is None else np.asarray(tensor.raw, np.float32)),
            format=tensor.format,
            codes=move(tensor.codes),
            signs=move(tensor.signs),
            scale=scale,
            scale_axis=axis,
            quantizer_str=tensor.quantizer_str,
            native_shape=native_shape,
            flatten_order=None
            if flatten_shape is None
            else flatten_order(lay, flatten_shape, dense_as_conv=dense_as_conv),
        )
    except LayoutError as err:
        raise LayoutError(f"layer '{tensor.layer}' ({tensor.layer_class}): {err}") from None
