"""The whole network in integers (issue 11): ``simulate`` against QKeras's own forward pass, bit for bit.

References are independent of the code under test: QKeras's forward pass
(a Keras model tapping every layer's output, fed the simulation's quantized
input), NumPy integer arithmetic written here, and the QKeras quantizers run
by TensorFlow. ``compare()`` is checked against those, never trusted alone.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zoo
from networks import NETWORKS, images, jet_features, seeded

import qextract
from qextract._keras import qkeras, tf
from qextract.cli import main
from qextract.errors import DataError, UnsupportedError, UsageError
from qextract.network import LayerResult, simulate, simulate_batches
from qextract.numformat import FixedPoint

Q = qkeras()
keras = zoo.keras
EXAMPLE = zoo.EXAMPLE


def qkeras_outputs(model, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Every named layer's output by QKeras itself: one tap model, the model's own layers."""
    taps = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out = taps.predict(x.astype(np.float32), batch_size=512, verbose=0)
    out = out if isinstance(out, list) else [out]
    return {n: np.asarray(o, np.float64) for n, o in zip(names, out)}


def assert_quantized_outputs_equal(sim, model, exact_accumulators: bool = True) -> int:
    """Every quantized output equals QKeras bit for bit; so does every accumulator below 2**24 LSBs."""
    names = list(sim)
    theirs = qkeras_outputs(model, names, sim.input.values)
    checked = 0
    for name in names:
        r = sim[name]
        if r.codes is None:
            continue
        assert r.codes.dtype == np.int64
        assert np.array_equal(r.codes * np.asarray(r.scale), r.values)
        if r.format is not None:
            assert r.codes.min() >= r.format.code_min and r.codes.max() <= r.format.code_max, name
            assert np.array_equal(r.values, theirs[name]), f"{name}: {int((r.values != theirs[name]).sum())} differ"
            checked += 1
        elif exact_accumulators and max(abs(int(r.codes.min())), abs(int(r.codes.max()))) < 2**24:
            assert np.array_equal(r.values, theirs[name]), f"{name}: {int((r.values != theirs[name]).sum())} differ"
    return checked


@pytest.fixture(scope="module")
def built() -> dict[str, object]:
    return {name: net.build() for name, net in NETWORKS.items()}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_equals_qkeras_bit_for_bit(built, name):
    net, model = NETWORKS[name], built[name]
    sim = simulate(model, net.data(), input_format=net.input_format, batch_size=700)
    assert sim.samples >= 1000
    assert assert_quantized_outputs_equal(sim, model) >= 2
    table = sim.compare(model)
    assert table.attrs["passed"] and table.attrs["samples"] == sim.samples
    quantized = table[~table["format"].isin(["accumulator", "float"])]
    assert (quantized["equal"] == quantized["elements"]).all()  # nothing to explain here: all exact
    assert list(table["layer"]) == list(sim)


def test_bundled_example_equals_qkeras_and_explains_its_wide_accumulator():
    model = qextract.load_model(EXAMPLE)
    sim = simulate(model, "digits", input_format="ap_fixed<6,2>")
    assert sim.samples == 1797 and list(sim) == [layer.name for layer in model.layers[1:]]
    assert assert_quantized_outputs_equal(sim, model) == 4  # act1, act2, act4 and the flatten of act4
    table = sim.compare(model).set_index("layer")
    assert table.attrs["passed"]
    # convbn4's accumulator reaches 1e8 LSBs: float32 rounds it; every differing element is attributed
    theirs = qkeras_outputs(model, ["convbn4"], sim.input.values)["convbn4"]
    differing = int((sim["convbn4"].values != theirs).sum())
    assert differing > 0 and table.loc["convbn4", "differ"] == differing
    assert table.loc["convbn4", "float32_accumulator"] == differing and table.loc["convbn4", "unexplained"] == 0
    assert table.attrs["first_divergence"] == "convbn4"
    assert sim["bn2"].exact_integer is False and sim["act2"].exact_integer is False and sim["sep3"].exact_integer
    assert table.loc["act4", "equal"] == table.loc["act4", "elements"]


