"""An adversarial review of issue 9 ("Trust"): the combinations the separate pieces did not meet.

Each test failed before its fix. References are independent: the flatten
orders are checked against Keras's own activations flattened by NumPy as
PyTorch flattens them (NCHW), round trips against the model's own output.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract.cli import main
from qextract.errors import ModelLoadError, UnsupportedError, UntrustedCodeError, VerificationError

keras = zoo.keras
Q = zoo.Q
H5 = Path(qextract.__file__).parent / "examples" / "digits_qcnn.h5"
BITS = "quantized_bits(8,0,1)"


def _dense(units: int, name: str) -> object:
    return Q.QDense(units, kernel_quantizer=BITS, bias_quantizer=BITS, name=name)


def _conv(filters: int, name: str) -> object:
    return Q.QConv2D(filters, 3, kernel_quantizer=BITS, bias_quantizer=BITS, name=name)


def _quiet_save(model: object, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)


# ------------------------------------------------------------- no code from a model file


@pytest.fixture(scope="module")
def code_models(tmp_path_factory):
    """An .h5 with a Lambda renamed .keras, and an .h5 whose RNN cell wrapper carries a marshalled lambda."""
    from tf_keras.src.layers.rnn.cell_wrappers import ResidualWrapper

    d = tmp_path_factory.mktemp("code")
    marker = d / "ran.txt"
    write = f"open({str(marker)!r}, 'a').write('ran')"
    inp = keras.Input((4,))
    lam = keras.layers.Lambda(eval(f"lambda x: ({write}, x)[1]"), name="evil")
    _quiet_save(keras.Model(inp, lam(keras.layers.Dense(3, name="fc")(inp))), d / "lambda.h5")
    shutil.copy(d / "lambda.h5", d / "renamed.keras")  # Keras reads a .keras that is no zip archive as HDF5
    cell = ResidualWrapper(keras.layers.SimpleRNNCell(3), residual_fn=eval(f"lambda i, o: ({write}, o)[1]"))
    seq = keras.Input((5, 3))
    _quiet_save(keras.Model(seq, keras.layers.RNN(cell, name="rnn")(seq)), d / "residual.h5")
    marker.unlink(missing_ok=True)
    return d, marker


def test_an_h5_named_keras_is_checked_for_code(code_models):
    d, marker = code_models
    marker.unlink(missing_ok=True)
    with pytest.raises(UntrustedCodeError, match=r"layer 'evil' \(Lambda\) carries Python code"):
        qextract.load_model(d / "renamed.keras")
    assert not marker.exists(), "the Lambda's code ran although the model was refused"
    if not zoo.LEGACY:  # Keras 3 reads a .keras name only as a zip archive: refused by name, code not run
        with pytest.raises(ModelLoadError, match="an HDF5 model file named .keras"):
            qextract.load_model(d / "renamed.keras", trusted=True)
        assert not marker.exists()
        return
    assert [layer.name for layer in qextract.load_model(d / "renamed.keras", trusted=True).layers][-1] == "evil"
    assert marker.exists()  # what loading does when trusted: the refusal above was a real one


def test_a_cell_wrapper_with_marshalled_code_is_refused(code_models, capsys):
    d, marker = code_models
    marker.unlink(missing_ok=True)
    assert main(["inspect", str(d / "residual.h5")]) == 3
    assert "'residual_wrapper' (marshalled function) carries Python code" in capsys.readouterr().err
    assert not marker.exists()


# ------------------------------------------------------------- nothing lost, no internal errors


def test_a_symlink_loop_is_a_clear_error(tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink(tmp_path / "other", loop)
    os.symlink(loop, tmp_path / "other")
    assert main(["export", str(H5), "--out", str(loop)]) == 8
    assert main(["inspect", str(loop), "--csv", str(tmp_path / "t.csv")]) == 3
    err = capsys.readouterr().err
    assert "internal error" not in err and "exists and is not a folder" in err and "no such model file" in err


def test_verify_samples_have_an_upper_bound(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # argparse's usage error; it was an internal MemoryError
        main(["verify", str(tmp_path), "--model", str(H5), "--samples", "1000000000"])
    assert info.value.code == 2 and "argument --samples: must be at most 10000" in capsys.readouterr().err


# ------------------------------------------------------------- layouts say what they mean, at every boundary


def _dropout_model() -> object:
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Dropout(0.1, name="drop")(keras.layers.Flatten(name="flat")(_conv(3, "c")(inp)))
    return keras.Model(inp, _dense(5, "fc")(x), name="dropout")


def _head_model() -> object:
    head = keras.Sequential([keras.layers.InputLayer((48,)), _dense(5, "fc")], name="head")
    inp = keras.Input((6, 6, 2))
    return keras.Model(inp, head(keras.layers.Flatten(name="flat")(_conv(3, "c")(inp))), name="headed")


def _backbone_model() -> object:
    backbone = keras.Sequential(
        [keras.layers.InputLayer((6, 6, 2)), _conv(3, "c"), keras.layers.Flatten(name="flat")], name="bb"
    )
    inp = keras.Input((6, 6, 2))
    return keras.Model(inp, _dense(5, "fc")(backbone(inp)), name="backboned")


def _time_distributed_model() -> object:
    inp = keras.Input((2, 6, 6, 2))
    x = keras.layers.TimeDistributed(_conv(3, "c"), name="tdc")(inp)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="tdf")(x)
    return keras.Model(inp, keras.layers.TimeDistributed(_dense(5, "fc"), name="td")(x), name="timed")


def _flattened(model: object, x: np.ndarray) -> np.ndarray:
    """What the Flatten flattens, from Keras itself: (N, H, W, C), or (N, T, H, W, C) per time step."""
    if "bb" in [layer.name for layer in model.layers]:
        return model.get_layer("bb").get_layer("c")(x).numpy()  # the backbone's first layer, on the model's input
    conv = next(layer for layer in model.layers if layer.name in ("c", "tdc"))
    return keras.Model(model.input, conv.output)(x).numpy()


FLATTEN_MODELS = {"dropout": _dropout_model, "nested head": _head_model, "nested backbone": _backbone_model,
                  "TimeDistributed": _time_distributed_model}  # fmt: skip


@pytest.fixture(scope="module")
def flatten_models():
    return {name: zoo.randomize(build(), seed=3) for name, build in FLATTEN_MODELS.items()}


@pytest.mark.parametrize("name", FLATTEN_MODELS)
def test_oihw_dense_rows_follow_pytorchs_flatten_across_boundaries(flatten_models, name, tmp_path):
    model = flatten_models[name]
    result = qextract.export(model, tmp_path / "e", layout="oihw", formats=["npz"])
    fc = next(layer for layer in result.manifest.to_json()["layers"] if layer["name"].endswith("fc"))
    assert fc["flatten_order"] == "CHW" and fc["flatten_shape"] == [4, 4, 3]
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape[1:])).astype(np.float32)
    nchw = np.moveaxis(_flattened(model, x), -1, -3)  # channels first, as PyTorch holds them
    flat = nchw.reshape(*nchw.shape[:-3], -1)
    with np.load(tmp_path / "e" / "weights.npz") as z:
        kernel, bias = z[f"{fc['name']}/kernel"], z[f"{fc['name']}/bias"]
    np.testing.assert_allclose(flat @ kernel.T + bias, model(x).numpy(), atol=2e-5)


@pytest.mark.parametrize("name", ["TimeDistributed", "nested backbone"])
@pytest.mark.parametrize("layout", ["oihw", "hwio"])
def test_an_export_loads_back_at_every_boundary(flatten_models, name, layout, tmp_path):
    model = flatten_models[name]
    qextract.export(model, tmp_path / "e", layout=layout, formats=["npz", "mem"], dense_as_conv=True)
    assert bool(qextract.verify(tmp_path / "e", model)["passed"].all())
    fresh = FLATTEN_MODELS[name]()
    qextract.load_weights(fresh, tmp_path / "e")
    x = np.random.default_rng(1).standard_normal((2, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_an_export_of_a_conv1d_flatten_dense_loads_back(tmp_path):
    """flatten_order 'CL' / 'LC' (rank 2) was an unknown flatten order to load_weights."""

    def build() -> object:
        inp = keras.Input((7, 2))
        x = Q.QConv1D(3, 3, kernel_quantizer=BITS, bias_quantizer=BITS, name="c")(inp)
        return keras.Model(inp, _dense(4, "fc")(keras.layers.Flatten()(x)))

    model = zoo.randomize(build(), seed=5)
    x = np.random.default_rng(2).standard_normal((3, 7, 2)).astype(np.float32)
    for layout, order in (("oihw", "CL"), ("ohwi", "LC")):
        result = qextract.export(model, tmp_path / layout, layout=layout, formats=["npz"])
        assert result.manifest.to_json()["layers"][-1]["flatten_order"] == order
        fresh = build()
        qextract.load_weights(fresh, tmp_path / layout)
        np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_loading_wrapped_qkeras_layers_is_quiet(tmp_path):
    seq = keras.Input((5, 3))
    lstm = Q.QLSTM(2, kernel_quantizer=BITS, recurrent_quantizer=BITS, bias_quantizer=BITS, name="l")
    _quiet_save(keras.Model(seq, keras.layers.Bidirectional(lstm, name="bi")(seq)), tmp_path / "bi.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qextract.load_model(tmp_path / "bi.h5")
    assert not [str(w.message)[:100] for w in caught if "serialize()" in str(w.message)]


# ------------------------------------------------------------- the report of wrapped quantized layers


def test_the_float_twin_replaces_quantized_layers_inside_wrappers(flatten_models):
    model = flatten_models["TimeDistributed"]
    twin = qextract.float_model(model)
    assert [type(twin.get_layer(n).layer).__name__ for n in ("tdc", "td")] == ["Conv2D", "Dense"]
    x = np.random.default_rng(4).standard_normal((16, *model.input_shape[1:])).astype(np.float32)
    table = qextract.error_report(model, x, quiet=True).set_index("layer")
    assert table.loc["tdc", "rmse"] > 0 and table.loc["td", "rmse"] > 0  # was 0: the twin computed the quantized layer


def test_a_wrapper_the_twin_cannot_see_through_is_refused():
    seq = keras.Input((5, 3))
    cell = Q.QLSTMCell(4, kernel_quantizer=BITS, recurrent_quantizer=BITS, bias_quantizer=BITS, name="cell")
    model = keras.Model(seq, keras.layers.RNN(cell, name="rnn")(seq))
    with pytest.raises(UnsupportedError, match=r"layer 'rnn' \(RNN\) holds QKeras layer\(s\) 'cell' \(QLSTMCell\)"):
        qextract.float_model(model)


# ------------------------------------------------------------- verify is a proof of every file, and says what it covers


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    model = zoo.randomize(_dropout_model(), seed=7)
    out = tmp_path_factory.mktemp("small") / "e"
    qextract.export(model, out, formats=["npz", "mem"])
    return model, out


def _without_mem(src: Path, dst: Path, *, keep_declared: bool) -> None:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["format"] != "mem"]
    for layer in manifest["layers"]:
        for t in layer["tensors"]:
            t["files"] = [p for p in t["files"] if not p.endswith(".mem")]
    if not keep_declared:
        manifest["formats"] = ["npz"]
    (dst / "manifest.json").write_text(json.dumps(manifest))


def test_verify_refuses_a_format_dropped_from_the_manifest(small_export, tmp_path):
    model, out = small_export
    _without_mem(out, tmp_path / "declared", keep_declared=True)
    with pytest.raises(VerificationError, match=r"tensor 'c/kernel' has no file of format\(s\) mem"):
        qextract.verify(tmp_path / "declared", model)
    _without_mem(out, tmp_path / "undeclared", keep_declared=False)  # the .mem files stay for a hardware flow to read
    with pytest.raises(VerificationError, match=r"the folder holds c\.bias\.mem, .*which the manifest does not list"):
        qextract.verify(tmp_path / "undeclared", model)


def test_verify_says_when_the_export_was_restricted(small_export, tmp_path, capsys):
    model, _ = small_export
    _quiet_save(model, tmp_path / "m.h5")
    assert main(["export", str(tmp_path / "m.h5"), "--out", str(tmp_path / "e"), "--layers", "fc", "--verify"]) == 0
    assert "verified 1 layers (the export holds only the layers it was restricted to: fc)" in capsys.readouterr().out


def test_layers_of_a_nested_model_include_a_layer_it_shares():
    shared = _dense(4, "shared")
    i1, i2 = keras.Input((4,)), keras.Input((4,))
    n1 = keras.Model(i1, _dense(4, "p")(shared(i1)), name="n1")
    n2 = keras.Model(i2, shared(_dense(4, "q")(i2)), name="n2")
    inp = keras.Input((4,))
    model = zoo.randomize(keras.Model(inp, n2(n1(inp))), seed=8)
    every = qextract.extract(model)
    assert [r.name for r in every if len(r)] == ["n1/shared", "n1/p", "n2/q"]  # the shared layer once
    assert sum(r.raw.size for rec in every for r in rec) == sum(int(np.prod(w.shape)) for w in model.weights)
    assert [r.name for r in qextract.extract(model, layers=["n2"]) if len(r)] == ["n1/shared", "n2/q"]
