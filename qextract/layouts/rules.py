"""The layout table: what every layout is, and where each layer kind's tensors go in it.

Everything qextract knows about layouts is data in this module; the other
modules of :mod:`qextract.layouts` only compile and apply it. A pattern is
written like an einops pattern: letters name axes (:data:`AXIS_MEANINGS`),
letters in parentheses are merged into one axis (row-major, so ``(C M)`` has
index ``c*M + m``) and ``1`` is an inserted unit axis.

Adding a layout is one :class:`LayoutRule` in :data:`LAYOUT_RULES`: its name,
aliases and the result pattern of every rule of :data:`NATIVE` it moves. A
Dense kernel fed by Flatten needs no pattern of its own: it follows the
layout's ``conv2d`` pattern (see :mod:`qextract.layouts.recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kinds import Kind

NATIVE: dict[str, str] = {
    "dense": "I O",
    "conv1d": "K I O",
    "conv2d": "H W I O",
    "depthwise1d": "K C M",
    "depthwise2d": "H W C M",
    "transpose2d": "H W O I",
    "rnn_kernel": "I G",
    "rnn_recurrent": "U G",
    "rnn_bias": "G",
    "gru_bias": "B G",
    "bias": "O",
    "vector": "N",
}
"""Every rule's native (Keras) axes; the native rank is the number of groups."""


@dataclass(frozen=True)
class LayoutRule:
    """One layout: its name, the other names it answers to, and where it moves each rule's axes.

    ``moves`` maps a rule of :data:`NATIVE` to its result pattern; a rule it
    does not name (a bias, a vector) keeps its native order.
    """

    name: str
    aliases: tuple[str, ...]
    means: str
    moves: dict[str, str]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.moves) - set(NATIVE))
        if unknown:
            raise ValueError(f"layout {self.name}: no native pattern for rule(s) {', '.join(unknown)}")

    def pattern(self, rule: str) -> str:
        return self.moves.get(rule, NATIVE[rule])


LAYOUT_RULES: tuple[LayoutRule, ...] = (
    LayoutRule("hwio", ("keras", "native", "tf"), "Keras native", {}),
    LayoutRule(
        "ohwi", ("tflite",), "TFLite",
        {"dense": "O I", "conv1d": "O K I", "conv2d": "O H W I", "depthwise1d": "1 K (C M)",
         "depthwise2d": "1 H W (C M)", "transpose2d": "O H W I", "rnn_kernel": "G I", "rnn_recurrent": "G U"},
    ),
    LayoutRule(
        "oihw", ("pytorch", "torch", "onnx", "caffe"), "PyTorch/ONNX/Caffe",
        {"dense": "O I", "conv1d": "O I K", "conv2d": "O I H W", "depthwise1d": "(C M) 1 K",
         "depthwise2d": "(C M) 1 H W", "transpose2d": "I O H W", "rnn_kernel": "G I", "rnn_recurrent": "G U"},
    ),
)  # fmt: skip
"""The layouts, in the order the CLI offers them; the first is Keras's own."""

_CONV_BIAS = {"bias": ("bias",)}
_RNN = {"kernel": ("rnn_kernel",), "recurrent_kernel": ("rnn_recurrent",), "bias": ("rnn_bias", "gru_bias")}
# Keyed by Kind members; typed by str because a kind is a str and lookups come with plain strings.
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
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
"""Layer kind -> tensor -> candidate rules, chosen by the tensor's rank.

Every kind has an entry ({}: no layout applies).
"""

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
"""What each letter of an ``axes`` string means."""
