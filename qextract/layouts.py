"""Weight layouts per layer kind: Keras native (hwio), TFLite (ohwi), PyTorch/ONNX/Caffe (oihw).

Every (layer kind, tensor, layout) is a recipe written like an einops pattern:
the native axes, then the axes of the result. Letters in parentheses are
merged into one axis (row-major, so ``(C M)`` has index ``c*M + m``) and
``1`` is an inserted unit axis::

    depthwise kernel  native "H W C M"  ->  ohwi "1 H W (C M)"  = (1, H, W, C*M)

A recipe is parsed once (cached) and applied as reshape -> transpose ->
reshape; its exact inverse runs the same three steps backwards, so
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

>>> to_layout("conv2d", "kernel", np.zeros((3, 3, 2, 8)), "ohwi").shape
(8, 3, 3, 2)
>>> axes("depthwise_conv2d", "depthwise_kernel", "oihw")
'O1HW'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .errors import LayoutError
from .kinds import Kind, find_kind
from .numformat import NumberFormat
from .tensor import CodedArray, QuantizedTensor

LAYOUTS = ("hwio", "ohwi", "oihw")
"""Layout names, in the order the CLI offers them."""

_ALIASES = {
    "hwio": "hwio", "keras": "hwio", "native": "hwio", "tf": "hwio",
    "ohwi": "ohwi", "tflite": "ohwi",
    "oihw": "oihw", "pytorch": "oihw", "torch": "oihw", "onnx": "oihw", "caffe": "oihw",
}  # fmt: skip

AXIS_MEANINGS: dict[str, str] = {
    "O": "output channels (depthwise kernel in ohwi/oihw: C*M, index c*M+m)",
    "I": "input channels (a Dense fed by Flatten: its flat inputs, in the layer's flatten_order)",
    "H": "kernel rows",
    "W": "kernel columns",
    "K": "kernel width of a 1-D convolution",
    "D": "kernel depth of a 3-D convolution (a Dense fed by Flatten of (D,H,W,C))",
    "C": "input channels of a depthwise kernel",
    "M": "depth multiplier",
    "G": "gates*units of a recurrent layer, Keras gate order (LSTM i,f,c,o; GRU z,r,h)",
    "U": "units (recurrent state) feeding a recurrent kernel",
    "B": "bias set of a GRU with reset_after (0: input, 1: recurrent)",
    "N": "vector length",
    "1": "unit axis (size 1)",
    "X": "axis of a tensor no layout applies to (left unchanged)",
}
"""What each letter of :func:`axes` means."""


@dataclass(frozen=True)
class Layout:
    """A target weight layout: ``hwio`` (Keras native), ``ohwi`` (TFLite), ``oihw`` (PyTorch/ONNX/Caffe).

    Build it with :meth:`parse`, which accepts the names, their aliases
    (``keras``, ``tflite``, ``pytorch``, ``onnx``, ``caffe``), any case, and
    the arrow form in either direction: ``"HWIO->OHWI"`` (exporting) and
    ``"OHWI->HWIO"`` (importing) both give ``ohwi``. A Layout names the
    foreign arrangement; which way the arrays move is said by the function
    that takes it (:func:`to_layout` / :func:`from_layout`, ``export`` /
    ``load_weights``). One side of an arrow must be the native hwio.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise LayoutError(f"unknown layout {self.name!r}; choose one of {', '.join(LAYOUTS)}")

    @classmethod
    def parse(cls, spec: str | Layout) -> Layout:
        if isinstance(spec, Layout):
            return spec
        if not isinstance(spec, str):
            raise LayoutError(f"a layout is a string such as 'ohwi', not {type(spec).__name__}")
        return _parse_layout(spec)

    @property
    def native(self) -> bool:
        return self.name == "hwio"

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=None)
def _parse_layout(spec: str) -> Layout:
    choices = f"choose one of {', '.join(LAYOUTS)} (aliases: {', '.join(sorted(set(_ALIASES) - set(LAYOUTS)))})"
    text = spec.strip().lower()
    if "->" in text:
        source, _, target = (part.strip() for part in text.partition("->"))
        sides = [_ALIASES.get(source, source), _ALIASES.get(target, target)]
        if "hwio" not in sides:
            raise LayoutError(
                f"layout {spec!r}: one side must be the native hwio (Keras); qextract converts between "
                f"hwio and one other layout, not {source!r} to {target!r} directly"
            )
        text = target if sides[0] == "hwio" else source
    if text not in _ALIASES:
        raise LayoutError(f"unknown layout {spec!r}; {choices}")
    return Layout(_ALIASES[text])


