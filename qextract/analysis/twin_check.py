"""Checking a user's own float model against the quantized one, layer by layer, before a report compares them.

The naming rule of the twin (:mod:`qextract.analysis.twin`) is the contract:
the float layer carrying a quantized layer's name computes that layer's
output, so it must exist and have the same output shape.
"""

from __future__ import annotations

from typing import Any

from ..errors import TwinMismatchError


def check_float_model(model: Any, float_model: Any) -> None:
    """Check that ``float_model`` has, for every layer of ``model``, a layer of
    the same name with the same output shape, and the same input shape.

    Raises :class:`TwinMismatchError` naming every layer that does not match.
    """
    problems: list[str] = []
    q_in = [tuple(t.shape) for t in model.inputs]
    f_in = [tuple(t.shape) for t in float_model.inputs]
    if q_in != f_in:
        problems.append(f"inputs: quantized model takes {_shapes(q_in)}, float model {_shapes(f_in)}")
    missing = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            flayer = float_model.get_layer(layer.name)
        except ValueError:
            missing.append(f"'{layer.name}' ({type(layer).__name__})")
            continue
        qs, fs = _output_shape(layer), _output_shape(flayer)
        if qs != fs:
            problems.append(
                f"layer '{layer.name}': quantized {type(layer).__name__} outputs {qs}, "
                f"float {type(flayer).__name__} outputs {fs}"
            )
    if missing:
        problems.insert(0, f"no float layer named {', '.join(missing)}")
    if problems:
        raise TwinMismatchError(
            f"float model '{float_model.name}' does not match quantized model '{model.name}': "
            + "; ".join(problems)
            + ". The float layer carrying a quantized layer's name must compute that layer's output."
        )


def _output_shape(layer: Any) -> Any:
    out = layer.output
    if isinstance(out, (list, tuple)):
        return [tuple(t.shape) for t in out]
    return tuple(out.shape)


def _shapes(shapes: list[tuple[Any, ...]]) -> str:
    return ", ".join(str(s) for s in shapes) or "nothing"