def test_layer_results_carry_codes_scales_formats_and_accumulators(built):
    model = built["cnn_separable"]
    sim = simulate(model, images()[:300], batch_size=128)
    r = sim["conv1"]
    assert isinstance(r, LayerResult) and r.inputs == ("quant_input",) and r.class_name == "QConv2D"
    acc = r.accumulator
    assert acc is not None and acc.samples == 300
    per_channel = r.codes.reshape(-1, r.codes.shape[-1])
    assert np.array_equal(acc.min, per_channel.min(axis=0)) and np.array_equal(acc.max, per_channel.max(axis=0))
    assert acc.input_format == sim["quant_input"].format and acc.input_scale == sim["quant_input"].scale
    # independent integer reference: the input codes times the kernel codes, in Python-exact int64
    ex = qextract.extract(model)
    k = ex["conv1"]["kernel"]
    xq = np.pad(sim["quant_input"].codes, [(0, 0), (1, 1), (1, 1), (0, 0)])
    ref = np.zeros(r.codes.shape, np.int64)
    for i in range(3):
        for j in range(3):
            ref += xq[:, i : i + 8, j : j + 8, :] @ k.codes[i, j].astype(np.int64)
    k_scale, x_scale = float(k.scale), float(sim["quant_input"].scale)
    assert np.array_equal(ref * (k_scale * x_scale), r.values)
    act = sim["relu1"]
    assert act.format == FixedPoint(bits=5, integer=2, is_signed=False) and act.scale == 2.0**-3
    assert act.accumulator is None and act.exact_integer
    with pytest.raises(KeyError, match="no simulated layer 'nope'.*conv1"):
        sim["nope"]


def test_layers_keeps_only_the_named_results_and_refuses_unknown_names(built):
    model = built["residual"]
    sim = simulate(model, images()[:64], input_format="ap_ufixed<5,1>", layers=["add", "dense"])
    assert list(sim) == ["add", "dense"]
    with pytest.raises(UsageError, match="no layer.*'nope'.*conv_a"):
        simulate(model, images()[:8], layers=["nope"])


def test_zoo_layers_equal_qkeras_or_are_refused_by_name():
    """Every case of the single-layer test zoo: simulated and compared, or refused naming layer and class."""
    rng = np.random.default_rng(3)
    for name, case in zoo.CASES.items():
        model = zoo.randomize(case.build(), seed=5)
        x = rng.standard_normal((600, *case.input_shape)).astype(np.float32)
        try:
            sim = simulate(model, x, input_format="ap_fixed<8,3>", batch_size=300)
        except UnsupportedError as e:
            assert "'q'" in str(e) and case.layer_class in str(e), name
            assert case.layer_class in ("QConv2DTranspose", "QSimpleRNN", "QLSTM", "QGRU", "QBidirectional"), name
            continue
        table = sim.compare(model)
        assert table.attrs["passed"], (name, table.attrs["unexplained"])
        theirs = qkeras_outputs(model, ["q"], sim.input.values)["q"]
        row = table.iloc[0]
        assert row["differ"] == int((sim["q"].values != theirs).sum()), name
        if row["float32_scale"] == 0 and row["float32_accumulator"] == 0 and row["float_input"] == 0:
            assert np.array_equal(sim["q"].values, theirs), name


# ------------------------------------------------------------------------------ float32 rounding


def _wide_accumulator_model():
    inp = keras.Input((64,))
    x = Q.QDense(4, kernel_quantizer="quantized_bits(12,11,alpha=1)", use_bias=False, name="wide")(inp)
    x = Q.QActivation("quantized_bits(16,31,alpha=1)", name="coarse")(x)
    return seeded(keras.Model(inp, x), 21, spread=900.0)


