"""Accumulator widths: the worst case is reached by a real input through the QKeras layer's own forward pass.

Each layer is built here and fed inputs on the input format's grid. The
layers are linear in their input (no activation), so the response to each
unit input is the weight every input element meets at every output; the
input that maximises one output takes the largest code where that weight is
positive and the smallest where it is negative. The layer's own output on
that input, divided by the accumulator's step, must be the bound exactly,
and no output position may exceed it. Integer accumulators emulated in
NumPy with two's complement wrapping then show that ``bits`` is enough and
``bits - 1`` is not.
"""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest
import zoo

import qextract
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.errors import ExactnessError, UnsupportedError
from qextract.network import accumulators, integers, receptive, testbench
from qextract.network.accumulators import observe, twos_complement_bits, widths_table, worst_case
from qextract.numformat import FixedPoint, LookupTable, PowerOfTwo

tf()
Q = qkeras()
keras = _keras.keras()

FMT = FixedPoint(8, 0)  # quantized_bits(8,0,1): codes -128..127 at 2**-7
STEP = FMT.step
LO, HI = FMT.code_min, FMT.code_max
BITS = "quantized_bits(4,0,1,alpha=1)"  # weight step 2**-3
BIAS = "quantized_bits(8,3,1,alpha=1)"  # bias step 2**-4: integer at the accumulator's 2**-10


def _build(shape: tuple[int, ...], layer: Any, seed: int = 0) -> Any:
    inp = keras.Input(shape)
    model = keras.Model(inp, layer(inp))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.weights])
    return model


LAYERS: dict[str, tuple[tuple[int, ...], Any]] = {
    "dense": ((12,), lambda: Q.QDense(5, kernel_quantizer=BITS, bias_quantizer=BIAS, name="q")),
    "dense_auto_po2": (
        (12,),
        lambda: Q.QDense(5, kernel_quantizer="quantized_bits(4,0,1,alpha='auto_po2')", bias_quantizer=BIAS, name="q"),
    ),
    "dense_po2": ((10,), lambda: Q.QDense(4, kernel_quantizer="quantized_po2(4,1)", use_bias=False, name="q")),
    "conv2d_valid": ((3, 3, 4), lambda: Q.QConv2D(5, 3, kernel_quantizer=BITS, bias_quantizer=BIAS, name="q")),
    "conv2d_same_small": (  # input smaller than the kernel: no output position sees every tap
        (2, 2, 3),
        lambda: Q.QConv2D(4, 3, padding="same", kernel_quantizer=BITS, bias_quantizer=BIAS, name="q"),
    ),
    "conv1d_causal_dilated": (
        (6, 3),
        lambda: Q.QConv1D(3, 3, padding="causal", dilation_rate=2, kernel_quantizer=BITS, use_bias=False, name="q"),
    ),
    "depthwise_same_s2": (
        (5, 5, 3),
        lambda: Q.QDepthwiseConv2D(
            3, strides=2, padding="same", depth_multiplier=2, depthwise_quantizer=BITS, bias_quantizer=BIAS, name="q"
        ),
    ),
    "separable_m1": (
        (4, 4, 3),
        lambda: Q.QSeparableConv2D(
            3, 3, depthwise_quantizer=BITS, pointwise_quantizer=BITS, bias_quantizer=BIAS, name="q"
        ),
    ),
    "transpose_same_s2": (
        (3, 3, 2),
        lambda: Q.QConv2DTranspose(
            2, 3, strides=2, padding="same", kernel_quantizer=BITS, bias_quantizer=BIAS, name="q"
        ),
    ),
    "transpose_auto_po2": (  # QKeras's alpha runs along the transposed kernel's inputs: steps differ within a sum
        (3, 3, 3),
        lambda: Q.QConv2DTranspose(
            2, 2, kernel_quantizer="quantized_bits(4,0,1,alpha='auto_po2')", bias_quantizer=BIAS, name="q"
        ),
    ),
    "transpose_one_pixel": (  # "same" crops the third tap away: which one depends on the tap direction
        (1, 1, 2),
        lambda: Q.QConv2DTranspose(3, 3, strides=2, padding="same", kernel_quantizer=BITS, use_bias=False, name="q"),
    ),
}


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[Any, Any]]:
    out = {}
    for i, (name, (shape, make)) in enumerate(LAYERS.items()):
        model = _build(shape, make(), seed=i)
        out[name] = (model, qextract.extract(model)["q"])
    return out


def _forward(model: Any, x_codes: np.ndarray) -> np.ndarray:
    return model(tf().constant((x_codes * STEP).astype(np.float32))).numpy()


def _responses(model: Any) -> np.ndarray:
    """``g[i, ...out]``: the output's change for input element ``i`` moved by one code (the layer is linear)."""
    shape = model.input_shape[1:]
    n = int(np.prod(shape))
    units = np.eye(n, dtype=np.float32).reshape(n, *shape)
    return (_forward(model, units) - _forward(model, np.zeros((1, *shape)))).reshape(n, -1)


