"""Under qkeras-v3 the integer simulation, golden vectors and accumulator widths are refused by name.

The simulation reads tf-keras's graph nodes and QKeras 0.9's layer attributes; until it is ported, a
qkeras-v3 model gets an UnsupportedError (exit 4) that says so and names the environment that runs it,
never a TypeError from deep inside.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo

import qextract
from qextract.cli import main
from qextract.errors import UnsupportedError

pytestmark = pytest.mark.skipif(zoo.LEGACY, reason="a qkeras-v3 behaviour; QKeras 0.9 simulates (test_simulate.py)")


def test_simulate_vectors_and_widths_are_refused_by_name(tmp_path, capsys):
    model = qextract.load_model(zoo.EXAMPLE)
    x = np.zeros((4, 8, 8, 1), np.float32)
    for call in (
        lambda: qextract.simulate(model, x, input_format="ap_fixed<6,2>"),
        lambda: qextract.golden_vectors(model, x, tmp_path / "v", input_format="ap_fixed<6,2>"),
        lambda: qextract.accumulator_widths(model, "ap_fixed<6,2>"),
    ):
        with pytest.raises(UnsupportedError, match="not yet ported to qkeras-v3"):
            call()
    assert main(["simulate", str(zoo.EXAMPLE), "--data", "digits"]) == 4
    assert "not yet ported to qkeras-v3" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
