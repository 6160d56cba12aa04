"""The layer registries: one entry per layer class owns its kind, tensors, float twin and fused activation.

Driven by the registries and by :class:`~qextract.kinds.Kind`: every entry of
``LAYERS`` (QKeras, cases in tests/zoo.py) and ``KERAS_LAYERS`` (plain Keras,
cases here) is built and checked against what the layer itself does; every
kind must have a layout rule and a recompute route. Adding an entry or a kind
without them fails here.
"""

from __future__ import annotations

import inspect
import json
import zlib

import numpy as np
import pytest
import zoo

from qextract import _keras, extract, layouts
from qextract._keras import qkeras, tf
from qextract.analysis import taps
from qextract.exporting.exporter import export
from qextract.kinds import Kind, find_kind
from qextract.layers import KERAS_LAYERS, LAYERS, LayerSpec, class_spec, spec_for
from qextract.verification import recomputation as recompute
from qextract.verification.verifier import _NATIVE, VERIFIED_KINDS, verify

tf()
Q = qkeras()
keras = _keras.keras()
L = keras.layers

# Plain Keras class -> (input shape, a layer whose entry is that class's). Every KERAS_LAYERS key needs one.
KERAS_CASES = {
    "Layer": ((4, 4, 4, 2), lambda: L.Conv3D(3, 2, activation="relu")),  # any other class: the catch-all entry
    "RNN": ((5, 3), lambda: L.RNN(L.SimpleRNNCell(3))),
    "Conv1DTranspose": ((6, 3), lambda: L.Conv1DTranspose(2, 3, activation="relu")),
    "Conv3DTranspose": ((3, 3, 3, 2), lambda: L.Conv3DTranspose(2, 2, activation="relu")),
    "Dense": ((6,), lambda: L.Dense(4, activation="relu")),
    "Conv1D": ((7, 3), lambda: L.Conv1D(4, 3, activation="relu")),
    "Conv2D": ((6, 6, 2), lambda: L.Conv2D(3, 3, padding="same", strides=2, activation="relu")),
    "Conv2DTranspose": ((4, 4, 2), lambda: L.Conv2DTranspose(3, 3, strides=2, activation="relu")),
    "DepthwiseConv2D": ((6, 6, 2), lambda: L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu")),
    "SeparableConv1D": ((7, 3), lambda: L.SeparableConv1D(4, 3, activation="relu")),
    "SeparableConv2D": ((6, 6, 2), lambda: L.SeparableConv2D(4, 3, activation="relu")),
    "BatchNormalization": ((5, 3), lambda: L.BatchNormalization()),
    "SimpleRNN": ((5, 3), lambda: L.SimpleRNN(3)),
    "LSTM": ((5, 3), lambda: L.LSTM(3)),
    "GRU": ((5, 3), lambda: L.GRU(3)),
    "Bidirectional": ((5, 3), lambda: L.Bidirectional(L.LSTM(3))),
}


def _entries() -> dict[str, LayerSpec]:
    return {**LAYERS, **KERAS_LAYERS}


def _keras_model(name: str):
    shape, factory = KERAS_CASES[name]
    inp = keras.Input(shape)
    return zoo.randomize(keras.Model(inp, factory()(inp)), seed=zlib.crc32(name.encode()) % 1000)


def _zoo_model(class_name: str):
    """The first zoo case of a QKeras class; its layer under test is named "q"."""
    for case in zoo.CASES.values():
        if case.layer_class == class_name:
            return case.build(), case.input_shape
    for cls, build in zoo.ACTIVATION_CASES.values():
        if cls == class_name:
            return build(), (20,)
    raise AssertionError(f"no zoo case for {class_name}: add one to tests/zoo.py")


def _layer_under_test(entry: str):
    """(layer, input shape) for any registered class: the zoo's layer "q", or the Keras case's layer."""
    if entry in LAYERS:
        model, shape = _zoo_model(entry)
        return model.get_layer("q"), shape
    model = _keras_model(entry)
    return model.layers[-1], KERAS_CASES[entry][0]


# --- the tables agree with each other -------------------------------------------------------------


def test_every_keras_entry_has_a_case():
    assert set(KERAS_CASES) == set(KERAS_LAYERS), "add a case to KERAS_CASES for each new KERAS_LAYERS entry"


def test_every_entry_names_a_kind_and_every_kind_is_some_entrys():
    kinds = {name: spec.kind for name, spec in _entries().items()}
    assert all(isinstance(k, Kind) for k in kinds.values()), kinds
    assert {k for k in kinds.values()} == set(Kind), "a kind no layer class has"


def test_every_kind_has_a_layout_rule_and_a_recompute_route():
    assert set(layouts.rules.KINDS) == set(Kind), (
        "add the kind to qextract.layouts.rules.KINDS ({} if no layout applies)"
    )
    assert set(recompute.ROUTES) == set(Kind), "add the kind to qextract.recompute.ROUTES"
    assert set(VERIFIED_KINDS) == set(recompute.FEEDFORWARD) | set(recompute.RECURRENT)


def test_every_kind_with_tensors_to_lay_out_is_recomputed_in_numpy_and_read_back_by_verify():
    """A kind whose tensors a layout moves needs a NumPy route, and verify must know the tensors' native axes."""
    for kind, tensors in layouts.rules.KINDS.items():
        if tensors:
            assert kind in VERIFIED_KINDS, f"{kind} has layout rules but no NumPy recomputation"
        for tensor, rules in tensors.items():
            natives = [layouts.rules.NATIVE[r] for r in rules]
            moved = any(
                rule.pattern(r) != layouts.rules.NATIVE[r] for r in rules for rule in layouts.rules.LAYOUT_RULES
            )
            if moved and not any(len(native.split()) == 1 for native in natives):
                assert (kind, tensor) in _NATIVE, f"verify cannot read {kind} '{tensor}' back"


def test_every_qkeras_entry_declares_a_float_twin_consistent_with_its_activation():
    for name, spec in LAYERS.items():
        assert spec.twin is not None, f"{name}: no float twin"
        assert spec.fuses_activation == (spec.twin.activation in ("fused", "separate")), name


# --- each entry describes its layer ------------------------------------------------------------------


def _applies_activation(layer, shape) -> bool | None:
    """Whether ``layer.call`` applies ``layer.activation`` to its output (None: it has no settable activation)."""

    def sentinel(t):  # any output it touches becomes 7
        return t * 0.0 + 7.0

    if getattr(layer, "activation", None) is not None and _keras.generation().attribute(layer, "quantizer") is (
        layer.activation
    ):  # qkeras-v3's QActivation keeps its own quantizer in `activation`: the layer is that activation
        return None
    try:
        object.__setattr__(layer, "activation", sentinel)
    except AttributeError:  # a recurrent layer's activation is its cell's, inside the recurrence
        return None
    x = tf().constant(np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32))
    kwargs = {"training": False} if "training" in inspect.signature(layer.call).parameters else {}
    return bool(np.all(np.asarray(layer.call(x, **kwargs)) == 7.0))


