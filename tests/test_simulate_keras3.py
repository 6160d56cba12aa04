"""Under qkeras-v3 the integer simulation, golden vectors and accumulator widths run as under QKeras 0.9.

What differs on the Keras 3 stack and is checked here against the qkeras-v3 model's own ``predict``:
the bundled example is the ``.keras`` file; Keras 3 stores the graph as nodes of ``args``/``kwargs``
(with ``mask=None`` on layers that take a mask); qkeras-v3's QBatchNormalization computes
``1 / sqrt(variance + epsilon) * gamma`` itself (and may quantize it), which TensorFlow's graph
optimizer rewrites inside ``predict``; Keras 3's ``hard_sigmoid`` has slope 1/6, not 0.2.
The whole-network and per-network tests (tests/test_simulate.py, test_golden.py) run on both stacks.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo
from networks import seeded

import qextract
from qextract._keras import qkeras, quiet_config
from qextract.cli import main
from qextract.errors import UnsupportedError
from qextract.network import simulate
from qextract.network.plan import build
from qextract.network.vectors import read_vectors

pytestmark = pytest.mark.skipif(zoo.LEGACY, reason="the qkeras-v3 stack; QKeras 0.9 is tests/test_simulate.py")

Q = qkeras()
keras = zoo.keras


def predicted(model, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The named layers' outputs by the model's own predict (one tap model of its layers)."""
    taps = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out = taps.predict(x.astype(np.float32), batch_size=512, verbose=0)
    return {n: np.asarray(o, np.float64) for n, o in zip(names, out if isinstance(out, list) else [out])}


@pytest.fixture(scope="module")
def example():
    assert zoo.EXAMPLE.suffix == ".keras"
    return qextract.load_model(zoo.EXAMPLE)


def test_the_bundled_example_equals_its_own_predict_bit_for_bit(example):
    sim = simulate(example, "digits", input_format="ap_fixed<6,2>")
    names = list(sim)
    assert names == [layer.name for layer in example.layers[1:]]
    theirs = predicted(example, names, sim.input.values)
    for name in ("act1", "act2", "act4", "flatten", "bn2"):  # quantized outputs, and the float32 batch norm
        assert np.array_equal(sim[name].values, theirs[name]), name
    wide = sim["convbn4"].values != theirs["convbn4"]  # its accumulator reaches 1e8 LSBs: float32 rounds it
    table = sim.compare(example).set_index("layer")
    assert table.attrs["passed"] and table.attrs["unexplained"] == []
    assert table.loc["convbn4", "float32_accumulator"] == int(wide.sum()) > 0
    assert table.loc["bn2", "differ"] == 0
    probabilities = example.predict(sim.input.values.astype(np.float32), verbose=0)
    assert np.allclose(sim["softmax"].values, probabilities, rtol=1e-5, atol=1e-7)
    assert np.array_equal(sim["softmax"].values.argmax(-1), probabilities.argmax(-1))


def _bn_model(**bn):
    inp = keras.Input((16,), name="features")
    x = Q.QDense(8, kernel_quantizer="quantized_bits(4,0,alpha=1)", bias_quantizer="quantized_bits(4,0,alpha=1)")(inp)
    x = Q.QBatchNormalization(name="bn", **bn)(x)
    x = Q.QActivation("quantized_relu(4,2)", name="relu")(x)
    return seeded(keras.Model(inp, x), 21)


@pytest.mark.parametrize(
    "bn",
    [{}, {"inverse_quantizer": "quantized_bits(8,2,alpha=1)", "gamma_quantizer": None, "variance_quantizer": None}],
    ids=["plain", "inverse_quantizer"],
)
def test_qbatchnormalization_is_simulated_as_predict_computes_it(bn):
    model = _bn_model(**bn)
    x = np.random.default_rng(3).standard_normal((2000, 16)).astype(np.float32)
    sim = simulate(model, x, input_format="ap_fixed<8,3>")
    theirs = predicted(model, ["bn", "relu"], sim.input.values)
    assert np.array_equal(sim["bn"].values, theirs["bn"])  # the float32 batch norm itself, every element
    assert np.array_equal(sim["relu"].values, theirs["relu"])
    if bn:  # the constants are the quantized inverse: on the quantizer's grid of 2**-5
        inv = build(model, "ap_fixed<8,3>").step("bn").inv.astype(np.float64)
        assert np.array_equal(inv * 32, np.round(inv * 32))


def test_keras3_hard_sigmoid_is_simulated_with_its_own_slope():
    inp = keras.Input((16,))
    x = Q.QDense(4, kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,2,alpha=1)")(inp)
    model = seeded(keras.Model(inp, keras.layers.Activation("hard_sigmoid", name="hs")(x)), 22)
    x = np.random.default_rng(4).standard_normal((1000, 16)).astype(np.float32) * 2
    sim = simulate(model, x, input_format="ap_fixed<8,3>")
    theirs = predicted(model, ["hs"], sim.input.values)["hs"]
    pre = sim[model.layers[1].name].values
    assert np.allclose(sim["hs"].values, np.clip(pre + 3.0, 0.0, 6.0) / 6.0)  # NumPy: relu6(x + 3) / 6
    assert np.allclose(sim["hs"].values, theirs, rtol=0, atol=1e-6)
    assert not np.allclose(theirs, np.clip(0.2 * pre + 0.5, 0.0, 1.0), atol=1e-3)  # tf-keras's slope is not it
    assert sim.compare(model).attrs["passed"]


def test_layers_keras3_calls_with_mask_none_are_refused_for_what_they_are():
    inp = keras.Input((5, 4))
    model = keras.Model(inp, keras.layers.LSTM(3, name="rec")(inp))
    kwargs = quiet_config(model)["layers"][1]["inbound_nodes"][0]["kwargs"]
    assert "mask" in kwargs and kwargs["mask"] is None  # recorded by Keras 3, not passed by the model's code
    with pytest.raises(UnsupportedError, match=r"layer 'rec' \(LSTM\) is not simulated"):
        simulate(model, np.zeros((2, 5, 4), np.float32))


def test_cli_simulate_vectors_and_widths_of_the_keras_file(tmp_path, capsys):
    example = str(zoo.EXAMPLE)
    assert main(["simulate", example, "--data", "digits", "--input-format", "ap_fixed<6,2>", "--samples", "50"]) == 0
    assert "convbn4" in capsys.readouterr().out
    out = tmp_path / "vectors"
    args = ["vectors", example, "--data", "digits", "--out", str(out), "--samples", "3"]
    assert main([*args, "--input-format", "ap_fixed<6,2>"]) == 0
    read = read_vectors(out)
    model = qextract.load_model(zoo.EXAMPLE)
    act4 = read["act4"]
    x = read["conv1"].input_codes * np.float64(read["conv1"].input_scale)
    want = predicted(model, ["act4"], x)["act4"]
    assert np.array_equal(act4.output_codes * np.float64(act4.output_scale), want)
    capsys.readouterr()
    assert main(["widths", example, "--input-format", "ap_fixed<6,2>", "--layers", "fc5"]) == 0
    assert "fc5" in capsys.readouterr().out
