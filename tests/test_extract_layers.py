"""Every registered layer class: extracted values recompute the layer's own output in NumPy."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import zoo

from qextract import _keras, extract
from qextract._keras import tf
from qextract.layers import LAYERS


def test_every_registered_layer_class_has_a_case():
    covered = {case.layer_class for case in zoo.CASES.values()}
    covered |= {cls for cls, _ in zoo.ACTIVATION_CASES.values()}
    assert set(LAYERS) - covered == set(), "add a case to tests/zoo.py for each new registry entry"


def _forward(case: zoo.Case, model, record, x: np.ndarray) -> np.ndarray:
    if case.keras_twin is None:
        return model.predict(x, verbose=0)
    # QKeras's own call is broken on TF 2.21 for this class: run the plain Keras layer
    # with the extracted (quantized) values as its weights.
    inp = _keras.keras().Input(case.input_shape)
    twin = _keras.keras().Model(inp, case.keras_twin()(inp))
    twin.set_weights([t.values for t in record])
    return twin.predict(x, verbose=0)


@pytest.mark.parametrize("name", list(zoo.CASES))
def test_numpy_recompute_matches_layer_forward_pass(name):
    case = zoo.CASES[name]
    model = zoo.randomize(case.build(), seed=zlib.crc32(name.encode()) % 1000)
    x = np.random.default_rng(1).standard_normal((4, *case.input_shape)).astype(np.float32)
    record = extract(model)["q"]
    assert len(record) > 0
    y = _forward(case, model, record, x)
    ours = case.reference(record, x, model.get_layer("q"))
    scale = np.max(np.abs(y))
    np.testing.assert_allclose(ours, y, rtol=0, atol=2e-6 * scale + 1e-7)

    # The check can fail: recomputing with the raw float weights does not match.
    raw = type(record)(record.name, record.class_name, record.kind, {k: _as_raw(t) for k, t in record.tensors.items()})
    assert np.max(np.abs(case.reference(raw, x, model.get_layer("q")) - y)) > 1e-4 * scale


def _as_raw(t):
    import dataclasses

    return dataclasses.replace(t, values=t.raw)


@pytest.mark.parametrize("name", list(zoo.CASES))
def test_every_tensor_is_exact_and_in_range(name):
    model = zoo.randomize(zoo.CASES[name].build(), seed=3)
    tensors = list(extract(model).tensors())
    assert any(t.quantized for t in tensors)
    for t in tensors:
        if not t.quantized:  # a Q layer tensor without a quantizer: float, flagged
            assert t.values is t.raw and "unquantized" in t.notes
            continue
        assert t.values.dtype == np.float32 and t.values.shape == t.raw.shape
        np.testing.assert_array_equal(t.decode(), t.values)
        assert t.codes.min() >= t.format.code_min and t.codes.max() <= t.format.code_max
        assert np.issubdtype(t.codes.dtype, np.integer)
        # The values are what the layer's own quantizer computes (up to the STE rounding it reports).
        direct = np.asarray(t.quantizer(tf().constant(t.raw)), np.float32)
        assert np.count_nonzero(direct != t.values) == t.ste_rounded


@pytest.mark.parametrize("case", ["batchnorm_no_center", "batchnorm_no_scale", "batchnorm"])
def test_batchnorm_parameters_pair_with_their_own_quantizer(case):
    """model_save_quantized_weights pairs by position and slips when gamma or beta is absent."""
    model = zoo.randomize(zoo.CASES[case].build(), seed=5)
    layer = model.get_layer("q")
    record = extract(model)["q"]
    own = {
        "gamma": layer.gamma_quantizer_internal,
        "beta": layer.beta_quantizer_internal,
        "moving_mean": layer.mean_quantizer_internal,
        "moving_variance": layer.variance_quantizer_internal,
    }
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}
    assert set(record.tensors) == set(weights)
    for name, tensor in record.tensors.items():
        np.testing.assert_array_equal(tensor.raw, weights[name])
        expected = np.asarray(own[name](tf().constant(weights[name])), np.float32)
        np.testing.assert_array_equal(tensor.values, expected)
    if case == "batchnorm_no_center":
        # The slip QKeras makes: the variance quantized by the mean quantizer differs.
        slipped = np.asarray(layer.mean_quantizer_internal(tf().constant(weights["moving_variance"])))
        assert not np.array_equal(slipped, record["moving_variance"].values)


def test_folded_layers_export_the_folded_values():
    model = zoo.randomize(zoo.CASES["conv2d_batchnorm"].build(), seed=7)
    layer = model.get_layer("q")
    record = extract(model)["q"]
    k, b = (np.asarray(w, np.float64) for w in (layer.kernel, layer.bias))
    bn = layer.batchnorm
    inv = np.asarray(bn.gamma, np.float64) / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    np.testing.assert_allclose(record["kernel"].raw, k * inv, rtol=1e-6)
    np.testing.assert_allclose(
        record["bias"].raw, inv * (b - np.asarray(bn.moving_mean)) + np.asarray(bn.beta), rtol=1e-5, atol=1e-6
    )
    assert record["kernel"].per_channel and record["kernel"].scale_axis == 3


def test_auto_po2_scales_are_per_output_channel_powers_of_two():
    model = zoo.randomize(zoo.CASES["depthwise"].build(), seed=2)
    t = extract(model)["q"]["depthwise_kernel"]
    # (H, W, C, M): QKeras computes the auto scale per multiplier m (last axis), not per channel.
    assert t.shape == (3, 3, 3, 2) and t.scale.shape == (2,) and t.scale_axis == 3
    mantissa, _ = np.frexp(t.scale)
    assert np.all(mantissa == 0.5)


def test_activation_formats_are_recorded():
    Q = zoo.Q
    inp = zoo.keras.Input((6,))
    x = Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_relu(4,2)", name="d")(inp)
    x = Q.QActivation("quantized_tanh(5)", name="a")(x)
    x = zoo.keras.layers.Dense(3, activation="relu", name="plain")(x)
    ex = extract(zoo.keras.Model(inp, x))
    (act,) = ex["d"].activations
    assert act.format.kind == "fixed" and act.format.bits == 4 and not act.format.signed
    assert ex["a"].activations[0].quantizer_str == "quantized_tanh(5)"
    plain = ex["plain"]
    assert plain["kernel"].quantized is False and "unquantized" in plain["kernel"].notes
    assert plain.activations[0].format.kind == "float"


@pytest.mark.parametrize("name", list(zoo.ACTIVATION_CASES))
def test_activation_layer_output_lies_on_its_recorded_format(name):
    from qextract.tensor import decode

    model = zoo.ACTIVATION_CASES[name][1]()
    x = (np.random.default_rng(0).standard_normal((64, 20)) * 3).astype(np.float32)
    y = model.predict(x, verbose=0)
    (act,) = extract(model)["q"].activations
    fmt = act.format
    if fmt.kind == "po2":
        mantissa, exponent = np.frexp(y)
        assert np.all((np.abs(mantissa) == 0.5) | (y == 0))
        assert (exponent - 1)[y != 0].min() >= fmt.exponent_min and (exponent - 1)[y != 0].max() <= fmt.exponent_max
        return
    codes = np.rint(y / fmt.step).astype(np.int64)
    np.testing.assert_array_equal(decode(fmt, codes, np.float32(fmt.step)), y)
    assert codes.min() >= fmt.code_min and codes.max() <= fmt.code_max
    assert len(np.unique(codes)) > 3  # the input spans the range