def test_float32_accumulator_rounding_is_counted_and_explained():
    model = _wide_accumulator_model()
    x = np.random.default_rng(1).uniform(-32768, 32767, (1200, 64)).astype(np.float32)
    sim = simulate(model, x, input_format="ap_fixed<16,16,AP_RND_CONV,AP_SAT>")
    # independent exact reference: Python integers
    ex = qextract.extract(model)
    w = ex["wide"]["kernel"]
    exact = sim.input.codes @ w.codes.astype(np.int64)
    assert np.abs(exact).max() > 2**24
    assert np.array_equal(sim["wide"].codes * np.asarray(sim["wide"].scale), exact * float(w.scale))
    theirs = qkeras_outputs(model, ["wide", "coarse"], sim.input.values)
    differ = sim["wide"].values != theirs["wide"]
    assert differ.sum() > 100  # float32 cannot hold these sums
    # every difference is float32's: within (n + 2) u sum|x w| of the exact value
    magnitude = np.abs(sim.input.codes).astype(np.float64) @ np.abs(w.codes).astype(np.float64) * float(w.scale)
    assert np.all(np.abs(theirs["wide"] - sim["wide"].values) <= 66 * 2.0**-24 * magnitude)
    table = sim.compare(model).set_index("layer")
    assert table.loc["wide", "differ"] == differ.sum() == table.loc["wide", "float32_accumulator"]
    coarse_differ = int((sim["coarse"].values != theirs["coarse"]).sum())
    explained = table.loc["coarse", ["propagated", "float32_accumulator"]].sum()
    assert table.loc["coarse", "differ"] == coarse_differ == explained
    assert table.attrs["passed"] and table.loc["wide", "unexplained"] == 0


def test_non_power_of_two_scale_rounding_is_counted_and_explained():
    inp = keras.Input((48,))
    x = Q.QDense(
        8,
        kernel_quantizer="binary(alpha='auto')",
        bias_quantizer="quantized_bits(8,3)",
        activation="quantized_relu(8,3)",
        name="fc",
    )(inp)
    model = seeded(keras.Model(inp, x), 22)
    sim = simulate(model, jet_features().repeat(3, axis=1), input_format="ap_fixed<8,3>")
    theirs = qkeras_outputs(model, ["fc"], sim.input.values)["fc"]
    table = sim.compare(model).set_index("layer")
    assert table.loc["fc", "differ"] == int((sim["fc"].values != theirs).sum())
    assert table.loc["fc", "differ"] == table.loc["fc", "float32_scale"] and table.attrs["passed"]
    # the scale really is not a power of two, and the codes are what QKeras's quantizer gives the exact sums
    alpha = qextract.extract(model)["fc"]["kernel"].scale
    assert np.any(np.frexp(alpha)[0] != 0.5)
    assert np.abs(sim["fc"].values - theirs).max() <= 2.0**-4  # at most one step of quantized_relu(8,3)


def test_an_unexplained_difference_fails_the_comparison(monkeypatch):
    """A simulation that computes something else is caught: the comparison is not blind."""
    from qextract.network import shaping

    model = NETWORKS["jet_mlp_6bit"].build()
    real = shaping.Identity.run

    def wrong(self, inputs):
        out = real(self, inputs)
        if self.name == "relu2" and out.signal.codes is not None:
            object.__setattr__(out.signal, "codes", np.minimum(out.signal.codes + 1, 63))
        return out

    monkeypatch.setattr(shaping.Identity, "run", wrong)
    table = simulate(model, jet_features()[:200], input_format="ap_fixed<10,4>").compare(model).set_index("layer")
    assert not table.attrs["passed"] and table.loc["relu2", "unexplained"] > 0
    assert "relu2" in table.attrs["unexplained"][0]


# ------------------------------------------------------------------------------ refusals


def _model(*layers, shape=(8, 8, 1)):
    inp = keras.Input(shape)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize(
    "make,needles",
    [
        (
            lambda: _model(Q.QConv2DTranspose(2, 3, kernel_quantizer="quantized_bits(4,0,1)", name="up")),
            ["'up'", "QConv2DTranspose"],
        ),
        (lambda: _model(keras.layers.LSTM(3, name="rec"), shape=(5, 4)), ["'rec'", "LSTM"]),
        (
            lambda: _model(keras.layers.Flatten(), Q.QActivation("quantized_tanh(4)", name="t")),
            ["'t'", "quantized_tanh"],
        ),
        (lambda: _model(Q.QActivation("quantized_bits(6,2,alpha='auto')", name="a")), ["'a'", "alpha='auto'"]),
        (lambda: _model(Q.QActivation("stochastic_binary()", name="s")), ["'s'", "stochastic_binary", "random"]),
        (lambda: _model(keras.Sequential([keras.layers.Flatten()], name="inner")), ["'inner'", "nested model"]),
        (lambda: _model(keras.layers.Flatten(), keras.layers.Dense(4, activation="elu", name="e")), ["'e'", "elu"]),
    ],
)
def test_unsupported_layers_and_quantizers_are_refused_by_name(make, needles):
    model = make()
    x = np.zeros((2, *model.input_shape[1:]), np.float32)
    with pytest.raises(UnsupportedError) as info:
        simulate(model, x)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_every_refused_layer_is_named_in_one_message():
    model = _model(Q.QConv2DTranspose(2, 3, name="up1"), keras.layers.Cropping2D(1, name="crop"))
    with pytest.raises(UnsupportedError, match=r"'up1'.*'crop'"):
        simulate(model, np.zeros((1, 8, 8, 1), np.float32))


