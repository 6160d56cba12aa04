"""Build the bundled example model: a small QKeras CNN trained on sklearn's digits.

Run as ``python -m qextract.examples.build_digits [--out PATH]``. By default it
writes, next to this file:

- ``digits_qcnn.h5``          the whole model (``model.save``, HDF5, no optimizer);
- ``digits_qcnn.json``        the architecture alone (``model.to_json()``);
- ``digits_qcnn_weights.h5``  the weights alone (``model.save_weights``), the
  json + weights form many published QKeras models come in.

With ``--out PATH`` the model goes to ``PATH`` and the other two files sit
beside it, named from its stem (``<stem>.json``, ``<stem>_weights.h5``).

The data are scikit-learn's bundled digits (1797 8x8 grey images, read from
disk, no network), scaled by 1/16 to [0, 1]. The first 1500 images train, the
remaining 297 test. All seeds are fixed and TensorFlow's op determinism is on,
so two runs write bit-identical weights.

Every layer kind and quantizer here is deliberate, to exercise extraction:
QConv2D with an ``auto_po2`` kernel, QDepthwiseConv2D (depth multiplier 2,
stride 2), QBatchNormalization with quantized statistics, QSeparableConv2D,
a folded QConv2DBatchnorm, a QDense with a power-of-two kernel, and
``quantized_relu`` activations. The values the model computes with are what
each layer's own ``call`` produces from these raw weights, not the raw weights.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import qextract  # noqa: F401  (selects legacy Keras before TensorFlow is imported)
from qextract._keras import custom_objects, qkeras, tf

from .. import _keras

SEED = 1234
N_TRAIN = 1500
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 3e-3

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "digits_qcnn.h5"


def companion_paths(model_path: Path) -> tuple[Path, Path]:
    """The architecture json and weights-only h5 written beside ``model_path``."""
    stem = model_path.with_suffix("")
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + "_weights.h5")


def seed_everything(seed: int = SEED) -> None:
    """Fix every random source and make TensorFlow's kernels deterministic."""
    import numpy as np

    t = tf()
    random.seed(seed)
    np.random.seed(seed)
    t.random.set_seed(seed)
    _keras.keras().utils.set_random_seed(seed)
    t.config.experimental.enable_op_determinism()


def load_data():
    """sklearn's digits as ``(x_train, y_train, x_test, y_test)``; x is (N,8,8,1) float32 in [0,1]."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int64)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def build_model():
    """The example QCNN (input (8,8,1) -> 10 softmax probabilities)."""
    keras = _keras.keras()
    q = qkeras()
    qb = q.quantized_bits

    inputs = keras.Input(shape=(8, 8, 1), name="input")
    x = q.QConv2D(
        8,
        (3, 3),
        padding="same",
        kernel_quantizer=qb(8, 0, alpha="auto_po2"),
        bias_quantizer=qb(8, 3),
        name="conv1",
    )(inputs)  # (8,8,8)
    x = q.QActivation("quantized_relu(6,2)", name="act1")(x)
    x = q.QDepthwiseConv2D(
        (3, 3),
        depth_multiplier=2,
        strides=2,
        padding="same",
        # alpha=None here: QKeras itself turns it into auto_po2
        # (_set_trainable_parameter); the truth is what the layer computes.
        depthwise_quantizer=qb(6, 0, 1),
        bias_quantizer=qb(8, 3),
        name="dw2",
    )(x)  # (4,4,16)
    x = q.QBatchNormalization(
        center=True,
        scale=True,
        momentum=0.9,
        gamma_quantizer=qb(6, 2, 1),
        beta_quantizer=qb(8, 3),
        mean_quantizer=qb(8, 3),
        variance_quantizer="quantized_relu(8,3)",
        name="bn2",
    )(x)
    # A string, not a quantized_relu object: tf-keras's model.to_json() writes an
    # object as a module/class dict that QActivation.from_config cannot rebuild,
    # so model_from_json would fail (model.save's legacy HDF5 config is fine).
    x = q.QActivation("quantized_relu(6,2)", name="act2")(x)
    x = q.QSeparableConv2D(
        16,
        (3, 3),
        padding="same",
        depthwise_quantizer=qb(6, 0, 1),
        pointwise_quantizer=qb(6, 0, 1),
        bias_quantizer=qb(8, 3),
        name="sep3",
    )(x)  # (4,4,16)
    x = q.QConv2DBatchnorm(
        16,
        (3, 3),
        strides=2,
        padding="same",
        kernel_quantizer=qb(8, 0, alpha="auto_po2"),
        bias_quantizer=qb(12, 4),
        momentum=0.9,
        name="convbn4",
    )(x)  # (2,2,16)
    x = q.QActivation("quantized_relu(6,2)", name="act4")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # (64,)
    x = q.QDense(
        10,
        kernel_quantizer=q.quantized_po2(5, 1),
        bias_quantizer=qb(8, 3),
        name="fc5",
    )(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="digits_qcnn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qextract.examples.build_digits",
        description="Train the bundled QKeras digits CNN and save it (.h5, .json, _weights.h5).",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"model file to write (HDF5 .h5); default {DEFAULT_OUT}"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch training log")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.suffix.lower() not in (".h5", ".hdf5"):
        parser.error("--out must end in .h5 (the HDF5 format)")

    import numpy as np

    started = time.perf_counter()
    seed_everything()
    tf()
    x_train, y_train, x_test, y_test = load_data()

    model = build_model()
    model.compile(
        optimizer=_keras.keras().optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=True,
        verbose=0 if args.quiet else 2,
    )

    probs = model.predict(x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
    print(f"test accuracy: {accuracy:.4f} ({round(accuracy * len(y_test))}/{len(y_test)})")

    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, weights_path = companion_paths(out)
    model.save(out, include_optimizer=False, save_format="h5")
    json_path.write_text(model.to_json(indent=1) + "\n")
    model.save_weights(weights_path, save_format="h5")

    # Reload both forms and check they compute exactly what the in-memory model does.
    objects = dict(custom_objects())
    reloaded = _keras.keras().models.load_model(out, custom_objects=objects, compile=False)
    from_json = _keras.keras().models.model_from_json(json_path.read_text(), custom_objects=objects)
    from_json.load_weights(weights_path)
    ok = True
    for label, other in (("load_model(.h5)", reloaded), ("model_from_json + load_weights", from_json)):
        same_weights = len(other.get_weights()) == len(model.get_weights()) and all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights())
        )
        other_probs = other.predict(x_test, batch_size=256, verbose=0)
        same_probs = np.array_equal(probs, other_probs)
        diff = float(np.max(np.abs(probs - other_probs)))
        print(
            f"reload via {label}: weights identical={same_weights}, "
            f"predictions identical={same_probs} (max |diff| {diff:.3g})"
        )
        ok = ok and same_weights and same_probs

    for path in (out, json_path, weights_path):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"run time: {time.perf_counter() - started:.1f} s")
    if not ok:
        print("error: a reloaded model does not reproduce the in-memory model", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