def _reached(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per output element: the layer's own output on the input that maximises it, and on the one that minimises it."""
    g = _responses(model)
    shape = model.input_shape[1:]
    up = np.where(g > 0, HI, np.where(g < 0, LO, 0)).T.reshape(-1, *shape)
    down = np.where(g > 0, LO, np.where(g < 0, HI, 0)).T.reshape(-1, *shape)
    k = np.arange(g.shape[1])
    return _forward(model, up).reshape(len(k), -1)[k, k], _forward(model, down).reshape(len(k), -1)[k, k]


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=zoo.v3_cannot_run("causal conv1d", ValueError)) if "causal" in n else n for n in LAYERS],
)
def test_worst_case_is_reached_through_the_layer(built: dict, name: str) -> None:
    model, record = built[name]
    bounds = worst_case(record, FMT, STEP, per_channel=True)
    final = [b for b in bounds if b.tensor != "depthwise_kernel" or record.kind == "depthwise_conv2d"]
    channels = model.output_shape[-1]
    assert [b.channel for b in final] == list(range(channels))
    highs, lows = (r.reshape(-1, channels) for r in _reached(model))
    for b in final:
        o = b.channel
        assert highs[:, o].max() == np.float32(b.acc_max * b.step), (o, highs[:, o].max() / b.step, b.acc_max)
        assert lows[:, o].min() == np.float32(b.acc_min * b.step), (o, lows[:, o].min() / b.step, b.acc_min)
        assert b.bias_exact and b.qtools_bits >= b.bits


def test_dense_extreme_input_built_from_the_weights(built: dict) -> None:
    """The brief's construction for one Dense: x = max code where w > 0, else min."""
    model, record = built["dense"]
    layer = model.get_layer("q")
    w = layer.kernel_quantizer_internal(layer.kernel).numpy()  # QKeras's own quantized kernel
    w_int = w / 2.0**-3
    assert np.array_equal(w_int, np.round(w_int))
    for b in worst_case(record, FMT, STEP, per_channel=True):
        x = np.where(w_int[:, b.channel] > 0, HI, LO)[None]
        assert _forward(model, x)[0, b.channel] == np.float32(b.acc_max * 2.0**-10)
        x = np.where(w_int[:, b.channel] > 0, LO, HI)[None]
        assert _forward(model, x)[0, b.channel] == np.float32(b.acc_min * 2.0**-10)


def test_conv2d_extreme_input_built_from_the_weights(built: dict) -> None:
    model, record = built["conv2d_valid"]
    layer = model.get_layer("q")
    w_int = layer.kernel_quantizer_internal(layer.kernel).numpy() / 2.0**-3  # (3, 3, 4, 5)
    for b in worst_case(record, FMT, STEP, per_channel=True):
        x = np.where(w_int[..., b.channel] > 0, HI, LO)[None]
        assert _forward(model, x)[0, 0, 0, b.channel] == np.float32(b.acc_max * 2.0**-10)