# --- recipes ---------------------------------------------------------------------------

# name: (native pattern, {layout: result pattern}); the native rank is the number of native groups.
_RULES: dict[str, tuple[str, dict[str, str]]] = {
    "dense": ("I O", {"hwio": "I O", "ohwi": "O I", "oihw": "O I"}),
    "conv1d": ("K I O", {"hwio": "K I O", "ohwi": "O K I", "oihw": "O I K"}),
    "conv2d": ("H W I O", {"hwio": "H W I O", "ohwi": "O H W I", "oihw": "O I H W"}),
    "depthwise1d": ("K C M", {"hwio": "K C M", "ohwi": "1 K (C M)", "oihw": "(C M) 1 K"}),
    "depthwise2d": ("H W C M", {"hwio": "H W C M", "ohwi": "1 H W (C M)", "oihw": "(C M) 1 H W"}),
    "transpose2d": ("H W O I", {"hwio": "H W O I", "ohwi": "O H W I", "oihw": "I O H W"}),
    "rnn_kernel": ("I G", {"hwio": "I G", "ohwi": "G I", "oihw": "G I"}),
    "rnn_recurrent": ("U G", {"hwio": "U G", "ohwi": "G U", "oihw": "G U"}),
    "rnn_bias": ("G", {"hwio": "G", "ohwi": "G", "oihw": "G"}),
    "gru_bias": ("B G", {"hwio": "B G", "ohwi": "B G", "oihw": "B G"}),
    "bias": ("O", {"hwio": "O", "ohwi": "O", "oihw": "O"}),
    "vector": ("N", {"hwio": "N", "ohwi": "N", "oihw": "N"}),
}

_CONV_BIAS = {"bias": ("bias",)}
_RNN = {"kernel": ("rnn_kernel",), "recurrent_kernel": ("rnn_recurrent",), "bias": ("rnn_bias", "gru_bias")}
# kind -> tensor -> candidate rules (chosen by the tensor's rank); every kind has an entry, {}: no layout applies
_KINDS: dict[Kind, dict[str, tuple[str, ...]]] = {
    Kind.DENSE: {"kernel": ("dense",), **_CONV_BIAS},
    Kind.CONV1D: {"kernel": ("conv1d",), **_CONV_BIAS},
    Kind.CONV2D: {"kernel": ("conv2d",), **_CONV_BIAS},
    Kind.DEPTHWISE_CONV2D: {"depthwise_kernel": ("depthwise2d",), **_CONV_BIAS},
    Kind.SEPARABLE_CONV1D: {"depthwise_kernel": ("depthwise1d",), "pointwise_kernel": ("conv1d",), **_CONV_BIAS},
    Kind.SEPARABLE_CONV2D: {"depthwise_kernel": ("depthwise2d",), "pointwise_kernel": ("conv2d",), **_CONV_BIAS},
    Kind.CONV2D_TRANSPOSE: {"kernel": ("transpose2d",), **_CONV_BIAS},
    Kind.BATCHNORM: {name: ("vector",) for name in ("gamma", "beta", "moving_mean", "moving_variance")},
    Kind.SIMPLE_RNN: _RNN,
    Kind.LSTM: _RNN,
    Kind.GRU: _RNN,
    Kind.BIDIRECTIONAL: _RNN,  # tensors "forward/kernel", "backward/bias", ...: the last component decides
    Kind.POOLING: {},  # average_multiplier: a scalar
    Kind.ACTIVATION: {},  # no tensors
    Kind.OTHER: {},  # plain Keras floats qextract has no rule for: exported as they are
}

