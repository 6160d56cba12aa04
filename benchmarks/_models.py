"""The models and data the benchmarks run on, built once per process and shared.

TensorFlow is imported only here and only when a model is asked for, so the
start-up benchmark and ``--help`` stay free of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

import qextract
from qextract import _keras
from qextract.examples import bundled_model

DIGITS_MODEL = bundled_model()  # .h5 under QKeras 0.9, the same model as .keras under qkeras-v3


@dataclass(frozen=True)
class Sizes:
    """Everything that changes between a full and a ``--quick`` run."""

    conv_layers: int
    conv_channels: int
    report_samples: int
    memory_samples: tuple[int, int]
    repeats: int
    startup_repeats: int
    warmup: bool = True  # one untimed call of each contender before timing
    per_layer_rows: int | None = None  # report rows the per-layer baseline covers (None: all)
    separate_memory_probes: bool = True  # RSS and tracemalloc each in their own fresh process
    export_stacks: tuple[int, ...] = (1, 4, 16)  # layers of the QDense stacks whose export memory is measured
    export_units: int = 2048  # their width: 4.2 M weights per layer

    @classmethod
    def full(cls, repeats: int = 3) -> Sizes:
        # ten 3x3 512->512 convolutions: 10 * (3*3*512*512 + 512) = 23.6 M weights
        return cls(
            conv_layers=10,
            conv_channels=512,
            report_samples=10_000,
            memory_samples=(10_000, 100_000),
            repeats=repeats,
            startup_repeats=5,
        )

    @classmethod
    def quick(cls, repeats: int = 1) -> Sizes:
        return cls(
            conv_layers=2,
            conv_channels=16,
            report_samples=512,
            memory_samples=(256, 1024),
            repeats=repeats,
            startup_repeats=2,
            warmup=False,
            per_layer_rows=3,
            separate_memory_probes=False,
            export_stacks=(1, 2),
            export_units=64,
        )


def tf() -> Any:
    """TensorFlow through qextract (legacy Keras under QKeras 0.9), its C++ start-up chatter silenced, QKeras loaded."""
    from qextract._keras import qkeras, start_quietly
    from qextract._keras import tf as _tf

    start_quietly()
    qkeras()
    t = _tf()
    t.get_logger().setLevel("ERROR")  # e.g. predict's retracing notices for the per-layer sub-models
    return t


def conv_stack(layers: int, channels: int, seed: int = 0) -> Any:
    """``layers`` QConv2D 3x3 ``channels -> channels`` with ``quantized_bits(8,0,alpha="auto_po2")`` kernels.

    Biases get ``quantized_bits(8,3)``, so both extractors quantize two
    tensors per layer. The spatial input is tiny: only the weights matter here.
    """
    t = tf()
    from qkeras import QConv2D, quantized_bits

    t.random.set_seed(seed)
    keras = _keras.keras()
    x = inputs = keras.Input((4, 4, channels), name="input")
    for i in range(layers):
        x = QConv2D(
            channels,
            3,
            padding="same",
            kernel_quantizer=quantized_bits(8, 0, alpha="auto_po2"),
            bias_quantizer=quantized_bits(8, 3),
            bias_initializer="glorot_uniform",  # non-zero biases, so their codes are not all 0
            name=f"conv{i}",
        )(x)
    return keras.Model(inputs, x, name=f"conv_stack_{layers}x{channels}")


def synthetic_images(n: int, shape: tuple[int, ...] = (8, 8, 1), seed: int = 0) -> np.ndarray:
    """``n`` uniform [0, 1) float32 images (deterministic)."""
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def synthetic_batches(n: int, batch_size: int = 256, shape: tuple[int, ...] = (8, 8, 1), seed: int = 0):
    """The same kind of data as a generator of batches, never all in memory (for the peak-memory runs)."""
    for start in range(0, n, batch_size):
        rng = np.random.default_rng((seed, start))
        yield rng.random((min(batch_size, n - start), *shape), dtype=np.float32)


class Context:
    """Lazily built, shared inputs: the big conv model, its extraction, the small CNN and its twin."""

    def __init__(self, sizes: Sizes):
        self.sizes = sizes

    @cached_property
    def conv_model(self) -> Any:
        return conv_stack(self.sizes.conv_layers, self.sizes.conv_channels)

    @cached_property
    def conv_weights(self) -> list[np.ndarray]:
        return self.conv_model.get_weights()

    @cached_property
    def extraction(self) -> qextract.Extraction:
        return qextract.extract(self.conv_model)

    @cached_property
    def cnn(self) -> Any:
        """The bundled digits QCNN (8x8x1 -> 10: QConv2D, QDepthwiseConv2D, QBatchNormalization,
        QSeparableConv2D, QConv2DBatchnorm, QDense, four quantized activations)."""
        tf()
        return qextract.load_model(DIGITS_MODEL)

    @cached_property
    def cnn_twin(self) -> Any:
        from qextract.analysis.twin import float_model

        return float_model(self.cnn)
