"""Weight layouts per layer kind: Keras native (hwio), TFLite (ohwi), PyTorch/ONNX/Caffe (oihw).

Every (layer kind, tensor, layout) is a recipe written like an einops pattern
(the table is :mod:`qextract.layouts.rules`): the native axes, then the axes of
the result. Letters in parentheses are merged into one axis (row-major, so
``(C M)`` has index ``c*M + m``) and ``1`` is an inserted unit axis::

    depthwise kernel  native "H W C M"  ->  ohwi "1 H W (C M)"  = (1, H, W, C*M)

A recipe is compiled once (:mod:`qextract.layouts.recipe`); a
:class:`LayoutPlan` adds one native shape's sizes and is cached too. Its
:meth:`~LayoutPlan.apply` is reshape -> transpose -> reshape and its exact
inverse :meth:`~LayoutPlan.invert` runs the same three steps backwards, so
``from_layout(to_layout(x)) == x`` bit for bit.

Recurrent kernels (``simple_rnn``, ``lstm``, ``gru``, ``bidirectional``)
``(I, gates*units)`` become ``(gates*units, I)`` in ohwi and oihw (PyTorch's
``weight_ih`` shape) but keep the Keras gate order (LSTM i,f,c,o; GRU z,r,h):
gates are *not* reordered to PyTorch's or ONNX's order.

A Dense kernel fed by Flatten has rows in the order of the flat input it
multiplies, and frameworks flatten differently: Keras (and TFLite) flatten a
channels-last (H,W,C) activation as it lies, PyTorch and ONNX flatten NCHW
tensors channels first. So every layout records the order its rows follow
(:func:`flatten_order`, the manifest's ``flatten_order``): ``hwio`` and
``ohwi`` keep Keras's ``"HWC"``; ``oihw`` reorders the input axis of ``(O, I)``
to ``"CHW"``, so that ``x.transpose(0, 3, 1, 2).reshape(N, -1) @ kernel.T``
is the layer's output, with or without ``dense_as_conv`` (which splits the
input axis into ``(O, C, H, W)``). Every flatten rank alike: (C,) -> "C",
(L,C) -> "CL", (H,W,C) -> "CHW", (D,H,W,C) -> "CDHW" in oihw.

>>> LayoutPlan.of("conv2d", "kernel", "ohwi", (3, 3, 2, 8)).apply(np.zeros((3, 3, 2, 8))).shape
(8, 3, 3, 2)
>>> axes("depthwise_conv2d", "depthwise_kernel", "oihw")
'O1HW'
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (the doctests above use it)

from ..errors import LayoutError
from .layout import LAYOUTS, Layout
from .plan import LayoutPlan, axes, clear_cache, flatten_order, from_layout, layout_scale, scale_axis, to_layout
from .rules import AXIS_MEANINGS
from .tensor import ExportedTensor, lay_out

__all__ = [
    "AXIS_MEANINGS",
    "LAYOUTS",
    "ExportedTensor",
    "Layout",
    "LayoutError",
    "LayoutPlan",
    "axes",
    "clear_cache",
    "flatten_order",
    "from_layout",
    "lay_out",
    "layout_scale",
    "scale_axis",
    "to_layout",
]