Group = tuple[str, ...]  # letters merged into one axis; () is a unit axis


@dataclass(frozen=True)
class _Recipe:
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


def _groups(pattern: str) -> tuple[Group, ...]:
    groups: list[Group] = []
    for merged, single in re.findall(r"\(([^)]*)\)|(\S+)", pattern):
        groups.append(() if single == "1" else (single,) if single else tuple(merged.split()))
    return tuple(groups)


def _label(group: Group) -> str:
    if not group:
        return "1"
    if len(group) == 1:
        return group[0]
    assert group == ("C", "M"), group  # the only merge a result has: depthwise channels
    return "O"


@lru_cache(maxsize=None)
def _compile(native: str, out: str, labels: str | None = None, flattened: bool = False) -> _Recipe:
    native_groups, out_groups = _groups(native), _groups(out)
    recipe = _Recipe(native_groups, out_groups, labels or "".join(_label(g) for g in out_groups), flattened)
    assert sorted(recipe.native_letters) == sorted(recipe.out_letters), (native, out)
    return recipe


def _flatten_recipe(layout: str, rank: int, conv: bool) -> _Recipe:
    """A Dense kernel fed by Flatten: in convolution form, or as a matrix whose rows follow the layout's flatten order.

    Keras flattens channels last, so the native rows run (spatial..., C). oihw
    is the layout of frameworks that flatten channels first (PyTorch, ONNX), so
    its rows run (C, spatial...) in either form; hwio and ohwi keep Keras's order.
    """
    spatial = ("", "K", "H W", "D H W")[rank - 1] if 1 <= rank <= 4 else None
    if spatial is None:
        raise LayoutError(f"flatten_shape must have 1 to 4 entries ((C,), (L,C), (H,W,C) or (D,H,W,C)), not {rank}")
    native = f"({spatial} I) O"
    if conv:
        out = {"hwio": f"{spatial} I O", "ohwi": f"O {spatial} I", "oihw": f"O I {spatial}"}[layout]
        return _compile(native, out, flattened=True)
    out = {"hwio": f"({spatial} I) O", "ohwi": f"O ({spatial} I)", "oihw": f"O (I {spatial})"}[layout]
    return _compile(native, out, "IO" if layout == "hwio" else "OI", flattened=True)


_FLATTEN_LETTERS = {"I": "C", "K": "L"}  # recipe letters -> the letters of a flattened activation


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
    recipe = _flatten_recipe(Layout.parse(layout).name, len(flatten_shape), dense_as_conv)
    return "".join(_FLATTEN_LETTERS.get(letter, letter) for letter in recipe.out_letters if letter != "O")


def _unchanged(ndim: int) -> _Recipe:
    letters = " ".join("abcdefghijklmnopqrstuvwxyz"[:ndim])
    return _compile(letters, letters, "N" if ndim == 1 else "X" * ndim)


def _short(name: str) -> str:
    """Bidirectional tensors are named ``forward/kernel``: the last component decides."""
    return name.rsplit("/", 1)[-1]


def _recipe(
    kind: str,
    name: str,
    layout: str | Layout,
    ndim: int | None,
    flatten_shape: tuple[int, ...] | None,
    shape: tuple[int, ...] | None = None,
    conv: bool = True,
) -> _Recipe:
    lay = Layout.parse(layout).name
    what = f"shape {shape}" if shape is not None else f"rank {ndim}"
    if flatten_shape is not None and kind != Kind.DENSE:
        raise LayoutError(f"{kind} tensor '{name}': flatten_shape applies only to a dense layer fed by Flatten")
    candidates = _KINDS[find_kind(kind) or Kind.OTHER].get(_short(name))
    if candidates is None:  # unknown kind or tensor: no layout applies
        return _unchanged(1 if ndim is None else ndim)
    if flatten_shape is not None and candidates == ("dense",):
        recipe = _flatten_recipe(lay, len(flatten_shape), conv)
        if ndim is not None and ndim != 2:
            raise LayoutError(f"dense tensor '{name}' has {what}; expected rank 2 (I,O)")
        return recipe
    for rule in candidates:
        native, outs = _RULES[rule]
        recipe = _compile(native, outs[lay])
        if ndim is None or len(recipe.native) == ndim:
            return recipe
    expected = " or ".join(f"rank {len(_groups(_RULES[r][0]))} ({','.join(_RULES[r][0].split())})" for r in candidates)
    raise LayoutError(f"{kind} tensor '{name}' has {what}; expected {expected}")


