"""Explicit padding from TensorFlow's rules, for flows that need four numbers.

TensorFlow's "same" pads ``pad_total = max((out-1)*s + (k-1)*d + 1 - in, 0)``
with the odd pixel at the end (bottom/right); Caffe and PyTorch pad
symmetrically, so a ported stride-2 layer would silently shift its output.
"""

from __future__ import annotations

import math


def same_pad(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one spatial axis under TensorFlow's "same"."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_pads(
    padding: str, sizes: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]
) -> list[tuple[int, int]]:
    """Per spatial axis (before, after) for a Keras ``padding`` of "same", "valid" or "causal"."""
    padding = padding.lower()
    if padding == "valid":
        return [(0, 0)] * len(sizes)
    if padding == "same":
        return [same_pad(n, k, s, d) for n, k, s, d in zip(sizes, kernel, strides, dilation)]
    if padding == "causal":
        return [((k - 1) * d, 0) for k, d in zip(kernel, dilation)]
    raise ValueError(f"unknown padding '{padding}'")


def transpose_crop(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """For a transposed convolution: (full output size, crop before, output size).

    The full output of scattering each input pixel is ``(size-1)*s + k``; "same"
    keeps ``size*s`` of it, cropping as the matching forward convolution pads.
    """
    full = (size - 1) * stride + kernel
    if padding.lower() == "valid":
        out = (size - 1) * stride + max(kernel, stride)
        return max(full, out), 0, out
    out = size * stride
    total = max(full - out, 0)
    return max(full, out), total // 2, out