@pytest.mark.parametrize("entry", sorted(_entries()))
def test_fuses_activation_says_whether_the_layer_applies_its_activation(entry):
    layer, shape = _layer_under_test(entry)
    spec = _entries()[entry]
    assert class_spec(layer) is spec
    applied = _applies_activation(layer, shape)
    assert spec.fuses_activation == bool(applied), (
        f"{entry}: the layer {'applies' if applied else 'ignores'} its activation"
    )


@pytest.mark.parametrize("entry", sorted(KERAS_LAYERS))
def test_plain_keras_entry_gives_its_kind_and_verifies(tmp_path, entry):
    model = _keras_model(entry)
    layer = model.layers[-1]
    spec = KERAS_LAYERS[entry]
    assert spec_for(layer) is spec
    record = extract(model)[layer.name]
    assert record.kind is spec.kind and len(record) > 0
    layout = "oihw" if layouts.rules.KINDS[spec.kind] else "hwio"  # a kind without layout rules exports natively only
    out = export(model, tmp_path / "e", layout=layout, formats=["npz"]).out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["kind"] for e in manifest["layers"] if e["name"] == layer.name] == [spec.kind.value]
    table = verify(out, model)
    assert list(table["passed"]) == [True], table.to_string()
    assert (table["route"][0] == "weights") == (spec.kind not in VERIFIED_KINDS)


def test_a_keras_rnn_around_a_qkeras_cell_takes_the_qkeras_layers_entry():
    cell = Q.QLSTMCell(3, kernel_quantizer="quantized_bits(6,0,1)", recurrent_quantizer="quantized_bits(6,0,1)")
    inp = keras.Input((5, 3))
    model = keras.Model(inp, L.RNN(cell)(inp))
    assert class_spec(model.layers[-1]) is spec_for(model.layers[-1]) is LAYERS["QLSTM"]


# --- taps follow the entries --------------------------------------------------------------------------


def _rows(layer, shape):
    inp = keras.Input(shape)
    model = keras.Model(inp, layer(inp))
    return [(r.stage, r.quantizer is not None) for r in taps.plan_rows(taps.graph(model)) if r.layer == layer.name]


def test_report_rows_follow_fuses_activation_and_kind():
    relu = "quantized_relu(4,1)"
    fused = _rows(Q.QDense(3, kernel_quantizer="quantized_bits(4,0,1)", activation=relu), (5,))
    assert fused == [(taps.PRE_ACTIVATION, False), (taps.OUTPUT, True)]
    ignored = _rows(Q.QBatchNormalization(activation=relu), (5,))  # QKeras never applies it
    assert ignored == [(taps.OUTPUT, False)]
    assert _rows(Q.QActivation(relu), (5,)) == [(taps.OUTPUT, True)]  # an activation layer: its output is quantized
    assert _rows(L.LSTM(3, activation=Q.quantized_tanh(4)), (4, 2)) == [(taps.OUTPUT, False)]


# --- the kind as a string -------------------------------------------------------------------------------


def test_a_kind_is_its_string_in_json_text_and_comparisons():
    assert json.dumps({"kind": Kind.DEPTHWISE_CONV2D}) == '{"kind": "depthwise_conv2d"}'
    assert str(Kind.CONV2D) == f"{Kind.CONV2D}" == format(Kind.CONV2D) == "conv2d"
    assert Kind.CONV2D == "conv2d" and "lstm" in (Kind.LSTM,) and {"gru": 1}[Kind.GRU] == 1
    assert find_kind("batchnorm") is Kind.BATCHNORM and find_kind("conv3d") is None
    assert all(find_kind(k.value) is k for k in Kind)