def _prepare(
    kind: str,
    name: str,
    layout: str | Layout,
    shape: tuple[int, ...],
    flatten_shape: tuple[int, ...] | None,
    conv: bool = True,
) -> tuple[_Recipe, dict[str, int], tuple[int, ...]]:
    """The recipe, the size of every letter and the result shape for a native ``shape``."""
    fs = None if flatten_shape is None else tuple(int(d) for d in flatten_shape)
    recipe = _recipe(kind, name, layout, len(shape), fs, tuple(shape), conv)
    sizes: dict[str, int] = {}
    for axis, (group, dim) in enumerate(zip(recipe.native, shape)):
        if not (recipe.flattened and axis == 0):
            sizes[group[0]] = int(dim)
        elif fs is not None and math.prod(fs) == dim:
            sizes.update(zip(group, fs))
        else:
            raise LayoutError(
                f"{kind} tensor '{name}' of shape {tuple(shape)} does not fit flatten_shape {fs}: "
                f"{math.prod(fs or ())} inputs != {dim} rows; pass the shape Flatten receives (H,W,C)"
            )
    out_shape = tuple(math.prod(sizes[letter] for letter in group) for group in recipe.out)
    return recipe, sizes, out_shape


# --- public functions ------------------------------------------------------------------


def to_layout(
    kind: str,
    tensor_name: str,
    array: np.ndarray,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> np.ndarray:
    """``array`` (native Keras layout) rearranged into ``layout``, C-contiguous.

    ``flatten_shape=(H, W, C)`` (the shape a channels_last Flatten receives)
    marks a Dense kernel fed by Flatten: it is exported in convolution form
    ``(H,W,C,O)`` / ``(O,H,W,C)`` / ``(O,C,H,W)``, or with
    ``dense_as_conv=False`` as a matrix whose input axis follows
    :func:`flatten_order` (``oihw``: PyTorch's NCHW flatten order).
    Raises LayoutError when the shape does not fit the kind.
    """
    array = np.asarray(array)
    recipe, sizes, out_shape = _prepare(kind, tensor_name, layout, array.shape, flatten_shape, dense_as_conv)
    expanded = [sizes[letter] for letter in recipe.native_letters]
    return np.ascontiguousarray(array.reshape(expanded).transpose(recipe.perm).reshape(out_shape))


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
    """The exact inverse of :func:`to_layout`: ``array`` in ``layout`` back to ``native_shape``."""
    array = np.asarray(array)
    recipe, sizes, out_shape = _prepare(kind, tensor_name, layout, tuple(native_shape), flatten_shape, dense_as_conv)
    if array.shape != out_shape:
        raise LayoutError(
            f"{kind} tensor '{tensor_name}' in layout {Layout.parse(layout)} has shape {array.shape}; "
            f"expected {out_shape} ({recipe.labels}) for native shape {tuple(native_shape)}"
        )
    expanded = [sizes[letter] for letter in recipe.out_letters]
    inverse = np.argsort(recipe.perm)
    return np.ascontiguousarray(array.reshape(expanded).transpose(inverse).reshape(native_shape))


def axes(
    kind: str,
    tensor_name: str,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
    dense_as_conv: bool = True,
) -> str:
    """Letters naming each axis of the tensor in ``layout`` (see :data:`AXIS_MEANINGS`).

    ``ndim`` (the native rank) is needed only where a tensor's rank varies:
    a GRU bias ``(3u,)`` or ``(2, 3u)``, and tensors no layout applies to.

    >>> axes("conv2d", "kernel", "ohwi"), axes("depthwise_conv2d", "depthwise_kernel", "hwio")
    ('OHWI', 'HWCM')
    """
    fs = None if flatten_shape is None else tuple(flatten_shape)
    return _recipe(kind, tensor_name, layout, ndim, fs, conv=dense_as_conv).labels


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
    :func:`layout_scale`.
    """
    if native_axis is None:
        return None
    fs = None if flatten_shape is None else tuple(flatten_shape)
    recipe = _recipe(kind, tensor_name, layout, native_ndim, fs, conv=dense_as_conv)
    return _scale_group(recipe, kind, tensor_name, native_ndim, native_axis)[0]


def _scale_group(recipe: _Recipe, kind: str, name: str, ndim: int, axis: int) -> tuple[int, Group]:
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
    recipe, sizes, _ = _prepare(kind, tensor_name, layout, tuple(native_shape), flatten_shape, dense_as_conv)
    index, native = _scale_group(recipe, kind, tensor_name, len(native_shape), native_axis)
    size = math.prod(sizes[g] for g in native)
    if scale.ndim != 1 or scale.size not in (1, size):
        raise LayoutError(
            f"{kind} tensor '{tensor_name}' of shape {tuple(native_shape)}: scale of shape {scale.shape} "
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


# --- laid-out tensors ------------------------------------------------------------------


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
    flatten_order: str | None = None  # a Dense kernel fed by Flatten: see :func:`flatten_order`


def lay_out(
    tensor: QuantizedTensor,
    kind: str,
    layout: str | Layout,
    *,
    flatten_shape: tuple[int, ...] | None = None,
    dense_as_conv: bool = True,
) -> ExportedTensor:
    """``tensor`` in ``layout``: values, raw, codes and signs moved alike, the scale moved or expanded.

    ``flatten_shape`` and ``dense_as_conv`` as for :func:`to_layout`; the
    result's ``flatten_order`` then says which flatten order its inputs follow.
    Raises LayoutError naming the layer when the tensor does not fit ``kind``.
    """
    lay = Layout.parse(layout)
    name, native_shape = tensor.name, tuple(tensor.values.shape)
    parts = {"raw": tensor.raw, "codes": tensor.codes, "signs": tensor.signs}
    flat = {"flatten_shape": flatten_shape, "dense_as_conv": dense_as_conv}

    def move(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else to_layout(kind, name, array, lay, **flat)

    try:
        mismatched = [f"{k} {np.shape(v)}" for k, v in parts.items() if v is not None and np.shape(v) != native_shape]
        if mismatched:
            raise LayoutError(f"{kind} tensor '{name}': values {native_shape} but {', '.join(mismatched)}")
        values = move(np.asarray(tensor.values, np.float32))
        scale, axis = layout_scale(kind, name, lay, tensor.scale, native_shape, tensor.scale_axis, **flat)
        return ExportedTensor(
            layer=tensor.layer,
            layer_class=tensor.layer_class,
            kind=kind,
            name=name,
            layout=lay,
            axes=axes(kind, name, lay, ndim=len(native_shape), **flat),
            values=values,  # type: ignore[arg-type]
            raw=move(None if tensor.raw is None else np.asarray(tensor.raw, np.float32)),
            format=tensor.format,
            codes=move(tensor.codes),
            signs=move(tensor.signs),
            scale=scale,
            scale_axis=axis,
            quantizer_str=tensor.quantizer_str,
            native_shape=native_shape,
            flatten_order=None if flatten_shape is None else flatten_order(lay, flatten_shape, dense_as_conv=dense_as_conv),
        )
    except LayoutError as err:
        raise LayoutError(f"layer '{tensor.layer}' ({tensor.layer_class}): {err}") from None
