"""The extraction result: layers, their quantized tensors and activation formats.

Plain data, no TensorFlow: everything downstream (layouts, writers, reports,
verification) works from these objects and NumPy alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .kinds import Kind
from .numformat import FLOAT32, NumberFormat


class CodedArray:
    """Accessors shared by arrays held as codes and a scale (native or laid out).

    Subclasses are dataclasses with ``layer``, ``name``, ``values``, ``format``,
    ``codes``, ``scale``, ``scale_axis`` and ``signs``.
    """

    layer: str
    name: str
    values: np.ndarray
    format: NumberFormat
    codes: np.ndarray | None
    scale: np.ndarray
    scale_axis: int | None
    signs: np.ndarray | None

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def quantized(self) -> bool:
        return self.codes is not None

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1

    @property
    def ap_type(self) -> str | None:
        return self.format.ap_type(self.scale) if self.quantized else None

    def describe_scale(self) -> str:
        """The scale in a few characters: its value, or ``per-channel[C] axis A``."""
        if not self.quantized:
            return "-"
        if self.per_channel:
            return f"per-channel[{self.scale.shape[0]}] axis {self.scale_axis}"
        return f"{float(self.scale):g}"

    def __repr__(self) -> str:
        # A short summary: whole arrays in a repr bury everything else in an interactive session.
        what = str(self.format) if self.quantized else "float (unquantized)"
        quantizer = getattr(self, "quantizer_str", None)
        extra = f", quantizer={quantizer}" if quantizer else ""
        return f"{type(self).__name__}('{self.key}', shape={self.shape}, {what}, scale={self.describe_scale()}{extra})"

    def broadcast_scale(self) -> np.ndarray:
        """``scale`` shaped to broadcast against ``values``."""
        return along(self.scale, self.scale_axis if self.per_channel else None, self.values.ndim)

    def decode(self) -> np.ndarray:
        """Recompute the values from codes (and signs) and scale, in float32."""
        if self.codes is None:
            return self.values
        return self.format.decode(self.codes, self.broadcast_scale(), self.signs)


@dataclass(frozen=True, eq=False, repr=False)
class QuantizedTensor(CodedArray):
    """One weight tensor as the layer computes with it, in native Keras layout.

    ``values`` is exactly ``decode(codes, scale)`` in float32, bit for bit:
    ``codes * scale`` for fixed point, binary, ternary; ``signs * 2**codes``
    for powers of two; ``table[codes]`` for look-up formats. For unquantized
    tensors ``codes`` is None and ``values`` equals ``raw``.

    ``scale`` has shape ``()`` or ``(C,)``; in the latter case it runs along
    ``scale_axis`` of ``values``.

    ``variables`` names the model weight variables (as in ``model.weights``)
    the tensor was read from: one for a plain weight, several for a folded
    conv-batchnorm kernel or bias, none for a constant (a pooling multiplier).
    """

    layer: str
    layer_class: str
    name: str
    raw: np.ndarray
    values: np.ndarray
    format: NumberFormat = FLOAT32
    codes: np.ndarray | None = None
    scale: np.ndarray = field(default_factory=lambda: np.ones((), np.float32))
    scale_axis: int | None = None
    signs: np.ndarray | None = None
    quantizer: Any = field(default=None, repr=False)
    quantizer_str: str | None = None
    ste_rounded: int = 0
    notes: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()

    def distinct_codes(self) -> int:
        if self.codes is None:
            return int(np.unique(self.values).size)
        if self.signs is not None:
            return int(np.unique(self.codes.astype(np.int64) * 4 + self.signs).size)
        return int(np.unique(self.codes).size)


def along(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """A per-channel ``scale`` (C,) shaped to broadcast along ``axis`` of an ``ndim`` array; else as is."""
    if axis is None:
        return scale
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def decode(fmt: NumberFormat, codes: np.ndarray, scale: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """Values of ``codes`` in format ``fmt`` with ``scale`` (broadcastable), float32: ``fmt.decode``."""
    return fmt.decode(codes, scale, signs)


@dataclass(frozen=True)
class ActivationRecord:
    """A quantizer applied to data (not weights): a QActivation or a fused activation."""

    layer: str
    name: str  # "activation", "state", "average", ...
    quantizer_str: str
    format: NumberFormat
    quantizer: Any = field(default=None, repr=False)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, repr=False)
class LayerRecord:
    """One model layer: its tensors by name and its activation formats.

    ``name`` is the layer's key: its name, or its path inside nested models and
    wrappers (``encoder/conv1``, ``td/q_dense``). ``state`` names the layer's
    variables that are not weights it computes with (step counters, the moving
    min/max of an adaptive activation): accounted for, not exported.
    """

    name: str
    class_name: str
    kind: Kind
    tensors: Mapping[str, QuantizedTensor]
    activations: tuple[ActivationRecord, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    state: tuple[str, ...] = ()

    def __getitem__(self, tensor: str) -> QuantizedTensor:
        try:
            return self.tensors[tensor]
        except KeyError:
            raise KeyError(
                f"layer '{self.name}' ({self.class_name}) has no tensor '{tensor}'; "
                f"it has: {', '.join(self.tensors) or 'none'}"
            ) from None

    def __iter__(self) -> Iterator[QuantizedTensor]:
        return iter(self.tensors.values())

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        tensors = ", ".join(f"{t.name} {t.shape} {t.format if t.quantized else 'float'}" for t in self) or "none"
        acts = ", ".join(f"{a.name}={a.quantizer_str}" for a in self.activations)
        return f"LayerRecord('{self.name}', {self.class_name}, kind={self.kind}, tensors: {tensors}" + (
            f"; {acts})" if acts else ")"
        )


@dataclass(frozen=True, repr=False)
class Extraction:
    """Every layer of a model in order, addressable as ``ex["conv1"]["kernel"]``."""

    layers: tuple[LayerRecord, ...]
    model_name: str = "model"

    def __getitem__(self, layer: str) -> LayerRecord:
        for record in self.layers:
            if record.name == layer:
                return record
        raise KeyError(f"no layer '{layer}' in model '{self.model_name}'; layers: {', '.join(self.names)}")

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.layers]

    def tensors(self) -> Iterator[QuantizedTensor]:
        """Every tensor of every layer, in model order."""
        for record in self.layers:
            yield from record.tensors.values()

    def activations(self) -> Iterator[ActivationRecord]:
        for record in self.layers:
            yield from record.activations

    def __repr__(self) -> str:
        tensors = list(self.tensors())
        weights = sum(t.size for t in tensors)
        quantized = sum(t.quantized for t in tensors)
        return (
            f"Extraction(model '{self.model_name}': {len(self.layers)} layers, {len(tensors)} tensors "
            f"({quantized} quantized), {weights:,} weights)"
        )

    def __str__(self) -> str:
        return "\n".join([repr(self), *(f"  {r!r}" for r in self.layers if r.tensors or r.activations)])