def test_shared_layers_are_refused():
    inp = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    model = keras.Model(inp, shared(shared(inp)))
    with pytest.raises(UnsupportedError, match="'shared' is called 2 times"):
        simulate(model, np.zeros((1, 4), np.float32))


# ------------------------------------------------------------------------------ input formats


def test_ap_fixed_input_formats_round_and_overflow_as_hls():
    model = NETWORKS["sequential_mlp"].build()
    x = np.linspace(-20, 20, 16 * 64, dtype=np.float32).reshape(64, 16)
    default = simulate(model, x, input_format="ap_fixed<8,3>").input
    codes = np.floor(x.astype(np.float64) * 32)  # AP_TRN, then AP_WRAP: the low 8 bits, two's complement
    wrapped = (codes.astype(np.int64) + 128) % 256 - 128
    assert np.array_equal(default.codes, wrapped) and default.scale == 1 / 32
    assert default.format == FixedPoint(bits=8, integer=2, is_signed=True)
    sat = simulate(model, x, input_format="ap_fixed<8,3,AP_RND_CONV,AP_SAT>").input
    assert np.array_equal(sat.codes, np.clip(np.rint(x.astype(np.float64) * 32), -128, 127))
    unsigned = simulate(model, x, input_format=" ap_ufixed<6,1, AP_RND, AP_SAT> ").input
    assert np.array_equal(unsigned.codes, np.clip(np.floor(x.astype(np.float64) * 32 + 0.5), 0, 63))
    assert not unsigned.format.is_signed


def test_quantizer_input_formats_equal_qkeras_quantizers():
    model = NETWORKS["jet_mlp_6bit"].build()
    x = jet_features()[:500]
    for spec in ("quantized_bits(8,0,1)", Q.quantized_bits(6, 2, 1, alpha=1), "quantized_relu(4,1)"):
        q = Q.quantizers.get_quantizer(spec) if isinstance(spec, str) else spec
        reference = q(tf().constant(x)).numpy().astype(np.float64)
        sim = simulate(model, x, input_format=spec)
        assert np.array_equal(sim.input.values, reference), spec
        assert sim.compare(model).attrs["passed"]


def test_an_input_wider_than_float32_cannot_be_compared(built):
    model = built["jet_mlp_6bit"]
    x = jet_features()[:20] * np.float32(1000)  # saturates at 512 - 2**-30: 39 significant bits
    sim = simulate(model, x, input_format="ap_fixed<40,10,AP_RND_CONV,AP_SAT>")
    assert sim.input.codes.max() == 2**39 - 1 and sim.samples == 20  # simulating is fine...
    with pytest.raises(UsageError, match="float32"):  # ...but QKeras cannot be fed the same input
        sim.compare(model)


def test_the_first_qactivation_quantizes_the_input_by_default_else_it_stays_float(built):
    sim = simulate(built["sequential_mlp"], jet_features()[:50])
    assert sim.input.format == sim["quant_input"].format and np.array_equal(sim.input.codes, sim["quant_input"].codes)
    floats = simulate(built["jet_mlp_6bit"], jet_features()[:50])
    assert floats.input.codes is None and not floats["fc1"].exact_integer and floats["relu1"].codes is not None


@pytest.mark.parametrize(
    "spec,error,needle",
    [
        ("ap_fixed<8>", UsageError, "not understood"),
        ("ap_fixed<70,3>", UsageError, "width 70"),
        ("ap_fixed<8,3,AP_FOO>", UsageError, "AP_FOO"),
        ("ap_fixed<8,3,AP_RND,AP_SAT,2>", UsageError, "saturation bits 2"),
        ("quantized_nonsense(3)", UsageError, "not understood"),
        ("quantized_tanh(4)", UnsupportedError, "quantized_tanh"),
        (3.5, UsageError, "not understood"),
    ],
)
def test_bad_input_formats_are_refused(built, spec, error, needle):
    with pytest.raises(error, match=needle):
        simulate(built["jet_mlp_6bit"], jet_features()[:4], input_format=spec)