def _wrap(a: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return (a + half) % (1 << bits) - half


def _emulate(w_int: np.ndarray, b_int: np.ndarray, x: np.ndarray, bits: int) -> np.ndarray:
    """A ``bits``-bit two's complement accumulator: bias first, then each product, wrapping at every step."""
    acc = _wrap(np.broadcast_to(b_int, (x.shape[0], b_int.size)).astype(np.int64), bits)
    for i in range(w_int.shape[0]):
        acc = _wrap(acc + x[:, i : i + 1] * w_int[i], bits)
    return acc


@pytest.mark.parametrize("name", ["dense", "conv2d_valid"])
def test_bits_hold_every_sum_and_one_bit_less_wraps(built: dict, name: str) -> None:
    model, record = built[name]
    layer = model.get_layer("q")
    w_int = (layer.kernel_quantizer_internal(layer.kernel).numpy() / 2.0**-3).astype(np.int64)
    w_int = w_int.reshape(-1, w_int.shape[-1])
    b_int = (layer.bias_quantizer_internal(layer.bias).numpy() / 2.0**-10).astype(np.int64)
    (bound,) = worst_case(record, FMT, STEP)
    assert bound.step == 2.0**-10 and bound.ap_type == f"ap_fixed<{bound.bits},{bound.bits - 10}>"
    rng = np.random.default_rng(3)
    x = rng.integers(LO, HI + 1, (200, w_int.shape[0]))
    exact = x @ w_int + b_int
    qkeras_out = _forward(model, x.reshape(-1, *model.input_shape[1:])).reshape(200, -1) / 2.0**-10
    assert np.array_equal(exact, qkeras_out)  # the integer sum is the layer's own output
    assert np.array_equal(_emulate(w_int, b_int, x, bound.bits), exact)
    extremes = np.stack([np.where(w_int > 0, HI, LO).T, np.where(w_int > 0, LO, HI).T]).reshape(-1, w_int.shape[0])
    sums = extremes @ w_int + b_int
    assert sums.max() == bound.acc_max and sums.min() == bound.acc_min
    assert np.array_equal(_emulate(w_int, b_int, extremes, bound.bits), sums)
    assert not np.array_equal(_emulate(w_int, b_int, extremes, bound.bits - 1), sums)
    assert bound.qtools_bits >= bound.bits == twos_complement_bits(sums.min(), sums.max())


def test_widths_table_layer_and_channel_rows(built: dict) -> None:
    _, record = built["dense_auto_po2"]
    per_channel = worst_case(record, FMT, STEP, per_channel=True)
    layer = worst_case(record, FMT, STEP)
    table = widths_table(layer)
    assert list(table.columns) == [
        "layer", "tensor", "acc_min", "acc_max", "bits", "ap_type", "qtools_bits", "fan_in", "step", "note"
    ]  # fmt: skip
    (row,) = table.itertuples()
    finest = min(b.step for b in per_channel)
    aligned = [(b.acc_min * b.step / finest, b.acc_max * b.step / finest) for b in per_channel]
    assert (
        row.step == finest and row.acc_min == min(a for a, _ in aligned) and row.acc_max == max(h for _, h in aligned)
    )
    assert row.fan_in == 12 and row.qtools_bits == 8 + 4 + 4 + 1
    exponent = int(np.log2(finest))
    assert row.ap_type == f"ap_fixed<{row.bits},{row.bits + exponent}>"
    channels = widths_table(per_channel)
    assert list(channels["channel"]) == [0, 1, 2, 3, 4] and "channel" in channels.columns


def test_separable_has_two_stages(built: dict) -> None:
    _, record = built["separable_m1"]
    dw, pw = worst_case(record, FMT, STEP)
    assert (dw.tensor, pw.tensor) == ("depthwise_kernel", "pointwise_kernel")
    assert dw.fan_in == 9 and pw.fan_in == 3 and pw.input_bits == dw.bits and not dw.has_bias and pw.has_bias


def test_a_step_that_is_no_power_of_two_has_no_ap_type(built: dict) -> None:
    _, record = built["dense"]
    (b,) = worst_case(record, FMT, 0.3)
    assert b.ap_type is None and "not a power of two" in b.ap_problem
    assert not b.bias_exact and "bounds rounded outward" in "; ".join(b.notes)


def test_big_sums_use_python_integers(built: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _, record = built["depthwise_same_s2"]
    small = worst_case(record, FMT, STEP, per_channel=True)
    monkeypatch.setattr(receptive, "SAFE", 1)
    assert worst_case(record, FMT, STEP, per_channel=True) == small


def test_observed_ranges(built: dict) -> None:
    model, record = built["dense"]
    layer = model.get_layer("q")
    w_int = (layer.kernel_quantizer_internal(layer.kernel).numpy() / 2.0**-3).astype(np.int64)
    b_int = (layer.bias_quantizer_internal(layer.bias).numpy() / 2.0**-10).astype(np.int64)
    x = np.random.default_rng(1).integers(LO, HI + 1, (50, 12))
    acc = x @ w_int + b_int
    (b,) = observe(worst_case(record, FMT, STEP), {"q/kernel": acc})
    assert (b.observed_min, b.observed_max) == (acc.min(), acc.max())
    assert list(widths_table([b]).columns[-3:]) == ["observed_min", "observed_max", "note"]
    with pytest.raises(ExactnessError, match="outside the worst case"):
        observe(worst_case(record, FMT, STEP), {"q/kernel": acc * 1000})


def test_unsupported_cases_are_named(built: dict) -> None:
    bn = _build((4,), Q.QBatchNormalization(name="bn"))
    with pytest.raises(UnsupportedError, match=r"layer 'bn' .*no accumulator bound for kind batchnorm"):
        worst_case(qextract.extract(bn)["bn"], FMT, STEP)
    plain = _build((4,), keras.layers.Dense(2, name="d"))
    with pytest.raises(UnsupportedError, match=r"tensor 'd/kernel' is not quantized"):
        worst_case(qextract.extract(plain)["d"], FMT, STEP)
    _, record = built["dense"]
    with pytest.raises(UnsupportedError, match="no integer code range"):
        worst_case(record, LookupTable(bits=2, table=(-1.0, 0.0, 0.5)), 1.0)
    with pytest.raises(UnsupportedError, match="not one positive number"):
        worst_case(record, FMT, np.array([0.5, 0.25]))


def test_power_of_two_inputs(built: dict) -> None:
    """Inputs sign * 2**e (quantized_relu_po2-like, here signed): integers sign * 2**(e - e_min) at 2**e_min."""
    model, record = built["dense"]
    po2 = PowerOfTwo(bits=4, exponent_min=-3, exponent_max=0, negative=True)
    layer = model.get_layer("q")
    w = layer.kernel_quantizer_internal(layer.kernel).numpy()
    for b in worst_case(record, po2, 1.0, per_channel=True):
        assert b.step == 2.0**-3 * 2.0**-3
        x = np.where(w[:, b.channel] > 0, 1.0, -1.0)[None].astype(np.float32)  # the largest magnitude, 2**0
        assert model(tf().constant(x)).numpy()[0, b.channel] == np.float32(b.acc_max * b.step)


@pytest.mark.parametrize("module", [accumulators, integers, testbench])
def test_doctests(module: Any) -> None:
    assert doctest.testmod(module).failed == 0
