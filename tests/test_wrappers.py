"""Every weight, exactly once: nested models, Bidirectional, TimeDistributed, RNN cells, and refusals.

The wrapper models are built here, in the test's own session. The references
are the model's own variables (``model.weights``), each layer's own quantizer
run on its raw weights, NumPy forward passes compared with ``model.predict``,
and the files an export writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zoo

import qextract
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.errors import QExtractError, UnsupportedError
from qextract.reading.nested import find_layer
from qextract.reading.summary import inspect_table
from qextract.verification import reference as R
from qextract.writers import FORMATS

Q = qkeras()
keras = _keras.keras()
KQ = "quantized_bits(6,0,1)"
BQ = "quantized_bits(8,2)"


def _qlstm(**kw: Any) -> Any:
    return Q.QLSTM(
        3,
        activation="tanh",
        recurrent_activation="sigmoid",
        kernel_quantizer=KQ,
        recurrent_quantizer=KQ,
        bias_quantizer=BQ,
        **kw,
    )


def _bi_lstm() -> Any:
    inp = keras.Input((5, 3))
    return keras.Model(inp, keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")(inp), name="bi_lstm")


def _bi_qlstm() -> Any:
    inp = keras.Input((5, 3))
    return keras.Model(inp, keras.layers.Bidirectional(_qlstm(), name="bi")(inp), name="bi_qlstm")


def _td_dense() -> Any:
    inp = keras.Input((5, 6))
    fc = Q.QDense(4, kernel_quantizer=KQ, bias_quantizer=BQ, activation="quantized_relu(4,2)", name="fc")
    return keras.Model(inp, keras.layers.TimeDistributed(fc, name="td")(inp), name="td_dense")


def _td_conv() -> Any:
    inp = keras.Input((2, 7, 7, 2))
    conv = Q.QConv2D(
        3,
        3,
        strides=2,
        padding="same",
        kernel_quantizer="quantized_bits(6,0,1,alpha='auto_po2')",
        bias_quantizer=BQ,
        name="conv",
    )
    return keras.Model(inp, keras.layers.TimeDistributed(conv, name="tdc")(inp), name="td_conv")


def _rnn_cell() -> Any:
    inp = keras.Input((5, 3))
    cell = Q.QLSTMCell(
        3,
        activation="tanh",
        recurrent_activation="sigmoid",
        kernel_quantizer=KQ,
        recurrent_quantizer=KQ,
        bias_quantizer=BQ,
    )
    return keras.Model(inp, keras.layers.RNN(cell, name="rnn")(inp), name="rnn_cell")


def _nested() -> Any:
    """A Sequential block, then a functional model holding a Sequential (keys down to ``head/mlp/fc1``)."""
    block = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            Q.QConv2D(
                4,
                3,
                strides=2,
                padding="same",
                kernel_quantizer="quantized_bits(6,0,1,alpha='auto_po2')",
                bias_quantizer=BQ,
                name="conv",
            ),
            Q.QBatchNormalization(
                gamma_quantizer="quantized_bits(6,2,1)",
                beta_quantizer=BQ,
                mean_quantizer=BQ,
                variance_quantizer="quantized_bits(8,3,keep_negative=0)",
                name="bn",
            ),
            Q.QActivation("quantized_relu(4,2)", name="act"),
            Q.QConv2DBatchnorm(
                4,
                3,
                padding="same",
                kernel_quantizer="quantized_bits(8,0,alpha='auto_po2')",
                bias_quantizer="quantized_bits(12,4)",
                name="convbn",
            ),
        ],
        name="block",
    )
    mlp = keras.Sequential(
        [keras.Input((64,)), Q.QDense(6, kernel_quantizer="quantized_po2(5,1)", bias_quantizer=BQ, name="fc1")],
        name="mlp",
    )
    h_in = keras.Input((64,), name="h_in")
    head = keras.Model(h_in, Q.QDense(3, kernel_quantizer=KQ, name="fc2")(mlp(h_in)), name="head")
    inp = keras.Input((8, 8, 2), name="x")
    out = head(keras.layers.Flatten(name="flat")(block(inp)))
    return keras.Model(inp, out, name="nested")


WRAPPERS: dict[str, Callable[[], Any]] = {
    "bidirectional_lstm": _bi_lstm,
    "bidirectional_qlstm": _bi_qlstm,
    "time_distributed_dense": _td_dense,
    "time_distributed_conv": _td_conv,
    "rnn_qlstm_cell": _rnn_cell,
    "nested_models": _nested,
}
ALL_MODELS: dict[str, Callable[[], Any]] = {
    **{f"zoo_{k}": c.build for k, c in zoo.CASES.items()},
    **{f"zoo_{k}": b for k, (_, b) in zoo.ACTIVATION_CASES.items()},
    **WRAPPERS,
}


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return {name: zoo.randomize(build(), seed=i) for i, (name, build) in enumerate(WRAPPERS.items())}


def _size(var: Any) -> int:
    return int(np.prod(var.shape))


# --- every weight variable, exactly once -----------------------------------------------


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_every_weight_variable_is_read_exactly_once(built, name):
    """A weight variable is every entry of model.weights, trainable or not (moving statistics too).

    Each lies in exactly one layer record: read into its tensors, or declared
    state (step counters, an adaptive activation's moving min/max). A tensor
    read from one variable has its shape and raw values; several variables
    make one tensor only where the layer folds them (conv-batchnorm).
    """
    model = built[name] if name in built else ALL_MODELS[name]()
    variables = {_keras.generation().variable_path(w): w for w in model.weights}
    assert len(variables) == len(model.weights), "variable names must be unique for this count"
    ex = qextract.extract(model)

    per_record = Counter(v for r in ex for v in {*(v for t in r for v in t.variables), *r.state})
    assert per_record == Counter(list(variables)), "every variable in exactly one layer record"

    direct = [t for t in ex.tensors() if len(t.variables) == 1]
    folded = [t for t in ex.tensors() if len(t.variables) > 1]
    constants = [t for t in ex.tensors() if not t.variables]
    assert all(t.name == "average_multiplier" for t in constants)
    assert all(r.class_name.endswith("Batchnorm") for r in ex for t in r if t in folded)
    assert Counter(t.variables[0] for t in direct).most_common(1)[0][1] == 1 if direct else True
    for t in direct:
        var = variables[t.variables[0]]
        assert t.shape == tuple(var.shape)
        np.testing.assert_array_equal(t.raw, np.asarray(var, np.float32))

    state = [v for r in ex for v in r.state]
    only_folded = {v for t in folded for v in t.variables} - {t.variables[0] for t in direct}
    assert len(direct) + len(only_folded) + len(state) == len(model.weights)
    elements = sum(t.size for t in direct) + sum(_size(variables[v]) for v in [*only_folded, *state])
    assert elements == sum(_size(w) for w in model.weights)
    if not folded and not state:  # the plain statement: as many arrays and elements as the model has
        assert sum(len(r.tensors) for r in ex) - len(constants) == len(model.weights)
        assert sum(t.size for t in direct) == sum(_size(w) for w in model.weights)


def test_plain_bidirectional_keeps_both_directions(built):
    model = built["bidirectional_lstm"]
    record = qextract.extract(model)["bi"]
    assert record.kind == "bidirectional" and len(record) == 6
    layer = model.get_layer("bi")
    for direction, inner in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
        own = {w.name.split("/")[-1].split(":")[0]: np.asarray(w) for w in inner.weights}
        for name, value in own.items():
            np.testing.assert_array_equal(record[f"{direction}/{name}"].raw, value)
    assert not np.array_equal(record["forward/kernel"].raw, record["backward/kernel"].raw)


# --- quantized as the inner layer quantizes ---------------------------------------------


def _own(quantizer: Any, raw: np.ndarray) -> np.ndarray:
    return np.asarray(quantizer(tf().constant(raw)), np.float32)


def test_bidirectional_qlstm_is_quantized_by_its_qlstm(built):
    model = built["bidirectional_qlstm"]
    record = qextract.extract(model)["bi"]
    layer = model.get_layer("bi")
    for direction, inner in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
        cell = inner.cell
        for name, q in (
            ("kernel", cell.kernel_quantizer_internal),
            ("recurrent_kernel", cell.recurrent_quantizer_internal),
            ("bias", cell.bias_quantizer_internal),
        ):
            t = record[f"{direction}/{name}"]
            assert t.quantized
            np.testing.assert_array_equal(t.values, _own(q, np.asarray(getattr(cell, name))))
    assert {a.name for a in record.activations} >= {"forward/activation", "backward/recurrent_activation"}
    # The extracted values recompute the Keras layer: forward LSTM and reversed-time LSTM, concatenated.
    x = np.random.default_rng(2).standard_normal((4, 5, 3)).astype(np.float32)
    args = [
        [record[f"{d}/{n}"].values for n in ("kernel", "recurrent_kernel", "bias")] for d in ("forward", "backward")
    ]
    ours = np.concatenate([R.lstm(x, *args[0]), R.lstm(x[:, ::-1], *args[1])], axis=-1)
    y = np.asarray(model(x, training=False))
    np.testing.assert_allclose(ours, y, rtol=0, atol=2e-6 * np.max(np.abs(y)) + 1e-7)


def test_rnn_around_a_qkeras_cell_is_quantized_by_the_cell(built):
    model = built["rnn_qlstm_cell"]
    record = qextract.extract(model)["rnn"]
    cell = model.get_layer("rnn").cell
    assert record.kind == "lstm" and record.config["units"] == 3
    np.testing.assert_array_equal(
        record["kernel"].values, _own(cell.kernel_quantizer_internal, np.asarray(cell.kernel))
    )
    assert all(t.quantized for t in record)


def test_time_distributed_dense_is_its_inner_layer_per_step(built):
    model = built["time_distributed_dense"]
    ex = qextract.extract(model)
    record = ex["td/fc"]
    inner = model.get_layer("td").layer
    assert (record.class_name, record.kind) == ("QDense", "dense")
    assert record.config["input_shape"] == [None, 6] and record.config["output_shape"] == [None, 4]
    np.testing.assert_array_equal(
        record["kernel"].values, _own(inner.kernel_quantizer_internal, np.asarray(inner.kernel))
    )
    np.testing.assert_array_equal(record["bias"].values, _own(inner.bias_quantizer_internal, np.asarray(inner.bias)))
    assert [a.quantizer_str for a in record.activations] == ["quantized_relu(4,2)"]
    x = np.random.default_rng(3).standard_normal((3, 5, 6)).astype(np.float32)
    pre = R.dense(x.reshape(-1, 6), record["kernel"].values, record["bias"].values).reshape(3, 5, 4)
    act = record.activations[0].quantizer
    ours = np.asarray(act(tf().constant(pre.astype(np.float32))))
    np.testing.assert_allclose(ours, np.asarray(model(x, training=False)), rtol=0, atol=1e-6)


def test_nested_models_give_path_keys_with_their_own_quantizers(built):
    model = built["nested_models"]
    ex = qextract.extract(model)
    assert ex.names == [
        "x",
        "block/conv",
        "block/bn",
        "block/act",
        "block/convbn",
        "flat",
        "head/h_in",
        "head/mlp/fc1",
        "head/fc2",
    ]
    fc1 = model.get_layer("head").get_layer("mlp").get_layer("fc1")
    t = ex["head/mlp/fc1"]["kernel"]
    assert t.format.kind == "po2" and t.layer == "head/mlp/fc1"
    np.testing.assert_array_equal(t.values, _own(fc1.kernel_quantizer_internal, np.asarray(fc1.kernel)))
    conv = ex["block/conv"]
    assert conv.config["input_shape"] == [None, 8, 8, 2] and conv.kind == "conv2d"
    assert ex["block/convbn"].state and ex["block/act"].activations


# --- downstream: export, verify, inspect, weight report ---------------------------------


@pytest.mark.parametrize(
    "which", ["nested_models", "time_distributed_conv", "time_distributed_dense", "bidirectional_qlstm"]
)
def test_export_and_verify_end_to_end(built, tmp_path, which):
    model = built[which]
    ex = qextract.extract(model)
    result = qextract.export(ex, tmp_path / "out", layout="ohwi", formats=list(FORMATS))
    manifest = json.loads(result.manifest_path.read_text())
    keys = {t["key"] for layer in manifest["layers"] for t in layer["tensors"]}
    assert keys == {t.key for t in ex.tensors()}
    assert len(keys) == len(list(ex.tensors()))
    for f in manifest["files"]:  # plain file names, no folders from '/' in keys
        assert "/" not in f["path"] and (result.out_dir / f["path"]).is_file()
    mem = [f["path"] for f in manifest["files"] if f["format"] == "mem"]
    assert len(mem) == len(keys)
    if which == "nested_models":
        assert {"head_mlp_fc1.kernel.mem", "block_convbn.bias.mem"} <= set(mem)
    with np.load(result.out_dir / "weights.npz") as npz:
        assert {k for k in npz.files if ":" not in k} == keys
    header = (result.out_dir / "weights.h").read_text()
    arrays = re.findall(r"^static const \w+ (\w+)\[", header, flags=re.MULTILINE)
    assert all(re.fullmatch(r"[A-Za-z]\w*", a) for a in arrays) and len(arrays) == len(set(arrays))
    if shutil.which("gcc"):
        (tmp_path / "main.c").write_text(
            '#include <stdint.h>\n#include "out/weights.h"\nint main(void) { return 0; }\n'
        )
        subprocess.run(["gcc", "-std=c99", "-fsyntax-only", "-Wall", "main.c"], cwd=tmp_path, check=True)

    table = qextract.verify(result.out_dir, model)
    assert table["passed"].all(), table.to_string()  # every layer with tensors is recomputed, recurrent ones too
    assert set(table["layer"]) == {r.name for r in ex if r.tensors}

    rows = inspect_table(ex)
    assert set(rows["layer"]) >= {r.name for r in ex if r.tensors}
    weights = qextract.weight_report(ex)
    assert list(zip(weights["layer"], weights["tensor"])) == [(t.layer, t.name) for t in ex.tensors()]


def test_subclassed_model_used_as_a_layer(tmp_path):
    class Block(keras.Model):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.fc = Q.QDense(3, kernel_quantizer=KQ, bias_quantizer=BQ, name="fc")

        def call(self, x: Any) -> Any:
            return self.fc(x)

    inp = keras.Input((5,))
    model = zoo.randomize(keras.Model(inp, Block(name="blk")(inp), name="sub"))
    ex = qextract.extract(model)
    assert ex["blk/fc"]["kernel"].quantized and ex["blk/fc"].config["input_shape"] == [None, 5]
    result = qextract.export(model, tmp_path / "o", formats=["npz"])
    assert qextract.verify(result.out_dir, model)["passed"].tolist() == [True]


def test_layers_selection_takes_outer_names_and_keys(built, tmp_path):
    model = built["nested_models"]
    assert [r.name for r in qextract.extract(model, layers=["head"])] == ["head/h_in", "head/mlp/fc1", "head/fc2"]
    assert [r.name for r in qextract.extract(model, layers=["head/mlp"])] == ["head/mlp/fc1"]
    assert [r.name for r in qextract.extract(model, layers=["block/bn", "head/fc2"])] == ["block/bn", "head/fc2"]
    with pytest.raises(QExtractError, match=r"no layer named 'head/nope'.*head/mlp/fc1"):
        qextract.extract(model, layers=["head/nope"])
    manifest = qextract.export(qextract.extract(model), tmp_path / "o", layers=["head"]).manifest.to_json()
    assert [layer["name"] for layer in manifest["layers"] if layer["tensors"]] == ["head/mlp/fc1", "head/fc2"]
    td = built["time_distributed_dense"]
    assert [r.name for r in qextract.extract(td, layers=["td"])] == ["td/fc"]


def test_find_layer_resolves_every_key(built):
    model = built["nested_models"]
    for record in qextract.extract(model):
        assert find_layer(model, record.name).name == record.name.rsplit("/", 1)[-1]
    assert find_layer(built["time_distributed_dense"], "td/fc") is built["time_distributed_dense"].get_layer("td").layer
    with pytest.raises(ValueError, match="head/nope"):
        find_layer(model, "head/nope")


def test_h5_round_trip_and_cli(built, tmp_path, capsys):
    from qextract.cli import main

    for which in ("nested_models", "bidirectional_qlstm"):
        model = built[which]
        path = tmp_path / f"{which}.h5"
        model.save(path)
        loaded = qextract.load_model(path)
        a, b = qextract.extract(model), qextract.extract(loaded)
        assert a.names == b.names
        for x, y in zip(a.tensors(), b.tensors()):
            assert x.key == y.key
            np.testing.assert_array_equal(x.values, y.values)
    h5 = tmp_path / "nested_models.h5"
    assert main(["inspect", str(h5), "--layers", "head"]) == 0
    out = capsys.readouterr().out
    assert "head/mlp/fc1" in out and "block/conv" not in out


# --- what cannot be handled is refused by name -------------------------------------------


def test_plain_layer_hiding_a_qkeras_layer_is_refused():
    class Block(keras.layers.Layer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.fc = Q.QDense(4, kernel_quantizer=KQ, name="inner_fc")

        def call(self, x: Any) -> Any:
            return self.fc(x)

    inp = keras.Input((4,))
    model = keras.Model(inp, Block(name="blk")(inp))
    with pytest.raises(
        UnsupportedError,
        match=r"layer 'blk' \(Block\) holds QKeras layer 'inner_fc' \(QDense\) inside a plain Keras layer",
    ) as e:
        qextract.extract(model)
    assert e.value.exit_code == 4


def test_unknown_wrapper_is_refused():
    class Twice(keras.layers.Wrapper):
        def call(self, x: Any) -> Any:
            return self.layer(self.layer(x))

    inp = keras.Input((4,))
    model = keras.Model(inp, Twice(Q.QDense(4, kernel_quantizer=KQ), name="twice")(inp))
    with pytest.raises(UnsupportedError, match=r"layer 'twice' is a Twice, a wrapper qextract cannot see through"):
        qextract.extract(model)


def test_variable_held_by_no_leaf_is_refused():
    class Gained(keras.Model):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.fc = Q.QDense(3, kernel_quantizer=KQ, name="fc")

        def build(self, shape: Any) -> None:
            self.gain = self.add_weight(name="gain", shape=(3,))
            super().build(shape)

        def call(self, x: Any) -> Any:
            return self.fc(x) * self.gain

    inp = keras.Input((4,))
    model = keras.Model(inp, Gained(name="gained")(inp), name="m")
    with pytest.raises(
        UnsupportedError, match=r"model 'm': weight variable\(s\) \S*gain\S* belong to no layer qextract reads"
    ):
        qextract.extract(model)


def test_plain_layer_with_two_kernels_names_them_apart():
    class Pair(keras.layers.Layer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.a, self.b = keras.layers.Dense(2, name="a"), keras.layers.Dense(2, name="b")

        def call(self, x: Any) -> Any:
            return self.a(x) + self.b(x)

    inp = keras.Input((3,))
    model = keras.Model(inp, Pair(name="pair")(inp))
    record = qextract.extract(model)["pair"]
    assert sorted(record.tensors) == ["a/bias", "a/kernel", "b/bias", "b/kernel"]


def test_a_layer_shared_by_two_models_is_extracted_once():
    shared = Q.QDense(4, kernel_quantizer=KQ, name="shared")
    inner = keras.Sequential([keras.Input((4,)), shared], name="inner")
    inp = keras.Input((4,))
    model = keras.Model(inp, shared(inner(inp)), name="twice_used")
    ex = qextract.extract(model)
    assert [r.name for r in ex if r.tensors] == ["inner/shared"]
    assert sum(len(r) for r in ex) == len(model.weights) == 2


@pytest.mark.skipif(not zoo.LEGACY, reason="Keras 3 refuses '/' in a layer name: the clash cannot arise")
def test_a_layer_name_with_a_slash_that_equals_a_nested_key_is_refused():
    inner = keras.Sequential([keras.Input((4,)), Q.QDense(4, kernel_quantizer=KQ, name="fc")], name="blk")
    inp = keras.Input((4,))
    model = keras.Model(inp, Q.QDense(2, kernel_quantizer=KQ, name="blk/fc")(inner(inp)), name="clash")
    with pytest.raises(UnsupportedError, match=r"layer key\(s\) 'blk/fc' name more than one layer"):
        qextract.extract(model)
