"""A fully convolutional copy of a CNN: its Flatten -> Dense head as convolutions, for inputs of any size.

A Dense layer fed by Flatten of an (H, W, C) tensor computes one dot product
per unit over the whole H x W x C window: that is a "valid" Conv2D with an
(H, W) kernel, its kernel the Dense kernel reshaped to (H, W, C, O) (Keras
flattens channels_last in H, W, C order). Each later Dense is a 1x1
convolution. QDense becomes QConv2D with the same quantizers: a per-channel
(``alpha="auto"``/``"auto_po2"``) scale is computed over the same elements of
each output channel, so the quantized values are the same.

On the original input size the new model's output is the original's, shaped
(1, 1, units). On a larger input, output position (i, j) is the original model
applied to the input window at (i*S, j*S), S the product of the trunk's
strides, exactly when the trunk pads nothing ("valid" convolutions and
pooling); a "same" trunk pads the large input only at its border, so windows
away from the original size then differ near their edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._keras import generation, require_keras_model
from ..errors import UnsupportedError
from . import _graph
from .targets import PASS_THROUGH

__all__ = ["fully_convolutional"]

DENSE = {"Dense": ("Conv2D", "keras.layers"), "QDense": ("QConv2D", "qkeras.qconvolutional")}
AFTER_DENSE = frozenset({"BatchNormalization", "QBatchNormalization", "Softmax", "Activation", "QActivation"})
DENSE_ONLY_KEYS = ("units",)


def fully_convolutional(model: Any) -> Any:
    """A new model in which the Flatten -> Dense head of ``model`` is convolutional; ``model`` is unchanged.

    The first Dense after Flatten becomes a Conv2D (QConv2D for QDense) whose
    kernel is the flattened window, later Dense layers 1x1 convolutions; Dropout,
    activations and batch norms in the head are kept. The input takes any
    height and width of at least the original's.

    >>> fcn = qextract.fully_convolutional(model)   # doctest: +SKIP
    >>> fcn.predict(big_images).shape               # (N, H', W', classes)  # doctest: +SKIP
    """
    require_keras_model(model)
    flatten = _the_flatten(model)
    h, w, c = generation().input_shape(flatten)[1:]
    config = _graph.functional_config(model)
    head = _head(model, config, flatten.name)
    dense = [name for name in head if type(model.get_layer(name)).__name__ in DENSE]
    trunk_dense = [layer.name for layer in model.layers if type(layer).__name__ in DENSE and layer.name not in head]
    if trunk_dense:
        raise UnsupportedError(
            f"model '{model.name}': Dense layer(s) {', '.join(map(repr, trunk_dense))} "
            "are not in the Flatten -> Dense head; "
            "fully_convolutional converts only a head fed by Flatten"
        )
    _free_input(config, model)
    _graph.remove(config, flatten.name)
    for i, name in enumerate(dense):
        _to_conv(_graph.entry(config, name), (h, w) if i == 0 else (1, 1))
    for name in head:
        e = _graph.entry(config, name)
        if e["class_name"] in ("BatchNormalization", "QBatchNormalization"):
            e["config"]["axis"] = -1  # a batch norm over features is one over channels
    for e in config["layers"]:
        e.pop("build_config", None)
    try:
        new = _graph.rebuild(config, f"{model.name}_fcn")
    except (ValueError, TypeError) as e:
        raise UnsupportedError(
            f"model '{model.name}' cannot take inputs of any size: {str(e).splitlines()[0]}"
        ) from None
    _graph.copy_weights(model, new, skip=set(dense))
    for i, name in enumerate(dense):
        weights = model.get_layer(name).get_weights()
        kernel = weights[0].reshape(h, w, c, -1) if i == 0 else weights[0].reshape(1, 1, *weights[0].shape)
        new.get_layer(name).set_weights([np.ascontiguousarray(kernel), *weights[1:]])
    return new


def _the_flatten(model: Any) -> Any:
    flattens = [layer for layer in model.layers if type(layer).__name__ == "Flatten"]
    if len(flattens) != 1:
        found = ", ".join(f"'{f.name}'" for f in flattens) or "none"
        raise UnsupportedError(
            f"model '{model.name}': fully_convolutional needs exactly one Flatten feeding the Dense head "
            f"at the top level; found {found}"
        )
    flatten = flattens[0]
    shape = generation().input_shape(flatten)
    if getattr(flatten, "data_format", "channels_last") != "channels_last" or len(shape) != 4 or None in shape[1:]:
        raise UnsupportedError(
            f"layer '{flatten.name}' (Flatten) flattens a tensor of shape {shape[1:]}; fully_convolutional needs a "
            "channels_last (H, W, C) image tensor of known size"
        )
    return flatten


def _head(model: Any, config: dict[str, Any], flatten: str) -> list[str]:
    """The chain of layers from Flatten to the model's output; anything but Dense, Dropout, activations is refused."""
    head, current, seen_dense = [], flatten, False
    while True:
        after = _graph.consumers(config, current)
        if not after:
            break
        if len(after) > 1:
            raise UnsupportedError(
                f"layer '{current}' feeds {', '.join(map(repr, after))}: "
                "fully_convolutional converts a head that is one chain"
            )
        current = after[0]
        cls = type(model.get_layer(current)).__name__
        if cls in DENSE:
            seen_dense = True
        elif not (cls in PASS_THROUGH or (seen_dense and cls in AFTER_DENSE)):
            where = "after Flatten" if seen_dense else "between Flatten and the first Dense"
            raise UnsupportedError(
                f"layer '{current}' ({cls}) {where}: fully_convolutional keeps only Dense/QDense, Dropout, activations "
                "and (after a Dense) batch norms in the head"
            )
        head.append(current)
    if not seen_dense:
        raise UnsupportedError(f"layer '{flatten}' (Flatten) feeds no Dense layer: there is no head to convert")
    if not _graph.is_output(config, current) or len(config["output_layers"]) != 1:
        raise UnsupportedError(f"the head ending at '{current}' is not the model's only output")
    return head


def _free_input(config: dict[str, Any], model: Any) -> None:
    inputs = config["input_layers"]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"model '{model.name}' has {len(inputs)} inputs; fully_convolutional takes one image input"
        )
    e = _graph.entry(config, inputs[0][0])
    shape = e["config"]["batch_input_shape"]
    if len(shape) != 4:
        raise UnsupportedError(f"model '{model.name}': input of shape {shape[1:]} is not an (H, W, C) image")
    e["config"]["batch_input_shape"] = [None, None, None, shape[-1]]


def _to_conv(e: dict[str, Any], kernel: tuple[int, int]) -> None:
    cls, module = DENSE[e["class_name"]]
    config = {k: v for k, v in e["config"].items() if k not in DENSE_ONLY_KEYS}
    if config.get("quantization_config", 0) is None:  # Keras 3's Dense records its own (unused) int8 setting
        del config["quantization_config"]
    config.update(
        filters=e["config"]["units"], kernel_size=list(kernel), strides=[1, 1], padding="valid",
        data_format="channels_last", dilation_rate=[1, 1],
    )  # fmt: skip
    e.update(class_name=cls, module=module, registered_name=cls if cls.startswith("Q") else None, config=config)
