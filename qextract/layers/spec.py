"""What a layer entry says: its kind, where its tensors come from, its float twin, its activation.

Weights are paired with quantizers *by attribute name*, following each
layer's own ``call`` (never ``get_quantizers()`` by position, which slips for
batch norm with ``center=False``). A quantizer is applied only where the
layer's ``call`` applies it: that condition is part of each :class:`Binding`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import UnsupportedError
from ..kinds import Kind


@dataclass(frozen=True)
class TensorSource:
    """A raw float tensor, the quantizer the layer applies to it (or None), and the variables it came from.

    ``variables`` are the model's weight variables ``raw`` was computed from:
    one for a plain weight, several for a folded one, none for a constant.
    """

    name: str
    raw: np.ndarray
    quantizer: Any = None
    variables: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Binding:
    """``name`` is the weight ``weight`` of ``owner``, quantized by ``quantizer`` if ``enabled``.

    ``owner`` is an attribute path from the layer ("" for the layer itself,
    "cell" for recurrent layers). ``enabled`` names the attribute whose truth
    decides, in the layer's ``call``, whether the quantizer is applied; it also
    holds the quantizer as the configuration stores it. ``optimized``: the
    layer's constructor calls the quantizer's ``_set_trainable_parameter``
    (a ``quantized_bits`` without alpha becomes ``alpha="auto_po2"``), which a
    quantizer built from a stored configuration must repeat.
    """

    name: str
    quantizer: str | None = None
    enabled: str | None = None
    weight: str | None = None
    present: str | None = None  # attribute that must be true for the weight to exist
    optimized: bool = False

    def source(self, owner: Any) -> TensorSource | None:
        if self.present and not _get(owner, self.present):
            return None
        var = _get(owner, self.weight or self.name)
        if var is None:
            return None
        quantizer = None
        if self.quantizer and (self.enabled is None or _get(owner, self.enabled)):
            quantizer = _get(owner, self.quantizer)
        return TensorSource(self.name, np.asarray(var, dtype=np.float32), quantizer, (var,))


TwinActivation = Literal["fused", "separate", "layer", "recurrent", "ignored", "wrapper"]


@dataclass(frozen=True)
class LayerTwin:
    """How one QKeras layer class becomes float Keras layers (built by :mod:`qextract.analysis.twin`).

    ``activation`` says where the QKeras layer's ``activation`` goes:
    ``"fused"`` - into the Keras layer's own ``activation`` argument;
    ``"separate"`` - a float activation layer named like the QKeras layer
    follows (the Keras class takes no activation); ``"layer"`` - the layer *is*
    the activation (QActivation); ``"recurrent"`` - ``activation`` and
    ``recurrent_activation`` of the cell; ``"ignored"`` - QKeras never applies it;
    ``"wrapper"`` - the wrapped layers get their own twins (QBidirectional).
    Extra Keras layers get ``suffix`` (``<name>_conv``); a folded layer's batch
    norm becomes a BatchNormalization of its own (``folded_batchnorm``).
    """

    keras_class: str
    activation: TwinActivation = "fused"
    folded_batchnorm: bool = False
    suffix: str = ""


@dataclass(frozen=True)
class Refusal:
    """A layer setting the entry cannot read: the layer is refused when ``attribute`` is set (not None).

    ``why`` completes "layer 'x' (Class) ..." with what the setting does and the fix.
    """

    attribute: str
    why: str


@dataclass(frozen=True)
class LayerSpec:
    """Everything qextract knows about one layer class.

    ``kind`` is what it computes (layouts, manifest and verification follow
    it). Its tensors come from ``bindings`` (read from the layer, or from
    ``owner``: "cell" for recurrent layers) or from ``custom``. ``state``
    names attributes holding variables that are not weights the layer
    computes with (a training step counter, the moving min/max that set an
    adaptive quantizer's integer bits, which the activation format already
    reflects): they are accounted for, not exported. ``twin`` is its float
    counterpart (None: the layer is its own, as every plain Keras layer).
    ``fuses_activation`` says whether the layer applies its ``activation``
    to its own output, so that the output before it is a tensor of its own
    (False for a batch norm, whose activation QKeras ignores, an activation
    layer, and recurrent layers, whose activations act inside the recurrence).
    ``no_numpy_form`` says why the TensorFlow-free engine (:mod:`qextract.engines`)
    cannot compute this class's tensors itself and asks QKeras for them (None: it can).
    """

    kind: Kind
    bindings: tuple[Binding, ...] = ()
    owner: str = ""
    custom: Callable[[Any], list[TensorSource]] | None = None
    activations: tuple[str, ...] = ("activation",)
    state: tuple[str, ...] = ()
    custom_activations: Callable[[Any], list[tuple[str, Any]]] | None = None
    twin: LayerTwin | None = None
    fuses_activation: bool = True
    refused: tuple[Refusal, ...] = ()
    no_numpy_form: str | None = None

    def check(self, layer: Any) -> None:
        """Refuse, by name, a configuration of the layer that the entry does not read (see :class:`Refusal`)."""
        for refusal in self.refused:
            if getattr(layer, refusal.attribute, None) is not None:
                raise UnsupportedError(
                    f"layer '{layer.name}' ({type(layer).__name__}) {refusal.why}", arguments=("layers",)
                )

    def sources(self, layer: Any) -> list[TensorSource]:
        self.check(layer)
        if self.custom is not None:
            return self.custom(layer)
        owner = _attr_path(layer, self.owner)
        return [s for b in self.bindings if (s := b.source(owner)) is not None]

    def activation_objects(self, layer: Any) -> Iterator[tuple[str, Any]]:
        if self.custom_activations is not None:
            yield from self.custom_activations(layer)
            return
        owner = _attr_path(layer, self.owner)
        for attr in self.activations:
            obj = _get(owner, attr)
            if obj is not None:
                yield attr.replace("_quantizer_internal", "").replace("quantizer", "activation"), obj

    def state_variables(self, layer: Any) -> list[Any]:
        return [v for attr in self.state if (v := getattr(layer, attr, None)) is not None]


def _get(obj: Any, attribute: str) -> Any:
    """``obj``'s attribute as QKeras 0.9 names it (entries use 0.9's names), in the installed generation."""
    from .._keras import generation

    return generation().attribute(obj, attribute)


def _attr_path(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj
