"""Verify a QONNX export by executing it: qonnx's executor against the Keras model's own forward pass.

A weight export is proven file by file; a QONNX file is a program, so it is proven by running it.
Every activation-quantizer output the file records (``qextract.layers`` metadata) is compared with
the model's own output of that layer, bit for bit, and the network's output to a float tolerance.
The inputs lie on a fixed-point grid (multiples of 1/16 in [-4, 4)) unless data is given, so that
float32 sums are exact on both sides wherever the scales are powers of two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, NotAnExportError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FLOAT_TOLERANCE", "find_qonnx", "verify_qonnx"]

FLOAT_TOLERANCE = 2.0**-17
"""Largest difference allowed on an output that is not quantized, relative to that output's largest magnitude
(at least 1): float32 sums added in another order (TensorFlow's and onnxruntime's) differ by a few ulps."""


def find_qonnx(path: str | os.PathLike[str]) -> Path | None:
    """The QONNX file ``path`` names (the file, or ``model.onnx`` in a folder without ``manifest.json``); else None."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".onnx":
        return p
    if p.is_dir() and not (p / "manifest.json").exists() and (p / "model.onnx").is_file():
        return p / "model.onnx"
    return None


def verify_qonnx(
    path: str | os.PathLike[str], model: Any, *, samples: int = 1000, data: np.ndarray | None = None, seed: int = 0
) -> pd.DataFrame:
    """One row per recorded layer output: how many values the QONNX file computes differently from ``model``.

    ``path`` is a file ``qextract.to_qonnx`` wrote (or its folder). NotAnExportError for an ONNX file
    qextract did not write; DataError for data of the wrong shape. ``passed`` is False where a
    quantized output differs at all, or a float output by more than :data:`FLOAT_TOLERANCE` (relative).
    """
    import pandas as pd

    from ..exporting.qonnx_run import layer_outputs, require, run_qonnx, to_keras_order

    onnx = require("onnx")
    target = find_qonnx(path)
    if target is None:
        raise NotAnExportError(f"{path}: no QONNX file (an .onnx file, or a folder holding model.onnx)")
    proto = onnx.load(os.fspath(target))
    props = {p.key: p.value for p in proto.metadata_props}
    if "qextract.version" not in props or "qextract.layers" not in props:
        raise NotAnExportError(
            f"{target}: an ONNX file qextract did not write (no qextract metadata); only files written by "
            "to_qonnx can be checked against their model"
        )
    x = _inputs(model, samples, data, seed)
    outputs = layer_outputs(proto)
    from .._keras import tf

    keras = tf().keras
    wanted = [model.get_layer(o.layer).output for o in outputs]
    expected = keras.Model(model.inputs, wanted).predict(x, batch_size=512, verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    got = run_qonnx(proto, x, full_context=True)
    rows = []
    for o, want in zip(outputs, expected):
        have = to_keras_order(got[o.tensor], o)
        if have.shape != want.shape:
            diff, bad = float("inf"), int(want.size)
        else:
            delta = np.abs(have.astype(np.float64) - want.astype(np.float64))
            diff = float(delta.max(initial=0.0))
            allowed = 0.0 if o.quantized else FLOAT_TOLERANCE * max(1.0, float(np.abs(want).max(initial=0.0)))
            bad = int(np.count_nonzero(delta > allowed))
        rows.append(
            {
                "layer": o.layer,
                "class": o.class_name,
                "tensor": o.tensor,
                "quantized": o.quantized,
                "elements": int(want.size),
                "differ": bad,
                "max_abs_diff": diff,
                "passed": bad == 0,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs.update(samples=len(x), source_model=props.get("qextract.source_model"), file=str(target))
    table.attrs["float_weights"] = json.loads(props.get("qextract.float_tensors", "[]"))
    return table


def _inputs(model: Any, samples: int, data: np.ndarray | None, seed: int) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) != 1 or any(d is None for d in shape):
        raise DataError(f"model '{model.name}': verify runs a QONNX file on a single input of fixed shape")
    if data is not None:
        x = np.asarray(data, np.float32)
        if x.shape[1:] != shape:
            raise DataError(f"data of shape {list(x.shape)}; model '{model.name}' takes samples of shape {list(shape)}")
        return x[:samples]
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 64, (samples, *shape)) / 16.0).astype(np.float32)
