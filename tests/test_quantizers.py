"""Every registered quantizer: codes x scale reproduces the QKeras output, checked against NumPy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zoo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_quantizer_registry import CASES

from qextract import QExtractWarning
from qextract._keras import qkeras, tf
from qextract.errors import ExactnessError, UnsupportedError
from qextract.layers import TensorSource
from qextract.quantizers import QUANTIZERS
from qextract.reading.extraction import quantize_tensor

tf()
Qz = qkeras().quantizers

# Every registered quantizer's examples, kept with its other cases in the registry's own test table.
EXAMPLES: dict[str, list[str]] = {name: list(case.codes) for name, case in CASES.items()}
GRAPH_SAFE = {spec for case in CASES.values() for spec in case.graph_safe}  # only powers of two, rounding, clipping
ALL = [s for v in EXAMPLES.values() for s in v]


def make(spec: str):
    return eval(spec, {"np": np, **{k: getattr(Qz, k) for k in QUANTIZERS}})


def weights(seed: int = 0, shape=(3, 3, 4, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32) * 0.7
    x.flat[:5] = [0.0, 3.5, -3.5, 1e-9, -0.0]  # zero, clipped, tiny
    return x


def quantize(spec: str, x: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QExtractWarning)
        return quantize_tensor(TensorSource("kernel", x, make(spec)), "l", "QConv2D")


def test_every_registered_quantizer_has_examples():
    assert set(QUANTIZERS) == set(EXAMPLES)


@pytest.mark.parametrize("spec", [zoo.quantizer_param(s) for s in ALL])
def test_codes_times_scale_is_the_quantizer_output(spec):
    x = weights()
    t = quantize(spec, x)
    np.testing.assert_array_equal(t.decode(), t.values)
    assert t.values.dtype == np.float32
    assert t.codes.min() >= t.format.code_min and t.codes.max() <= t.format.code_max
    assert t.codes.dtype == t.format.code_dtype
    direct = np.asarray(t.quantizer(tf().constant(x)), np.float32) if "bernoulli" not in spec else None
    if direct is not None:
        differs = direct != t.values
        assert differs.sum() == t.ste_rounded
        if t.ste_rounded:  # only a non-power-of-two scale can make the STE round
            mantissa, _ = np.frexp(t.scale)
            assert not np.all(mantissa == 0.5)
            # and the rounding is exactly x + (grid - x) in float32
            np.testing.assert_array_equal((x + (t.values - x))[differs], direct[differs])


def _bits_reference(x, bits, integer, symmetric=0, keep_negative=1, alpha=1.0):
    m, m_i = 2.0 ** (bits - keep_negative), 2.0**integer
    lo = keep_negative * (-m + symmetric)
    codes = np.clip(np.rint(x.astype(np.float64) * m / m_i), lo, m - 1)
    return codes, (np.float32(alpha) * np.float32(m_i / m) * codes.astype(np.float32)).astype(np.float32)


@pytest.mark.parametrize(
    "spec,args",
    [
        ("quantized_bits(8,0,1)", (8, 0, 1)),
        ("quantized_bits(4,2,0)", (4, 2, 0)),
        ("quantized_bits(6,3,1,keep_negative=0)", (6, 3, 1, 0)),
        ("quantized_bits(5,5,0)", (5, 5, 0)),
        ("quantized_bits(16,4,1)", (16, 4, 1)),
        ("quantized_bits(4,0,1,alpha=0.37)", (4, 0, 1, 1, 0.37)),
    ],
)
def test_quantized_bits_against_numpy(spec, args):
    x = weights(1)
    t = quantize(spec, x)
    codes, values = _bits_reference(x, *args)
    np.testing.assert_array_equal(t.codes, codes)
    np.testing.assert_array_equal(t.values, values)


def test_ap_fixed_types():
    x = weights(2)
    assert quantize("quantized_bits(8,3,1)", x).ap_type == "ap_fixed<8,4>"
    assert quantize("quantized_bits(6,3,1,keep_negative=0)", x).ap_type == "ap_ufixed<6,3>"
    assert quantize("quantized_bits(4,4,0)", x).ap_type == "ap_fixed<4,5>"
    assert quantize("quantized_bits(8,0,alpha='auto_po2')", x).ap_type is None  # per-channel scale


def test_po2_against_numpy():
    x = weights(3)
    t = quantize("quantized_po2(5,1)", x)
    q = make("quantized_po2(5,1)")
    a = np.abs(x.astype(np.float64))
    expected = np.where(
        a < 1e-7, q._min_exp, np.clip(np.rint(np.log2(np.maximum(np.minimum(a, 1.0), 1e-7))), q._min_exp, q._max_exp)
    )
    near_half = np.abs(np.log2(np.maximum(a, 1e-30)) % 1 - 0.5) < 1e-4
    sign = np.where(x < 0, -1, 1)
    zero = t.signs == 0  # a tiny weight whose STE sum x + (2**e - x) rounds to 0
    keep = ~near_half & ~zero
    np.testing.assert_array_equal(t.codes[keep], expected[keep])
    np.testing.assert_array_equal(t.signs[keep], sign[keep])
    assert np.all(t.values[zero] == 0)


def test_binary_and_ternary_against_numpy():
    x = weights(4)
    np.testing.assert_array_equal(quantize("binary()", x).codes, np.where(x >= 0, 1, -1))
    t = quantize("ternary(alpha=0.5,threshold=0.2)", x)
    np.testing.assert_array_equal(t.codes, np.sign(x) * (np.abs(x) >= 0.2))
    np.testing.assert_array_equal(t.values, (0.5 * t.codes).astype(np.float32))


def test_auto_scales_per_output_channel():
    x = weights(5)
    for spec in (
        "quantized_bits(8,0,alpha='auto')",
        "quantized_bits(8,0,alpha='auto_po2')",
        "binary(alpha='auto_po2')",
        "ternary(alpha='auto')",
    ):
        t = quantize(spec, x)
        assert t.scale.shape == (8,) and t.scale_axis == 3
    po2 = quantize("quantized_bits(8,0,alpha='auto_po2')", x)
    assert np.all(np.frexp(po2.scale)[0] == 0.5)


def test_stochastic_quantizers_warn_and_are_deterministic():
    x = weights(6)
    for spec in ("stochastic_binary()", "stochastic_ternary(alpha='auto_po2')", "bernoulli()"):
        with pytest.warns(QExtractWarning, match="deterministic inference value"):
            a = quantize_tensor(TensorSource("kernel", x, make(spec)), "l", "QDense")
        b = quantize(spec, x)
        np.testing.assert_array_equal(a.values, b.values)
        assert a.notes
    np.testing.assert_array_equal(quantize("bernoulli()", x).codes, (x >= 0).astype(int))


def test_qnoise_factor_below_one_is_an_error_naming_layer_and_tensor():
    with pytest.raises(ExactnessError, match=r"layer 'l' \(QConv2D\), tensor 'kernel'.*qnoise_factor=0.5"):
        quantize("quantized_bits(8,0,1,qnoise_factor=0.5)", weights())


def test_nan_weights_are_an_error():
    x = weights()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ExactnessError, match="NaN or Inf"):
        quantize("quantized_bits(8,0,1)", x)


def test_unknown_quantizer_class_is_an_error():
    class my_quantizer(Qz.quantized_bits):
        pass

    with pytest.raises(UnsupportedError, match="my_quantizer.*not supported"):
        quantize_tensor(TensorSource("kernel", weights(), my_quantizer(4)), "l", "QDense")


def test_quantizer_object_is_not_modified():
    q = make("quantized_bits(8,0,alpha='auto_po2')")
    before = dict(vars(q))
    quantize_tensor(TensorSource("kernel", weights(), q), "l", "QDense")
    # qkeras-v3 sets no scale attribute until the quantizer is called: it must not have one afterwards either
    assert getattr(q, "scale", None) is None and vars(q).keys() == before.keys()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.integers(1, 16),
    integer=st.integers(-4, 8),
    keep_negative=st.booleans(),
    symmetric=st.booleans(),
    alpha=st.sampled_from([None, "auto", "auto_po2"]),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([0.01, 1.0, 30.0]),
)
def test_property_random_quantized_bits(bits, integer, keep_negative, symmetric, alpha, seed, spread):
    if alpha is not None and bits < 2:
        return  # QKeras's auto path divides by zero levels for 1 bit
    q = Qz.quantized_bits(bits, integer, int(symmetric), keep_negative=keep_negative, alpha=alpha)
    x = (np.random.default_rng(seed).standard_normal((5, 6)) * spread).astype(np.float32)
    try:
        direct = np.asarray(q(tf().constant(x)), np.float32)
    except Exception:
        with pytest.raises(UnsupportedError, match="QKeras's own"):
            quantize_tensor(TensorSource("kernel", x, q), "l", "QDense")
        return
    t = quantize_tensor(TensorSource("kernel", x, q), "l", "QDense")
    np.testing.assert_array_equal(t.decode(), t.values)
    assert t.format.code_min <= t.codes.min() and t.codes.max() <= t.format.code_max
    assert np.count_nonzero(direct != t.values) == t.ste_rounded


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.sampled_from(["po2", "relu_po2", "binary", "ternary"]),
    bits=st.integers(2, 8),
    max_value=st.sampled_from([None, 1, 4]),
    alpha=st.sampled_from([None, "auto", "auto_po2", 0.5]),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_property_po2_binary_ternary(spec, bits, max_value, alpha, seed, spread):
    q = {
        "po2": lambda: Qz.quantized_po2(bits, max_value),
        "relu_po2": lambda: Qz.quantized_relu_po2(bits, max_value),
        "binary": lambda: Qz.binary(alpha=alpha),
        "ternary": lambda: Qz.ternary(alpha=alpha),
    }[spec]()
    x = (np.random.default_rng(seed).standard_normal((4, 7)) * spread).astype(np.float32)
    t = quantize_tensor(TensorSource("kernel", x, q), "l", "QDense")
    np.testing.assert_array_equal(t.decode(), t.values)
    assert t.format.code_min <= t.codes.min() and t.codes.max() <= t.format.code_max
    direct = np.asarray(q(tf().constant(x)), np.float32)
    assert np.count_nonzero(direct != t.values) == t.ste_rounded
    if spec.endswith("po2"):
        assert set(np.unique(t.signs)) <= {-1, 0, 1}
        assert not np.any(np.isinf(t.codes))


@pytest.mark.parametrize("spec", [zoo.quantizer_param(s) for s in ALL if not s.startswith(("stochastic", "bernoulli"))])
def test_graph_execution_for_large_tensors_is_bit_identical_to_eager(spec, monkeypatch):
    """Large tensors run the quantizer as a traced graph (as model.predict does); it must not change a bit."""
    from qextract.quantizers import graph_cache

    x = weights(7)
    eager = quantize(spec, x)
    monkeypatch.setattr(graph_cache, "min_size", 1)
    graph_cache.clear()
    graph = quantize(spec, x)
    graph_safe = spec in GRAPH_SAFE
    assert len(graph_cache) == int(graph_safe)  # the others always run eagerly
    np.testing.assert_array_equal(graph.values, eager.values)
    np.testing.assert_array_equal(graph.codes, eager.codes)
    np.testing.assert_array_equal(graph.scale, eager.scale)
    direct = np.asarray(make(spec)(tf().constant(x)), np.float32)
    assert np.count_nonzero(direct != graph.values) == graph.ste_rounded


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    bits=st.integers(2, 12),
    integer=st.integers(0, 4),
    alpha=st.sampled_from([None, "auto_po2", 0.5]),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([0.05, 1.0, 20.0]),
)
def test_property_graph_path_is_bit_identical(monkeypatch, bits, integer, alpha, seed, spread):
    from qextract.quantizers import graph_cache

    monkeypatch.setattr(graph_cache, "min_size", 1)
    q = Qz.quantized_bits(bits, integer, 1, alpha=alpha)
    x = (np.random.default_rng(seed).standard_normal((3, 3, 8, 16)) * spread).astype(np.float32)
    t = quantize_tensor(TensorSource("kernel", x, q), "l", "QConv2D")
    direct = np.asarray(q(tf().constant(x)), np.float32)  # QKeras's eager call
    np.testing.assert_array_equal(direct, t.values)
