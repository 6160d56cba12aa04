"""verify is a proof (issue 9, deliverable 6): paths stay inside the export, the export is complete,
every layer kind qextract exports is recomputed, and hostile manifests end in clear errors.

The references are the Keras/QKeras layers' own forward passes (through verify) and, for the
NumPy activations, QKeras's quantizer objects themselves.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.cli import main
from qextract.errors import NotAnExportError, VerificationError
from qextract.exporting.exporter import export
from qextract.padding import same_pad
from qextract.verification import reference as R
from qextract.verification.verifier import verify

Q = qkeras()
K = _keras.keras()
L = K.layers
KQ = "quantized_bits(6,0,1)"


# --- a small model and its export, edited copy by copy -------------------------------------------------


@pytest.fixture(scope="module")
def small():
    inp = K.Input((6, 6, 3))
    x = Q.QConv2D(
        4, 3, kernel_quantizer="quantized_bits(6,0,1,alpha='auto_po2')", bias_quantizer="quantized_bits(8,2)", name="c"
    )(inp)
    x = Q.QBatchNormalization(name="bn")(x)
    x = L.Flatten()(x)
    x = Q.QDense(3, kernel_quantizer="quantized_bits(4,0,1)", name="d")(x)
    return zoo.randomize(K.Model(inp, x, name="small"), seed=1)


@pytest.fixture(scope="module")
def base(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "e"
    export(small, out, formats=["npz", "mem"], dense_as_conv=True)
    assert verify(out, small)["passed"].all()
    return out


def copy_of(base: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "e"
    shutil.copytree(base, out)
    return out, json.loads((out / "manifest.json").read_text())


def save(out: Path, manifest: dict) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def entry(manifest: dict, name: str) -> dict:
    return next(layer for layer in manifest["layers"] if layer["name"] == name)


def tensor(manifest: dict, key: str) -> dict:
    return next(t for layer in manifest["layers"] for t in layer["tensors"] if t["key"] == key)


def drop_layer(manifest: dict, name: str, out: Path) -> None:
    """Remove a layer as if it had never been exported: its entry, its own files, its keys in shared files."""
    keys = {t["key"] for t in entry(manifest, name)["tensors"]}
    manifest["layers"] = [layer for layer in manifest["layers"] if layer["name"] != name]
    kept = []
    for f in manifest["files"]:
        if set(f.get("tensors", [])) <= keys:
            (out / f["path"]).unlink()
            continue
        f["tensors"] = [k for k in f.get("tensors", []) if k not in keys]
        kept.append(f)
    manifest["files"] = kept


# --- paths ---------------------------------------------------------------------------------------------


def test_an_absolute_path_is_refused_even_to_the_right_file(base, small, tmp_path):
    out, manifest = copy_of(base, tmp_path)
    npz = next(f for f in manifest["files"] if f["path"] == "weights.npz")
    npz["path"] = str((out / "weights.npz").resolve())  # same bytes, same sha256: only the path is wrong
    for layer in manifest["layers"]:
        for t in layer["tensors"]:
            t["files"] = [npz["path"] if p == "weights.npz" else p for p in t["files"]]
    save(out, manifest)
    with pytest.raises(
        VerificationError, match=r"manifest\.json: files\[\d+\]\.path '/.*weights\.npz' is not a relative path inside"
    ):
        verify(out, small)


def test_a_path_with_dotdot_is_refused(base, small, tmp_path):
    out, manifest = copy_of(base, tmp_path)
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(out / "weights.npz", tmp_path / "elsewhere" / "weights.npz")
    for f in manifest["files"]:
        f["path"] = "../elsewhere/weights.npz" if f["path"] == "weights.npz" else f["path"]
    for layer in manifest["layers"]:
        for t in layer["tensors"]:
            t["files"] = ["../elsewhere/weights.npz" if p == "weights.npz" else p for p in t["files"]]
    save(out, manifest)
    with pytest.raises(
        VerificationError, match=r"files\[\d+\]\.path '\.\./elsewhere/weights\.npz' is not a relative path"
    ):
        verify(out, small)


def test_a_symlink_leading_out_of_the_folder_is_refused(base, small, tmp_path):
    out, _ = copy_of(base, tmp_path)
    outside = tmp_path / "outside.npz"
    shutil.move(out / "weights.npz", outside)
    os.symlink(outside, out / "weights.npz")  # same bytes through the link: the sha256 still matches
    with pytest.raises(VerificationError, match=r"files\[\d+\]\.path 'weights\.npz' leads outside the export folder"):
        verify(out, small)


def test_the_export_folder_itself_may_be_a_symlink(base, small, tmp_path):
    out, _ = copy_of(base, tmp_path)
    os.symlink(out, tmp_path / "link")
    assert verify(tmp_path / "link", small)["passed"].all()


# --- completeness ----------------------------------------------------------------------------------------


def test_a_layer_deleted_from_the_manifest_is_named(base, small, tmp_path):
    out, manifest = copy_of(base, tmp_path)
    drop_layer(manifest, "bn", out)
    save(out, manifest)
    with pytest.raises(
        VerificationError,
        match=r"the model's layer\(s\) 'bn' have weights but are not in the export.*selected_layers is null",
    ):
        verify(out, small)


def test_a_layer_deleted_but_still_held_by_the_files_is_caught(base, small, tmp_path):
    out, manifest = copy_of(base, tmp_path)
    manifest["layers"] = [layer for layer in manifest["layers"] if layer["name"] != "bn"]
    save(out, manifest)
    with pytest.raises(
        VerificationError, match=r"files hold tensor\(s\) bn/beta.* that no layer of the manifest lists"
    ):
        verify(out, small)


def test_an_export_without_tensors_is_refused(base, small, tmp_path):
    out, manifest = copy_of(base, tmp_path)
    manifest["layers"], manifest["files"] = [], []
    save(out, manifest)
    with pytest.raises(VerificationError, match=r"manifest\.json: the export holds no tensors"):
        verify(out, small)


def test_a_restricted_export_says_so_and_verify_requires_exactly_those_layers(small, tmp_path):
    full = export(small, tmp_path / "full", formats=["npz"]).manifest.to_json()
    assert full["selected_layers"] is None
    out = export(small, tmp_path / "e", formats=["npz", "mem"], layers=["d", "c"]).out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selected_layers"] == ["c", "d"]  # in model order
    table = verify(out, small)
    assert list(table["layer"]) == ["c", "d"] and table["passed"].all() and table.attrs["selected_layers"] == ["c", "d"]
    drop_layer(manifest, "d", out)
    save(out, manifest)
    with pytest.raises(
        VerificationError, match=r"selected_layers names 'c', 'd' but the manifest lists 'c'; missing: 'd'"
    ):
        verify(out, small)


def test_an_extraction_of_some_layers_is_recorded_as_a_selection(small, tmp_path):
    manifest = export(qextract.extract(small, layers=["c"]), tmp_path / "e", formats=["npz"]).manifest.to_json()
    assert manifest["selected_layers"] == ["c"]
    assert list(verify(tmp_path / "e", small)["passed"]) == [True]


# --- hostile manifests ---------------------------------------------------------------------------------------


def _edit(name: str):
    """Edits of a real manifest, each introducing one defect."""

    def set_in(path_fn, key, value):
        return lambda m: path_fn(m).__setitem__(key, value)

    return {
        "scale axis out of range": set_in(lambda m: tensor(m, "c/kernel")["scale"], "axis", 7),
        "scale of the wrong length": set_in(lambda m: tensor(m, "c/kernel")["scale"], "values", [0.5, 0.25]),
        "a shape of 10**10 elements": set_in(lambda m: tensor(m, "c/kernel"), "shape", [100000, 100000]),
        "an input_shape of 10**10 elements": set_in(
            lambda m: entry(m, "c")["geometry"], "input_shape", [None, 100000, 100000, 1]
        ),
        "epsilon as a string": set_in(lambda m: entry(m, "bn")["geometry"], "epsilon", "small"),
        "strides as a string": set_in(lambda m: entry(m, "c")["geometry"], "strides", "22"),
        "flatten_shape as a string": set_in(lambda m: entry(m, "d"), "flatten_shape", "2x2x16"),
        "flatten_shape that does not fit": set_in(lambda m: entry(m, "d"), "flatten_shape", [2, 2, 5]),
        "axes that mean nothing": set_in(lambda m: tensor(m, "c/kernel"), "axes", "QQQQ"),
        "explicit_padding without its bottom": set_in(
            lambda m: entry(m, "c")["geometry"], "explicit_padding", {"top": 0}
        ),
        "groups that do not divide the channels": set_in(lambda m: entry(m, "c")["geometry"], "groups", 2),
        "a tensor key of another layer": set_in(lambda m: tensor(m, "c/kernel"), "key", "d/kernel"),
        "selected_layers as a string": lambda m: m.__setitem__("selected_layers", "c"),
    }[name]


HOSTILE = {
    "scale axis out of range": (
        VerificationError,
        r"manifest\.json: tensor 'c/kernel' scale\.axis 7 is out of range for its shape \[3, 3, 3, 4\]",
    ),
    "scale of the wrong length": (
        VerificationError,
        r"tensor 'c/kernel' scale\.values has 2 value\(s\); expected 1 or 4 values",
    ),
    "a shape of 10**10 elements": (
        VerificationError,
        r"weights\.npz: c/kernel: 'c/kernel:codes' is int8\[3, 3, 3, 4\], expected int8\[100000, 100000\]",
    ),
    "an input_shape of 10**10 elements": (
        VerificationError,
        r"layer 'c' geometry\.input_shape \[None, 100000, 100000, 1\] is not the model layer's",
    ),
    "epsilon as a string": (
        VerificationError,
        r"manifest\.json: does not follow the manifest schema "
        r"\(field \$\.layers\[2\]\.geometry\.epsilon: 'small' is not of type 'number'",
    ),
    "strides as a string": (
        VerificationError,
        r"field \$\.layers\[1\]\.geometry\.strides: '22' is not of type 'array'",
    ),
    "flatten_shape as a string": (
        VerificationError,
        r"field \$\.layers\[4\]\.flatten_shape: '2x2x16' is not of type 'array'",
    ),
    "flatten_shape that does not fit": (
        VerificationError,
        r"manifest\.json: tensor 'd/kernel' with axes 'HWIO', shape \[4, 4, 4, 3\] and flatten_shape \[2, 2, 5\] "
        r"cannot be read back",
    ),
    "axes that mean nothing": (VerificationError, r"manifest\.json: c/kernel: cannot interpret exported axes 'QQQQ'"),
    "explicit_padding without its bottom": (
        VerificationError,
        r"manifest\.json: layer 'c' \(conv2d\) cannot be recomputed from its manifest entry \(KeyError: 'bottom'\)",
    ),
    "groups that do not divide the channels": (
        VerificationError,
        r"layer 'c' \(conv2d\) cannot be recomputed .*groups=2",
    ),
    "a tensor key of another layer": (
        VerificationError,
        r"layers\[1\]\.tensors\[0\]\.key 'd/kernel' is not 'c/kernel'",
    ),
    "selected_layers as a string": (
        VerificationError,
        r"field \$\.selected_layers: 'c' is not of type 'array', 'null'",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_manifest_is_a_clear_error_naming_the_field(base, small, tmp_path, case):
    out, manifest = copy_of(base, tmp_path)
    _edit(case)(manifest)
    save(out, manifest)
    error, message = HOSTILE[case]
    with pytest.raises(error, match=message):
        verify(out, small)


def test_a_manifest_that_is_not_utf8_is_not_an_export(base, small, tmp_path):
    out, _ = copy_of(base, tmp_path)
    (out / "manifest.json").write_bytes(b'{"schema_version": 1, "model": "\xff\xfe"}')
    with pytest.raises(
        NotAnExportError, match=r"manifest\.json: not a readable manifest \(not UTF-8 text: byte 32 is b'\\xff'\)"
    ):
        verify(out, small)


def test_a_manifest_nested_too_deeply_is_not_an_export(base, small, tmp_path):
    out, _ = copy_of(base, tmp_path)
    (out / "manifest.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(NotAnExportError, match=r"manifest\.json: not a readable manifest \(JSON nested too deeply"):
        verify(out, small)


@pytest.fixture(scope="module")
def small_h5(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.h5"
    small.save(path)
    return path


@pytest.mark.parametrize("case,code", [("not utf-8", 12), ("scale axis out of range", 9), ("epsilon as a string", 9)])
def test_the_cli_exits_with_the_error_code_not_an_internal_error(base, small_h5, tmp_path, capsys, case, code):
    out, manifest = copy_of(base, tmp_path)
    if case == "not utf-8":
        (out / "manifest.json").write_bytes(b"\xff\xfe\x00")
    else:
        _edit(case)(manifest)
        save(out, manifest)
    assert main(["verify", str(out), "--model", str(small_h5)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qextract: error: ") and "manifest.json" in err[0], err


# --- every kind recomputed ---------------------------------------------------------------------------------------


def build_many():
    """One model with a layer of every kind verify now recomputes, fed by several inputs."""
    img = K.Input((8, 8, 4), name="img")
    cf = K.Input((4, 7, 9), name="cf")
    cf1 = K.Input((4, 11), name="cf1")
    seq = K.Input((5, 3), name="seq")
    vec = K.Input((6,), name="vec")
    vol = K.Input((2, 3, 2, 2), name="vol")
    outs = [
        Q.QConv2D(6, 3, groups=2, padding="same", strides=2, kernel_quantizer=KQ, bias_quantizer=KQ, name="grouped")(
            img
        ),
        Q.QConv1D(4, 3, groups=2, padding="causal", kernel_quantizer=KQ, name="grouped1d")(L.Reshape((8, 32))(img)),
        L.Conv2D(4, 2, groups=4, name="grouped_plain")(img),
        Q.QConv2D(
            5,
            4,
            strides=2,
            padding="same",
            data_format="channels_first",
            kernel_quantizer=KQ,
            bias_quantizer=KQ,
            name="cf_conv",
        )(cf),
        Q.QDepthwiseConv2D(
            3,
            strides=2,
            padding="same",
            depth_multiplier=2,
            data_format="channels_first",
            depthwise_quantizer=KQ,
            name="cf_dw",
        )(cf),
        Q.QSeparableConv2D(
            3,
            3,
            padding="same",
            data_format="channels_first",
            depthwise_quantizer=KQ,
            pointwise_quantizer=KQ,
            name="cf_sep",
        )(cf),
        Q.QConv1D(3, 3, padding="same", strides=2, data_format="channels_first", kernel_quantizer=KQ, name="cf_conv1d")(
            cf1
        ),
        L.BatchNormalization(axis=1, name="cf_bn")(cf),
        Q.QConv2DTranspose(
            2, 3, strides=2, padding="same", data_format="channels_first", kernel_quantizer=KQ, name="cf_tconv"
        )(cf),
        Q.QAveragePooling2D(2, average_quantizer="quantized_bits(8,0,1)", activation="quantized_relu(4)", name="pool")(
            img
        ),
        Q.QAveragePooling2D(3, strides=2, padding="same", average_quantizer="quantized_bits(8,0,1)", name="pool_same")(
            img
        ),
        Q.QAveragePooling2D(2, data_format="channels_first", average_quantizer="quantized_bits(8,0,1)", name="pool_cf")(
            cf
        ),
        Q.QGlobalAveragePooling2D(average_quantizer="quantized_bits(6,0,1)", name="gap")(img),
        Q.QDense(3, kernel_quantizer=KQ, name="fc_c")(L.Flatten()(vec)),
        Q.QDense(3, kernel_quantizer=KQ, name="fc_lc")(L.Flatten()(seq)),
        Q.QDense(3, kernel_quantizer=KQ, name="fc_hwc")(L.Flatten()(img)),
        Q.QDense(3, kernel_quantizer=KQ, bias_quantizer=KQ, name="fc_dhwc")(L.Flatten()(vol)),
        Q.QDense(3, kernel_quantizer=Q.quantized_hswish(8, 3), name="hswish")(vec),
        zoo.named(
            Q.QSimpleRNN(
                4,
                activation="quantized_tanh(4)",
                kernel_quantizer=KQ,
                recurrent_quantizer=KQ,
                bias_quantizer=KQ,
                state_quantizer="quantized_bits(8,0,1)",
                return_sequences=True,
                name="srnn",
            ),
            "srnn",
        )(seq),
        zoo.named(
            Q.QLSTM(
                4,
                activation="quantized_tanh(5)",
                recurrent_activation="hard_sigmoid",
                kernel_quantizer=KQ,
                recurrent_quantizer=KQ,
                bias_quantizer=KQ,
                go_backwards=True,
                name="qlstm",
            ),
            "qlstm",
        )(seq),
        zoo.named(
            Q.QGRU(
                3,
                activation="quantized_relu(4,1)",
                recurrent_activation="quantized_sigmoid(6)",
                reset_after=False,
                kernel_quantizer=KQ,
                recurrent_quantizer=KQ,
                bias_quantizer=KQ,
                return_sequences=True,
                name="qgru",
            ),
            "qgru",
        )(seq),
        Q.QBidirectional(
            Q.QLSTM(3, kernel_quantizer=KQ, recurrent_quantizer=KQ, bias_quantizer=KQ, return_sequences=True),
            merge_mode="sum",
            name="qbidi",
        )(seq),
        L.Bidirectional(L.GRU(3, recurrent_activation="hard_sigmoid"), name="bidi")(seq),
        L.LSTM(3, return_sequences=True, go_backwards=True, name="lstm")(seq),
        L.SimpleRNN(3, activation="relu", name="rnn")(seq),
        L.GRU(3, reset_after=False, activation="gelu", name="gru_gelu")(seq),
    ]
    return K.Model([img, cf, cf1, seq, vec, vol], outs, name="many")


ROUTES = {
    "pool": "numpy (window sum x multiplier)", "pool_same": "numpy (window sum x multiplier)",
    "pool_cf": "numpy (window sum x multiplier)", "gap": "numpy (window sum x multiplier)",
    **{n: "numpy-recurrent" for n in ("srnn", "qlstm", "qgru", "qbidi", "bidi", "lstm", "rnn", "gru_gelu")},
}  # fmt: skip


# zoo.V3_CANNOT_RUN: qkeras-v3 1.2.1's QConv1D cannot run with padding="causal" (TensorFlow's conv gets
# "CAUSAL") nor with data_format="channels_first" (its bias is added in channels_last shape): verify says the layer's
# own forward pass fails, which is all it can say. QKeras 0.9 runs both.
BROKEN_UNDER_V3 = set() if zoo.LEGACY else {"grouped1d", "cf_conv1d"}


@pytest.fixture(scope="module")
def many():
    return zoo.randomize(build_many(), seed=5)


@pytest.mark.parametrize("layout,dense_as_conv", [("hwio", False), ("ohwi", True), ("oihw", True)])
def test_every_kind_is_recomputed_in_every_layout(many, tmp_path, layout, dense_as_conv):
    before = [w.copy() for w in many.get_weights()]
    out = export(many, tmp_path / "e", layout=layout, formats=["npz", "mem"], dense_as_conv=dense_as_conv).out_dir
    table = verify(out, many)
    failed = set(table.layer[~table.passed])
    assert table["passed"].dtype == bool and failed == BROKEN_UNDER_V3, table.drop(
        columns=["class", "layout"]
    ).to_string()
    note = dict(zip(table.layer, table.note))
    assert all("the Keras layer's own forward pass fails" in note[name] for name in BROKEN_UNDER_V3)
    assert len(table) == 26
    assert {r.layer: r.route for r in table.itertuples() if r.layer in ROUTES} == ROUTES
    assert set(table.route) - set(ROUTES.values()) - {"none"} == {"numpy"}
    assert "rebuilt from its quantizer objects" in note["hswish"]  # QKeras cannot rebuild it from its config
    assert "TensorFlow: gelu" in note["gru_gelu"]
    assert all(np.array_equal(a, b) for a, b in zip(before, many.get_weights()))  # the user's model is untouched


def test_the_manifest_records_channels_first_padding_and_groups(many, tmp_path):
    manifest = export(many, tmp_path / "e", formats=["npz"], dense_as_conv=True).manifest.to_json()
    g = entry(manifest, "cf_conv")["geometry"]
    # input (C, H, W) = (4, 7, 9), kernel 4, stride 2: pads come from H and W, not from (C, H)
    (top, bottom), (left, right) = same_pad(7, 4, 2), same_pad(9, 4, 2)
    assert g["data_format"] == "channels_first"
    assert (
        g["explicit_padding"]
        == {"top": top, "bottom": bottom, "left": left, "right": right}
        == {"top": 1, "bottom": 2, "left": 1, "right": 2}
    )
    # input (C, L) = (4, 11), kernel 3, stride 2: from L = 11 (1, 1); the wrong axis C = 4 would give (0, 1)
    assert entry(manifest, "cf_conv1d")["geometry"]["explicit_padding"] == {"left": 1, "right": 1} and same_pad(
        11, 3, 2
    ) == (1, 1)
    assert (
        entry(manifest, "grouped")["geometry"]["groups"] == 2
        and entry(manifest, "grouped_plain")["geometry"]["groups"] == 4
    )
    (before, after) = same_pad(8, 3, 2)  # a pooling window gets its explicit pads too
    assert entry(manifest, "pool_same")["geometry"]["explicit_padding"] == {
        "top": before,
        "bottom": after,
        "left": before,
        "right": after,
    }
    assert entry(manifest, "cf_bn")["geometry"]["axis"] == [1]
    assert entry(manifest, "fc_dhwc")["flatten_shape"] == [2, 3, 2, 2] and entry(manifest, "fc_c")["flatten_shape"] == [
        6
    ]


def test_every_recomputed_kind_fails_for_other_weights(many, tmp_path):
    """The proof is not vacuous: the same export against the same network with other weights fails row by row."""
    out = export(many, tmp_path / "e", formats=["npz"]).out_dir
    weights = many.get_weights()
    try:
        table = verify(out, zoo.randomize(many, seed=6))
    finally:
        many.set_weights(weights)
    weightless = {"pool", "pool_same", "pool_cf", "gap"}  # the multiplier comes from the quantizer, not from weights
    failed = set(table.layer[~table.passed])
    assert failed == set(table.layer) - weightless, table.drop(columns=["class", "layout"]).to_string()


def test_a_changed_pooling_multiplier_fails(tmp_path):
    model = zoo.randomize(zoo.CASES["avg_pool"].build())
    out = export(model, tmp_path / "e", formats=["npz"]).out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    t = tensor(manifest, "q/average_multiplier")
    t["scale"]["values"] = t["scale"]["values"] * 2  # the file's codes stay; their scale doubles
    save(out, manifest)
    assert list(verify(out, model)["passed"]) == [False]


def test_stochastic_quantizers_verify_the_same_on_every_run(tmp_path):
    inp = K.Input((6,))
    outs = [
        Q.QDense(3, kernel_quantizer=Q.bernoulli(), name="bern")(inp),
        Q.QDense(3, kernel_quantizer="bernoulli(alpha='auto_po2')", name="bern_auto")(inp),
        Q.QDense(3, kernel_quantizer="stochastic_binary(alpha='auto_po2')", name="sbinary")(inp),
        Q.QDense(3, kernel_quantizer="stochastic_ternary(alpha='auto_po2')", name="sternary")(inp),
    ]
    model = zoo.randomize(K.Model(inp, outs), seed=2)
    out = export(model, tmp_path / "e", formats=["npz"]).out_dir
    tables = [verify(out, model, seed=seed) for seed in (0, 0, 0, 1)]
    for table in tables:
        assert table["passed"].all(), table.to_string()
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    assert "bernoulli compared as scale * (x >= 0)" in tables[0].note[0]


def test_a_sequence_of_open_length_is_verified(tmp_path):
    inp = K.Input((None, 3))
    model = zoo.randomize(
        K.Model(inp, Q.QLSTM(4, kernel_quantizer=KQ, recurrent_quantizer=KQ, bias_quantizer=KQ, name="q")(inp))
    )
    out = export(model, tmp_path / "e", formats=["npz"]).out_dir
    assert list(verify(out, model)["passed"]) == [True]


def test_a_layer_used_twice_is_verified(tmp_path):
    a, b = K.Input((6, 6, 3)), K.Input((8, 8, 3))  # two input shapes: the layer has no single one
    shared = Q.QConv2D(2, 3, kernel_quantizer=KQ, name="shared")
    model = zoo.randomize(K.Model([a, b], [shared(a), shared(b)]))
    out = export(model, tmp_path / "e", formats=["npz"]).out_dir
    assert "input_shape" not in entry(json.loads((out / "manifest.json").read_text()), "shared")["geometry"]
    assert list(verify(out, model)["passed"]) == [True]


def test_a_kind_without_a_numpy_reference_is_compared_with_its_variables(tmp_path):
    inp = K.Input((3, 3, 3, 2))
    model = zoo.randomize(K.Model(inp, L.Conv3D(2, 2, name="c3")(inp)))
    out = export(model, tmp_path / "e", formats=["npz"]).out_dir
    table = verify(out, model)
    assert list(table["passed"]) == [True] and list(table["route"]) == ["weights"]
    assert list(verify(out, zoo.randomize(model, seed=9))["passed"]) == [False]


def test_a_plain_keras_bidirectional_exports_both_directions():
    inp = K.Input((4, 2))
    model = zoo.randomize(K.Model(inp, L.Bidirectional(L.GRU(3), name="b")(inp)))
    record = qextract.extract(model)["b"]
    assert record.kind == "bidirectional"
    layer = model.get_layer("b")
    assert np.array_equal(record["forward/kernel"].values, np.asarray(layer.forward_layer.cell.kernel))
    assert np.array_equal(record["backward/kernel"].values, np.asarray(layer.backward_layer.cell.kernel))


# --- the NumPy oracle ------------------------------------------------------------------------------------------------


QUANTIZED_ACTIVATIONS = [
    "quantized_tanh(4)", "quantized_tanh(6,0,1)", "quantized_tanh(5,use_real_tanh=True)",
    "quantized_sigmoid(5)", "quantized_sigmoid(6,use_real_sigmoid=1)", "quantized_sigmoid(4,symmetric=1)",
    "quantized_relu(4,1)", "quantized_relu(6,2,negative_slope=0.25)", "quantized_relu(5,1,use_sigmoid=1)",
    "quantized_relu(4,2,is_quantized_clip=False,relu_upper_bound=3.0)",
    "quantized_bits(6,2,1)", "quantized_bits(4,0,0,keep_negative=0)", "quantized_bits(5,1,0,alpha=1)",
    "quantized_bits(1,0)",
]  # fmt: skip


@pytest.mark.parametrize("spec", QUANTIZED_ACTIVATIONS)
def test_numpy_quantized_activations_agree_with_qkeras(spec):
    from qextract.verification.recurrence import _numpy_activation

    q = Q.quantizers.get_quantizer(spec)
    act = _numpy_activation(q)
    assert act.stepped and "TensorFlow" not in act.name, act
    z = np.concatenate([np.linspace(-6, 6, 4001), np.random.default_rng(0).standard_normal(2000) * 3])
    ours = act(z)
    theirs = np.asarray(q(tf().constant(z.astype(np.float32))), np.float64)
    decidable = ~act.near_step(z)
    assert decidable.mean() > 0.97
    np.testing.assert_array_equal(ours[decidable], theirs[decidable])


def test_numpy_float_activations_agree_with_keras_and_qkeras():
    from qextract.verification.recurrence import _numpy_activation

    z = np.linspace(-5, 5, 1001)
    for fn in (
        K.activations.tanh,
        K.activations.sigmoid,
        K.activations.hard_sigmoid,
        K.activations.relu,
        K.activations.softsign,
        K.activations.elu,
        Q.quantizers.hard_sigmoid,
        Q.quantizers.smooth_sigmoid,
        Q.quantizers.hard_tanh,
    ):
        act = _numpy_activation(fn)
        assert "TensorFlow" not in act.name, fn
        np.testing.assert_allclose(
            act(z), np.asarray(fn(tf().constant(z, tf().float32))), rtol=1e-6, atol=1e-6, err_msg=act.name
        )


def test_grouped_convolution_reference_against_splitting_by_hand():
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((2, 5, 6, 6)), rng.standard_normal((3, 3, 2, 9))
    by_hand = np.concatenate([R.conv(x[..., 2 * g : 2 * g + 2], k[..., 3 * g : 3 * g + 3]) for g in range(3)], axis=-1)
    np.testing.assert_allclose(R.conv(x, k, groups=3), by_hand, rtol=1e-12)
    with pytest.raises(ValueError, match="groups=4"):
        R.conv(x, k, groups=4)


def test_same_padded_pooling_divides_border_windows_by_their_real_pixels():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    # TF's "same" pads (0, 1) per axis; Keras averages over the real pixels, QKeras multiplies by area x 1/4:
    # [1 2 4 5] -> 12/4, [3 6] -> 9/2, [7 8] -> 15/2, [9] -> 9/1
    expected = np.array([[3.0, 4.5], [7.5, 9.0]]).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(R.average_pool(x, 0.25, (2, 2), (2, 2), "same"), expected)
    np.testing.assert_allclose(
        R.average_pool(x, 0.25, (2, 2), (1, 1), "valid"), np.array([[3.0, 4.0], [6.0, 7.0]]).reshape(1, 2, 2, 1)
    )
