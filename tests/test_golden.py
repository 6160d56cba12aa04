"""Golden vectors and accumulator widths of a whole model (``qextract vectors`` / ``qextract widths``).

References: the Keras model's own forward pass on the inputs read back from the vector files, and a
NumPy bound written here from QKeras's own quantized kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo

import qextract
from qextract.cli import main
from qextract.errors import UnsupportedError
from qextract.network.vectors import read_vectors

H5 = zoo.EXAMPLE
FORMAT = "ap_fixed<6,2>"
N = 40


@pytest.fixture(scope="module")
def model():
    return qextract.load_model(H5)


@pytest.fixture(scope="module")
def vectors(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "vectors"
    qextract.golden_vectors(model, "digits", out, samples=N, input_format=FORMAT)
    return out, read_vectors(out)


def test_vectors_of_quantized_layers_equal_the_keras_forward_pass(model, vectors):
    _, read = vectors
    assert list(read) == [layer.name for layer in model.layers if layer.name != "input"]
    conv1 = read["conv1"]
    x = conv1.input_codes * np.float64(conv1.input_scale)  # the quantized input, read back from the files
    assert conv1.input_codes.shape == (N, 8, 8, 1) and np.abs(conv1.input_codes).max() <= 32
    names = ["act1", "act2", "act4", "fc5"]
    keras = zoo.keras
    taps = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    for name, want in zip(names, taps.predict(x.astype(np.float32), verbose=0)):
        lv = read[name]
        got = lv.output_codes * np.asarray(lv.output_scale, np.float64)
        assert np.array_equal(got, want.astype(np.float64)), name
    assert read["softmax"].output_codes is None  # a float layer is written as floats, flagged


def test_the_hls4ml_testbench_files_hold_one_sample_per_line(vectors):
    out, read = vectors
    lines = (out / "tb_data" / "tb_input_features.dat").read_text().splitlines()
    assert len(lines) == N
    first = np.array([float(v) for v in lines[0].split()])
    conv1 = read["conv1"]
    assert np.array_equal(first, (conv1.input_codes[0] * conv1.input_scale).reshape(-1))
    assert len((out / "tb_data" / "tb_output_predictions.dat").read_text().splitlines()) == N


def test_cli_vectors_and_its_refusals(tmp_path, capsys):
    out = tmp_path / "v"
    args = ["vectors", str(H5), "--data", "digits", "--out", str(out), "--samples", "5", "--input-format", FORMAT]
    assert main(args) == 0
    assert "x 5 sample(s)" in capsys.readouterr().out
    assert main(args) == 8  # exists, no --force
    assert "On the command line: --out, --force." in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main([*args[:-2], "--force", "--layers", "nope"]) == 2


def test_widths_bound_the_dense_layer_exactly_and_contain_what_the_data_reaches(model):
    table = qextract.accumulator_widths(model, FORMAT, "digits")
    row = table.set_index("layer").loc["fc5"]
    # fc5 reads act4 = quantized_relu(6,2): codes 0..63 at 2**-4. Its worst case from QKeras's own kernel:
    fc5 = model.get_layer("fc5")
    w = fc5.kernel_quantizer_internal(fc5.kernel).numpy().astype(np.float64)
    b = fc5.bias_quantizer_internal(fc5.bias).numpy().astype(np.float64)
    step = row["step"]
    w_int = w * 2.0**-4 / step
    assert np.array_equal(w_int, np.round(w_int)), "the table's step holds every product"
    most = (np.maximum(w_int, 0) * 63).sum(axis=0) + b / step
    least = (np.minimum(w_int, 0) * 63).sum(axis=0) + b / step
    assert row["acc_max"] == most.max() and row["acc_min"] == least.min()
    assert row["bits"] == int(np.ceil(np.log2(max(most.max() + 1, -least.min())))) + 1
    observed = table.dropna(subset=["observed_min"])
    assert len(observed) >= 5
    assert (observed["observed_min"] >= observed["acc_min"]).all()
    assert (observed["observed_max"] <= observed["acc_max"]).all()


def test_widths_need_an_input_grid(model, capsys):
    with pytest.raises(UnsupportedError, match="layer 'conv1' .* fed by 'input'"):
        qextract.accumulator_widths(model)
    assert main(["widths", str(H5)]) == 4
    assert "On the command line: --input-format." in capsys.readouterr().err
    assert main(["widths", str(H5), "--input-format", FORMAT, "--layers", "fc5"]) == 0
    assert "fc5" in capsys.readouterr().out
