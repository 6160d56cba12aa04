"""Write the bundled example for the Keras 3 stack: ``digits_qcnn.keras``, the same model as ``digits_qcnn.h5``.

Run under qkeras-v3 as ``python -m qextract.examples.build_digits_keras3 [--out PATH]``.
The architecture is :func:`~qextract.examples.build_digits.build_model` built
with qkeras-v3's layers; the weights are the trained ones of the QKeras 0.9
file, read from it with h5py (:func:`qextract.reading.stored.read_stored`: no
QKeras 0.9 needed) and set by layer and weight name. Nothing is trained, so
both bundled files hold the same raw weights, and qextract extracts the same
codes from both (tests/test_generations.py proves it against fixtures made
under QKeras 0.9).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import qextract  # noqa: F401  (arranges Keras before TensorFlow is imported)

from .._keras import custom_objects, generation, keras
from ..reading.stored import read_stored
from .build_digits import DEFAULT_OUT, build_model, load_data

KERAS3_OUT = DEFAULT_OUT.with_suffix(".keras")


def copy_weights(model: object, source: Path) -> None:
    """Give every layer of ``model`` the weights the legacy file ``source`` stores under its name."""
    stored = read_stored(source)
    gen = generation()
    for layer in model.layers:  # type: ignore[attr-defined]
        if not layer.weights:
            continue
        held = stored[layer.name].weights
        values = []
        for w in layer.weights:
            key = gen.variable_path(w).split(f"{layer.name}/", 1)[-1]
            if key not in held or held[key].shape != tuple(w.shape):
                raise SystemExit(f"{source}: layer '{layer.name}' stores no weight '{key}' {tuple(w.shape)}")
            values.append(held[key])
        layer.set_weights(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qextract.examples.build_digits_keras3", description=__doc__)
    parser.add_argument("--source", type=Path, default=DEFAULT_OUT, help=f"QKeras 0.9 .h5; default {DEFAULT_OUT}")
    parser.add_argument("--out", type=Path, default=KERAS3_OUT, help=f"the .keras file; default {KERAS3_OUT}")
    args = parser.parse_args(argv)
    if generation().legacy_keras:
        parser.error(f"run this under qkeras-v3 (installed: {generation().label})")
    model = build_model()
    copy_weights(model, args.source)
    model.save(args.out)
    reloaded = keras().models.load_model(args.out, custom_objects=custom_objects(), compile=False)
    _, _, x_test, y_test = load_data()
    probs = model.predict(x_test, verbose=0)
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reloaded.get_weights()))
    same = same and np.array_equal(probs, reloaded.predict(x_test, verbose=0))
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); test accuracy {accuracy:.4f}; reload identical={same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
