"""QONNX export against the integer simulation: qonnx's executor equals ``qextract.simulate`` bit for bit.

Two computations that share nothing but the extraction: qonnx's ``execute_onnx`` running the exported
graph (onnxruntime and qonnx's own Quant kernels), and qextract's NumPy integer network. Every
quantized layer output the file records must be equal on the simulation's own quantized inputs,
for every network of ``tests/networks.py`` both support and the bundled example.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo
from networks import NETWORKS

import qextract
from qextract.errors import UnsupportedError
from qextract.network import simulate

pytest.importorskip("qonnx")
from qextract.exporting.qonnx import layer_outputs, run_qonnx, to_keras_order

H5 = zoo.EXAMPLE


def _compare(model, data, input_format, tmp_path) -> int:
    """How many quantized layer outputs were compared; fails at the first difference."""
    sim = simulate(model, data, input_format=input_format, batch_size=700)
    x = sim.input.values.astype(np.float32)  # on the input grid: both sides read exactly these inputs
    assert np.array_equal(x.astype(np.float64), sim.input.values)
    result = qextract.to_qonnx(model, tmp_path / "model.onnx")
    got = run_qonnx(result.path, x, full_context=True)
    compared = 0
    for o in layer_outputs(result.path):
        if not o.quantized or o.layer not in sim or sim[o.layer].codes is None:
            continue
        have = to_keras_order(got[o.tensor], o).astype(np.float64)
        want = sim[o.layer].values
        assert have.shape == want.shape, o.layer
        differ = int(np.count_nonzero(have != want))
        assert differ == 0, f"{o.layer}: {differ} of {want.size} values differ between qonnx and the simulation"
        compared += 1
    return compared


@pytest.mark.parametrize("name", list(NETWORKS))
def test_qonnx_executor_equals_the_integer_simulation(name, tmp_path):
    net = NETWORKS[name]
    model = net.build()
    try:
        qextract.to_qonnx(model, tmp_path / "probe.onnx")
    except UnsupportedError as e:  # stated, not skipped silently: the refusal must name a layer or quantizer
        assert "layer '" in str(e) or "quantizer" in str(e)
        pytest.skip(f"QONNX refuses {name}: {e}")
    data = net.data()
    assert len(data) >= 1000
    assert _compare(model, data, net.input_format, tmp_path) >= 1


def test_the_bundled_example_equals_the_integer_simulation(tmp_path):
    assert _compare(qextract.load_model(H5), "digits", "ap_fixed<6,2>", tmp_path) == 3  # act1, act2, act4
