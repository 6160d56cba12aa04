"""Layer kinds: what a layer computes, as layouts, the manifest and verification know it.

A kind groups layer classes that hold the same tensors in the same native
layout and compute the same function: ``QConv2D``, ``QConv2DBatchnorm`` and
a plain ``Conv2D`` are all :attr:`Kind.CONV2D`. Each layer entry of
:mod:`qextract.layers` names its kind; :mod:`qextract.layouts` has a layout
rule and :mod:`qextract.verification.recomputation` a route for every kind (tests fail
otherwise).

A kind is a ``str`` as well, equal to its value, so manifests and tables
keep their strings (``"conv2d"``) and a kind read back from a manifest
compares equal to the member:

>>> Kind.CONV2D == "conv2d", f"{Kind.DEPTHWISE_CONV2D}", find_kind("lstm")
(True, 'depthwise_conv2d', <Kind.LSTM: 'lstm'>)
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    """The kind of a layer; its value is the string manifests and tables carry."""

    DENSE = "dense"
    CONV1D = "conv1d"
    CONV2D = "conv2d"
    CONV2D_TRANSPOSE = "conv2d_transpose"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    SEPARABLE_CONV1D = "separable_conv1d"
    SEPARABLE_CONV2D = "separable_conv2d"
    BATCHNORM = "batchnorm"
    POOLING = "pooling"  # average pooling with a quantized 1/area multiplier
    SIMPLE_RNN = "simple_rnn"
    LSTM = "lstm"
    GRU = "gru"
    BIDIRECTIONAL = "bidirectional"
    ACTIVATION = "activation"  # a layer that is nothing but a quantized activation
    OTHER = "other"  # a plain Keras layer without a layout rule: its weights are floats, left as they are

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f"{kind}" is the value on every Python version
        return format(self.value, spec)


def find_kind(text: str) -> Kind | None:
    """The kind whose value is ``text`` (a manifest's ``kind``), or None for a string no kind has."""
    try:
        return Kind(text)
    except ValueError:
        return None