# ------------------------------------------------------------------------------ streaming and data


def _generated(n: int, batch: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    for start in range(0, n, batch):
        yield rng.standard_normal((min(batch, n - start), 16)).astype(np.float32)


def test_simulate_batches_streams_the_same_results(built):
    model, x = built["jet_mlp_fused_8bit"], jet_features()
    whole = simulate(model, x, input_format="ap_fixed<8,3>", batch_size=1000)
    parts = list(simulate_batches(model, x, input_format="ap_fixed<8,3>", batch_size=1000))
    assert [p.samples for p in parts] == [1000, 1000, 997]
    for name in whole:
        assert np.array_equal(np.concatenate([p[name].values for p in parts]), whole[name].values)
    lo = np.min([p["output"].accumulator.min for p in parts], axis=0)
    assert np.array_equal(lo, whole["output"].accumulator.min)


def test_simulate_batches_memory_does_not_grow_with_the_data(built):
    model = built["jet_mlp_6bit"]

    def peak(n: int) -> int:
        tracemalloc.start()
        for sim in simulate_batches(model, _generated(n, 500), input_format="ap_fixed<10,4>", batch_size=500):
            assert sim.samples == 500
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    peak(1000)  # warm caches
    small, large = peak(2000), peak(20000)
    assert large <= 1.2 * small, (small, large)


def test_wrong_data_shape_is_a_data_error_naming_the_shape(built):
    with pytest.raises(DataError, match=r"shape \(10, 15\).*\(N, 16\)"):
        simulate(built["jet_mlp_6bit"], np.zeros((10, 15), np.float32))
    with pytest.raises(DataError, match="batch_size"):
        simulate(built["jet_mlp_6bit"], np.zeros((10, 16), np.float32), batch_size=0)


def test_simulate_is_public():
    assert qextract.simulate is simulate and "simulate" in qextract.__all__


# ------------------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sim")
    model = NETWORKS["jet_mlp_6bit"].build()
    path = folder / "jet.h5"
    model.save(path, save_format="h5")
    data = folder / "x.npy"
    np.save(data, jet_features())
    return path, data


def test_cli_prints_the_comparison_table(saved, capsys, tmp_path):
    path, data = saved
    csv = tmp_path / "table.csv"
    code = main(["simulate", str(path), "--data", str(data), "--input-format", "ap_fixed<10,4>", "--csv", str(csv)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "float32_accumulator" in out and "relu3" in out and "pass" in out and "simulated 2997 samples" in out
    assert csv.read_text().startswith("layer,class,")


def test_cli_samples_and_the_bundled_example(capsys):
    assert (
        main(["simulate", str(EXAMPLE), "--data", "digits", "--input-format", "ap_fixed<6,2>", "--samples", "100"]) == 0
    )
    out = capsys.readouterr().out
    assert "simulated 100 samples" in out and "convbn4" in out


def test_cli_mismatch_exits_with_the_verification_code(saved, capsys, monkeypatch):
    from qextract.network import shaping

    real = shaping.Identity.run

    def wrong(self, inputs):
        out = real(self, inputs)
        if self.name == "relu1" and out.signal.codes is not None:
            object.__setattr__(out.signal, "codes", np.minimum(out.signal.codes + 1, 63))
        return out

    monkeypatch.setattr(shaping.Identity, "run", wrong)
    path, data = saved
    assert main(["simulate", str(path), "--data", str(data), "--input-format", "ap_fixed<10,4>"]) == 9
    err = capsys.readouterr().err
    assert "qextract: error:" in err and "relu1" in err and "without a float32 cause" in err


def test_cli_bad_data_shape_exits_with_the_data_code(saved, capsys, tmp_path):
    path, _ = saved
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 3), np.float32))
    assert main(["simulate", str(path), "--data", str(bad)]) == 7
    assert "shape (5, 3)" in capsys.readouterr().err
