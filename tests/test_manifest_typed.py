"""Issue 10, deliverables 5 and 6: a layout is parsed once into a plan; the manifest is typed data.

Layout plans are checked against the element-by-element oracles of test_layouts
(written from REFERENCE.md, independently of the recipes) and plain NumPy
formulas; the typed manifest against the JSON file export wrote, the files
themselves (sha256, npz arrays) and the JSON Schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import zoo
from test_layouts import CASE_IDS, CASES, ORACLES, native_shape, oracle, sample

from qextract._keras import qkeras, tf
from qextract.errors import LayoutError, VerificationError
from qextract.exporting.exporter import ExportResult, export
from qextract.layouts import LAYOUTS, Layout, LayoutPlan, clear_cache, from_layout, to_layout
from qextract.layouts.rules import KINDS, LAYOUT_RULES, NATIVE
from qextract.manifest import Geometry, LayerEntry, Manifest, ScaleEntry, TensorEntry, schema
from qextract.verification.verifier import load_export, read_codes, verify
from qextract.writers import entries

# --- layout plans ------------------------------------------------------------------------------


def test_a_plan_is_made_once_and_reused():
    clear_cache()
    plan = LayoutPlan.of("conv2d", "kernel", "oihw", (3, 3, 2, 8))
    assert LayoutPlan.of("conv2d", "kernel", Layout.parse("pytorch"), [3, 3, 2, 8]) is plan  # same key once normalized
    assert LayoutPlan.of("conv2d", "kernel", "oihw", (3, 3, 2, 8), flatten_shape=None, dense_as_conv=True) is plan
    assert (plan.shape, plan.axes, plan.native_shape, plan.flatten_order) == ((8, 2, 3, 3), "OIHW", (3, 3, 2, 8), None)
    clear_cache()
    assert LayoutPlan.of("conv2d", "kernel", "oihw", (3, 3, 2, 8)) is not plan


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind,name,rule,letters,expected_axes", CASES, ids=CASE_IDS)
def test_plan_apply_and_invert_against_the_index_oracle(kind, name, rule, letters, expected_axes, layout):
    x = sample(native_shape(letters), seed=3)
    plan = LayoutPlan.of(kind, name, layout, x.shape)
    expected = oracle(rule, layout, x)
    out = plan.apply(x)
    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous and plan.shape == expected.shape
    assert plan.axes == expected_axes[LAYOUTS.index(layout)]
    back = plan.invert(expected)
    assert back.tobytes() == x.tobytes() and back.shape == x.shape
    for axis in range(x.ndim):  # a per-channel scale lands where its axis goes, expanded on a merged axis
        scale = np.arange(1, x.shape[axis] + 1, dtype=np.float32)
        along = [1] * x.ndim
        along[axis] = -1
        moved, new_axis = plan.move_scale(scale, axis)
        assert new_axis == plan.scale_axis(axis)
        target = [1] * out.ndim
        target[new_axis] = -1
        np.testing.assert_array_equal(
            oracle(rule, layout, np.broadcast_to(scale.reshape(along), x.shape)),
            np.broadcast_to(moved.reshape(target), out.shape),
        )


def test_a_plan_refuses_arrays_of_another_shape():
    plan = LayoutPlan.of("conv2d", "kernel", "ohwi", (2, 3, 3, 4))
    with pytest.raises(
        LayoutError,
        match=r"conv2d tensor 'kernel' has shape \(2, 3, 4, 3\); this plan lays out native shape \(2, 3, 3, 4\)",
    ):
        plan.apply(np.zeros((2, 3, 4, 3)))
    with pytest.raises(LayoutError, match=r"in layout ohwi has shape \(4, 3, 3, 2\); expected \(4, 2, 3, 3\) \(OHWI\)"):
        plan.invert(np.zeros((4, 3, 3, 2)))
    assert plan.move_scale(np.float32(0.5), None) == (np.float32(0.5), None)


@pytest.mark.parametrize("conv", [False, True])
def test_a_flatten_plan_follows_the_numpy_formula(conv):
    k = sample((2 * 3 * 4, 5))  # Dense after Flatten of (H, W, C) = (2, 3, 4), 5 units
    plan = LayoutPlan.of("dense", "kernel", "oihw", k.shape, flatten_shape=(2, 3, 4), dense_as_conv=conv)
    oihw = k.reshape(2, 3, 4, 5).transpose(3, 2, 0, 1)  # (O, C, H, W): PyTorch's channels-first flatten
    np.testing.assert_array_equal(plan.apply(k), oihw if conv else oihw.reshape(5, -1))
    assert plan.flatten_order == "CHW" and plan.axes == ("OIHW" if conv else "OI")
    assert plan.invert(plan.apply(k)).tobytes() == k.tobytes()
    hwio = LayoutPlan.of("dense", "kernel", "hwio", k.shape, flatten_shape=(2, 3, 4), dense_as_conv=conv)
    assert hwio.flatten_order == "HWC"


def test_the_wrappers_are_the_plan():
    x = sample((3, 3, 2, 4), seed=1)
    plan = LayoutPlan.of("depthwise_conv2d", "depthwise_kernel", "ohwi", x.shape)
    out = to_layout("depthwise_conv2d", "depthwise_kernel", x, "ohwi")
    assert out.tobytes() == plan.apply(x).tobytes() == x.reshape(1, 3, 3, 8).tobytes()
    assert (
        from_layout("depthwise_conv2d", "depthwise_kernel", out, "ohwi", x.shape).tobytes()
        == plan.invert(out).tobytes()
    )


# --- the layout table: every entry has a test case --------------------------------------------------

_ORACLE_NAMES = {"rnn_kernel": "rnn", "rnn_recurrent": "rnn"}  # test_layouts' name for the rule's oracle


def test_every_layout_and_rule_has_an_oracle_and_every_kind_a_case():
    """A layout, a rule or a layer kind added to qextract/layouts/rules.py without a test case in test_layouts fails."""
    assert LAYOUTS == tuple(rule.name for rule in LAYOUT_RULES) and LAYOUTS[0] == "hwio"
    for layout in LAYOUT_RULES[1:]:
        for rule in layout.moves:
            assert (_ORACLE_NAMES.get(rule, rule), layout.name) in ORACLES, (
                f"no oracle for rule {rule} in layout {layout.name}"
            )
    assert {layout for _, layout in ORACLES} <= set(LAYOUTS)
    cased = {(kind, name.rsplit("/", 1)[-1], len(letters)) for kind, name, _, letters, _ in CASES}
    for kind, tensors in KINDS.items():
        for tensor, rules in tensors.items():
            for rule in rules:
                rank = len(NATIVE[rule].split())
                assert (kind, tensor, rank) in cased, f"no test_layouts case for {kind} tensor {tensor} of rank {rank}"
    used = {rule for tensors in KINDS.values() for rules in tensors.values() for rule in rules}
    assert used == set(NATIVE), f"rules no kind uses: {set(NATIVE) - used}"
    for case in CASES:  # every case names every layout's axes
        assert len(case[4]) == len(LAYOUTS), case


def test_the_schema_offers_exactly_the_layouts():
    s = schema()
    assert s["properties"]["layout"]["enum"] == list(LAYOUTS)
    assert s["$defs"]["tensor"]["properties"]["layout"]["enum"] == list(LAYOUTS)


# --- the typed manifest --------------------------------------------------------------------------------

Q = qkeras()
K = tf().keras


@pytest.fixture(scope="module")
def small():
    inp = K.Input((5, 5, 2))
    x = Q.QConv2D(
        3,
        3,
        padding="same",
        strides=2,
        kernel_quantizer="quantized_bits(6,0,1,alpha='auto_po2')",
        bias_quantizer="quantized_bits(8,2)",
        name="c",
    )(inp)
    x = Q.QBatchNormalization(name="bn")(x)
    x = K.layers.Flatten()(x)
    x = Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_relu(4)", name="d")(x)
    return zoo.randomize(K.Model(inp, x, name="small"), seed=2)


@pytest.fixture(scope="module")
def exported(small, tmp_path_factory) -> ExportResult:
    return export(small, tmp_path_factory.mktemp("typed") / "e", layout="oihw", formats=["npz", "mem"])


def test_export_returns_the_typed_manifest_it_wrote(exported):
    m = exported.manifest
    written = json.loads(exported.manifest_path.read_text())
    assert isinstance(m, Manifest) and m.to_json() == written and Manifest.from_json(written) == m
    assert repr(exported).endswith(
        f"{len(m.tensors)} tensors, layout oihw, formats npz,mem, {len(exported.files)} files)"
    )
    assert [layer.name for layer in m.layers if layer.tensors] == ["c", "bn", "d"] and m.layout == Layout("oihw")
    assert m.selected_layers is None and [t.key for t in m.tensors][:2] == ["c/kernel", "c/bias"]
    for f in m.files:  # the file records are the files
        data = (exported.out_dir / f.path).read_bytes()
        assert (f.sha256, f.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    c, d = (next(layer for layer in m.layers if layer.name == name) for name in ("c", "d"))
    assert (
        isinstance(c.geometry, Geometry) and c.geometry.input_shape == (None, 5, 5, 2) and c.geometry.strides == (2, 2)
    )
    assert c.geometry.explicit_padding == {"top": 1, "bottom": 1, "left": 1, "right": 1}  # TF "same", 5 -> 3 with k3 s2
    assert (
        d.flatten_shape == (3, 3, 3)
        and d.flatten_order == "CHW"
        and d.activations[0].quantizer.startswith("quantized_relu(4")
    )
    with np.load(exported.out_dir / "weights.npz") as z:
        for t in m.tensors:
            assert isinstance(t, TensorEntry) and t.shape == z[t.key].shape
            if t.quantized:
                assert isinstance(t.scale, ScaleEntry) and t.scale.array.tobytes() == z[f"{t.key}:scale"].tobytes()
    kernel = c.tensors[0]
    assert kernel.axes == "OIHW" and kernel.native_shape == (3, 3, 2, 3) and kernel.scale.axis == 0


def test_the_readers_take_the_typed_manifest(exported):
    m, values = load_export(exported.out_dir)
    assert m == exported.manifest
    assert entries(m) == entries(m.to_json())
    typed, formats = read_codes(exported.out_dir, m)
    plain, _ = read_codes(exported.out_dir, m.to_json())
    assert formats == ["npz", "mem"] and typed.keys() == plain.keys() == values.keys()
    assert all(typed[k].codes.tobytes() == plain[k].codes.tobytes() for k in typed)


def test_optional_keys_stay_absent_and_unknown_geometry_is_kept(exported):
    """An older or hand-made manifest: what it lacks stays lacking, what it adds to geometry survives."""
    doc = copy.deepcopy(exported.manifest.to_json())
    for f in doc["files"]:
        del f["tensors"]
    for layer in doc["layers"]:
        layer["geometry"]["note"] = {"from": "another tool"}
        layer.pop("flatten_order", None)
        for t in layer["tensors"]:
            del t["notes"], t["native_shape"]
    m = Manifest.from_json(doc)
    assert m.to_json() == doc
    assert m.files[0].tensors is None and all(layer.flatten_order is None for layer in m.layers)
    assert all(layer.geometry.extra == {"note": {"from": "another tool"}} for layer in m.layers)


def _layer(doc: dict, name: str) -> dict:
    return next(layer for layer in doc["layers"] if layer["name"] == name)


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda m: _layer(m, "bn")["geometry"].__setitem__("epsilon", "small"),
            r"field \$\.layers\[2\]\.geometry\.epsilon: 'small' is not of type 'number'",
        ),
        (lambda m: m.pop("files"), r"field \$: 'files' is a required property"),
        (
            lambda m: _layer(m, "c")["tensors"][0]["scale"].__setitem__("axis", -1),
            r"field \$\.layers\[1\]\.tensors\[0\]\.scale\.axis: -1 is less than the minimum of 0",
        ),
    ],
)
def test_from_json_checks_the_schema_first(exported, edit, message):
    doc = copy.deepcopy(exported.manifest.to_json())
    edit(doc)
    with pytest.raises(VerificationError, match=r"^does not follow the manifest schema \(" + message):
        Manifest.from_json(doc)


def test_to_json_checks_the_schema(exported):
    bad = Manifest(**{**exported.manifest.__dict__, "formats": ("zip",)})
    with pytest.raises(jsonschema.ValidationError, match=r"field \$\.formats\[0\]: 'zip' is not one of"):
        bad.to_json()


def test_layer_entries_keep_kind_as_a_plain_string(exported):
    index = next(i for i, layer in enumerate(exported.manifest.layers) if layer.name == "c")
    layer = LayerEntry.from_json(exported.manifest.to_json()["layers"][index])
    assert layer.kind == "conv2d" and layer.class_name == "QConv2D" and layer == exported.manifest.layers[index]


# --- hostile manifests that pass the schema: the typed reading keeps verify's messages --------------------


def _edited(exported: ExportResult, tmp_path: Path, edit) -> Path:
    out = tmp_path / "e"
    shutil.copytree(exported.out_dir, out)
    doc = json.loads((out / "manifest.json").read_text())
    edit(doc)
    (out / "manifest.json").write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda m: _layer(m, "c")["geometry"].__setitem__("input_shape", [None]),
            r"manifest\.json: layer 'c' geometry\.input_shape is \[None\]; expected \[null, size, \.\.\.\]",
        ),
        (
            lambda m: _layer(m, "bn")["geometry"].pop("epsilon"),
            r"manifest\.json: layer 'bn' \(batchnorm\) cannot be recomputed from its manifest entry "
            r"\(KeyError: 'epsilon'\)",
        ),
        (
            lambda m: _layer(m, "c")["tensors"][0].__setitem__("code_dtype", "int16"),
            r"tensor 'c/kernel': codes read are int8\[3, 2, 3, 3\], the manifest says int16\[3, 2, 3, 3\]",
        ),
        (
            lambda m: [t.pop("scale") for t in _layer(m, "c")["tensors"]],
            r"manifest\.json: tensor 'c/kernel' is quantized but has no code_dtype or scale",
        ),
    ],
    ids=["input_shape too short", "epsilon missing", "code_dtype of another width", "scale missing"],
)
def test_hostile_manifests_that_follow_the_schema(exported, small, tmp_path, edit, message):
    out = _edited(exported, tmp_path, edit)
    with pytest.raises(VerificationError, match=message):
        verify(out, small)


def test_an_unedited_export_verifies(exported, small):
    table = verify(exported.out_dir, small)
    assert table["passed"].all() and list(table["layer"]) == ["c", "bn", "d"] and table.attrs["selected_layers"] is None
