"""``qextract migrate``: QKeras 0.9 files rebuilt with qkeras-v3, checked against what QKeras 0.9 computed.

The model files and the reference (QKeras 0.9's own extraction and outputs, two exports) were made
under QKeras 0.9 by ``tests/fixtures/migrate/make_migrate_fixtures.py``; under qkeras-v3 each
migrated file is loaded by Keras 3 and compared with them bit for bit. On the QKeras 0.9 stack only
the refusal runs (migrate builds qkeras-v3 layers).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from zoo import LEGACY, legacy_only

import qextract
from qextract.cli import main
from qextract.errors import (
    ExportError,
    KerasEnvironmentError,
    ModelLoadError,
    NotAnExportError,
    UnsupportedError,
    UsageError,
    VerificationError,
)
from qextract.examples import bundled_model
from qextract.migration.translate import Untranslatable, translate

FIX = Path(__file__).parent / "fixtures" / "migrate"
EXAMPLE = bundled_model().with_name("digits_qcnn.h5")
EXAMPLE_KERAS3 = EXAMPLE.with_suffix(".keras")
EXPECTED = json.loads((FIX / "expected.json").read_text())["cases"]
MIGRATES = ["dense", "conv2d", "depthwise", "separable", "batchnorm", "graph", "jsonpair", "sequential"]
keras3_only = pytest.mark.skipif(LEGACY, reason="migrate builds qkeras-v3 layers: the Keras 3 stack")


def _old(case: str) -> dict[str, Path]:
    if case == "jsonpair":
        return {"old": FIX / "jsonpair.json", "weights": FIX / "jsonpair_weights.h5"}
    return {"old": FIX / f"{case}.h5"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """Every fixture that migrates, migrated once: case -> (result, new file)."""
    folder = tmp_path_factory.mktemp("migrated")
    out = {}
    for case in MIGRATES:
        given = _old(case)
        before = {k: _sha(p) for k, p in given.items()}
        reference = FIX / "sequential_export" if case == "sequential" else None  # quantized_tanh: no NumPy form
        r = qextract.migrate(
            given["old"], weights=given.get("weights"), out=folder / f"{case}.keras", reference=reference
        )
        assert {k: _sha(p) for k, p in given.items()} == before  # OLD and W only read
        out[case] = r
    return out


def _load(path: Path):
    from qextract._keras import custom_objects, keras

    return keras().models.load_model(path, custom_objects=custom_objects(), compile=False)


# --- every fixture migrates and computes what QKeras 0.9 computed -----------------------------------------------------


@keras3_only
@pytest.mark.parametrize("case", MIGRATES)
def test_every_fixture_migrates_and_its_extraction_equals_qkeras09s_bit_for_bit(migrated, case):
    r = migrated[case]
    assert r.migrated and r.exit_code == 0 and not r.failures, r.differences
    assert (r.table["status"] == "same").all()
    ex = qextract.extract(_load(r.written))  # the written file, as Keras 3 loads it
    arrays = np.load(FIX / "expected.npz")
    expected = EXPECTED[case]
    assert sorted(t.key for t in ex.tensors()) == sorted(expected["tensors"])
    for t in ex.tensors():
        assert str(t.format) == expected["tensors"][t.key]["format"], t.key
        assert t.scale_axis == expected["tensors"][t.key]["scale_axis"], t.key
        assert np.array_equal(t.values, arrays[f"{case}|{t.key}|values"]), t.key
        assert np.array_equal(np.asarray(t.scale), arrays[f"{case}|{t.key}|scale"]), t.key
        if t.codes is not None:
            assert np.array_equal(t.codes, arrays[f"{case}|{t.key}|codes"]), t.key
    assert {f"{a.layer}/{a.name}": str(a.format) for a in ex.activations()} == expected["activations"]


@keras3_only
@pytest.mark.parametrize("case", MIGRATES)
def test_the_new_file_predicts_what_the_qkeras09_model_did(migrated, case):
    arrays = np.load(FIX / "expected.npz")
    got = _load(migrated[case].written).predict(arrays[f"{case}|input"], verbose=0)
    want = arrays[f"{case}|output"]
    if case == "batchnorm":  # README: folded with 1/sqrt (qkeras-v3), rsqrt (0.9): float32 last bits; codes equal
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.spacing(np.abs(want).max()))
    else:
        assert np.array_equal(got, want)


@keras3_only
def test_a_folded_layer_reports_its_raw_last_bit_difference_with_equal_codes(migrated):
    r = migrated["batchnorm"]  # here 1/sqrt and rsqrt happen to fold to the same floats; the bundled example's differ
    assert set(r.raw_last_bit) <= {"convbn/kernel", "convbn/bias"}
    row = r.table[r.table["tensor"] == "convbn/kernel"].iloc[0]
    assert row["status"] == "same" and row["codes_differ"] == 0 and row["raw_max_ulp"] <= 8
    assert (r.table[r.table["tensor"].str.endswith("/(output)")]["status"] == "same").all()


# --- the bundled example ----------------------------------------------------------------------------------------------


@keras3_only
def test_the_bundled_example_migrates_to_what_the_bundled_keras3_file_holds(tmp_path, capsys):
    out = tmp_path / "digits.keras"
    assert main(["migrate", str(EXAMPLE), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "same: 15 tensors" in text and f"wrote {out}" in text
    found = re.search(
        r"note: convbn4/kernel: codes and scales equal; (\d+) of 2304 raw floats differ, by at most (\d+)", text
    )
    assert found and int(found.group(1)) > 0 and 1 <= int(found.group(2)) <= 8, text  # 1/sqrt vs rsqrt (README)
    assert "rsqrt" in text
    new = qextract.extract(_load(out))
    bundled = qextract.extract(_load(EXAMPLE_KERAS3))  # built for qkeras-v3 with the same weights (independent)
    assert [t.key for t in new.tensors()] == [t.key for t in bundled.tensors()]
    for a, b in zip(new.tensors(), bundled.tensors()):
        assert np.array_equal(a.raw, b.raw) and np.array_equal(a.codes, b.codes), a.key
        assert np.array_equal(np.asarray(a.scale), np.asarray(b.scale)) and a.format == b.format, a.key


# --- refused, nothing written -----------------------------------------------------------------------------------------


@keras3_only
def test_a_reference_export_with_other_codes_writes_nothing_and_exits_9(tmp_path, capsys):
    out = tmp_path / "new.keras"
    args = ["migrate", str(FIX / "sequential.h5"), "--reference", str(FIX / "sequential_changed_export")]
    assert main([*args, "--out", str(out)]) == VerificationError.exit_code == 9
    text = capsys.readouterr().out
    assert "d/kernel" in text and "codes" in text and "nothing written" in text
    assert not out.exists() and not list(tmp_path.iterdir())
    r = qextract.migrate(FIX / "sequential.h5", out=out, reference=FIX / "sequential_changed_export")
    assert r.written is None and list(r.differences["tensor"]) == ["d/kernel"]
    assert int(r.differences["codes_differ"][0]) == 1


@keras3_only
@pytest.mark.parametrize(
    ("case", "layer", "why"),
    [("causal", "causal_conv", "cannot run it"), ("dwbn", "dwbn", "cannot load it back")],
)
def test_a_layer_qkeras_v3_cannot_handle_is_named_exit_4_nothing_written(tmp_path, capsys, case, layer, why):
    out = tmp_path / "new.keras"
    assert main(["migrate", str(FIX / f"{case}.h5"), "--out", str(out)]) == UnsupportedError.exit_code
    text = capsys.readouterr().out
    assert f"not migrated: layer '{layer}'" in text and why in text and "nothing written" in text
    assert not list(tmp_path.iterdir())


@keras3_only
def test_without_a_numpy_form_the_reference_must_be_an_export(tmp_path, capsys):
    out = tmp_path / "new.keras"
    assert main(["migrate", str(FIX / "sequential.h5"), "--out", str(out)]) == UnsupportedError.exit_code
    err = capsys.readouterr().err
    assert "quantized_tanh" in err and "On the command line: --reference." in err and not out.exists()


@keras3_only
def test_bad_inputs_are_refused_with_their_exit_codes(tmp_path, capsys):
    old = FIX / "dense.h5"
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a model at all" * 10)
    text = tmp_path / "notes.json"
    text.write_text("[1, 2, 3]")
    existing = tmp_path / "exists.keras"
    existing.write_bytes(b"mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    inside = FIX / "sequential_export" / "new.keras"
    copy = tmp_path / "old.h5"
    shutil.copyfile(old, copy)
    cases = [
        (["migrate", str(FIX / "jsonpair.json"), "--out", str(tmp_path / "a.keras")], ModelLoadError, "--weights"),
        (["migrate", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "a.keras")], ModelLoadError, "no such"),
        (["migrate", str(junk), "--out", str(tmp_path / "a.keras")], ModelLoadError, "HDF5"),
        (["migrate", str(text), "--weights", str(old), "--out", str(tmp_path / "a.keras")], ModelLoadError, "notes"),
        (["migrate", str(copy), "--out", str(copy), "--force"], ExportError, "is the model"),
        (["migrate", str(old), "--out", str(existing)], ExportError, "--force"),
        (["migrate", str(EXAMPLE_KERAS3), "--out", str(tmp_path / "a.keras")], UsageError, "nothing to migrate"),
        (["migrate", str(old), "--out", str(tmp_path / "a.txt")], UsageError, ".keras"),
        (["migrate", str(old), "--out", str(tmp_path / "b.keras"), "--reference", str(mine)], NotAnExportError, "mine"),
        (
            ["migrate", str(old), "--out", str(inside), "--reference", str(FIX / "sequential_export")],
            ExportError,
            "only read",
        ),
    ]
    for argv, error, words in cases:
        assert main(argv) == error.exit_code, argv
        err = capsys.readouterr().err
        assert err.startswith("qextract: error: ") and words in err, (argv, err)
    assert existing.read_bytes() == b"mine" and _sha(copy) == _sha(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.keras", "junk.h5", "mine", "notes.json", "old.h5"]
    assert not inside.exists()


# --- the translation of a stored configuration (both stacks: no Keras needed) -----------------------------------------


class _Layer:
    def __init__(self, *, trainable=True, dtype=None, name=None, **kwargs):
        pass


class _Norm(_Layer):
    def __init__(self, axis=-1, gamma_quantizer=None, gamma_initializer=None, **kwargs):
        super().__init__(**kwargs)


def test_translation_renames_qkeras_objects_and_refuses_what_it_cannot_keep():
    layers = types.SimpleNamespace(Layer=_Layer, BatchNormalization=_Norm)
    objects = {"QNorm": _Norm, "quantized_bits": object}
    quantizer = {"class_name": "quantized_bits", "config": {"bits": 4}, "registered_name": "quantized_bits"}
    t = translate("QNorm", {"name": "bn", "axis": [3], "gamma_quantizer": quantizer, "groups": 1}, objects, layers)
    assert t.cls is _Norm and t.config["axis"] == 3 and t.dropped == ("groups",)
    assert t.config["gamma_quantizer"]["registered_name"] == "qkeras>quantized_bits"
    with pytest.raises(Untranslatable, match=r"axis=\[1, 2\]"):
        translate("QNorm", {"axis": [1, 2]}, objects, layers)
    with pytest.raises(Untranslatable, match="renorm=True"):
        translate("QNorm", {"renorm": True}, objects, layers)
    with pytest.raises(Untranslatable, match="no class 'Nope'"):
        translate("Nope", {}, objects, layers)


# --- refused on the QKeras 0.9 stack ----------------------------------------------------------------------------------


@legacy_only
def test_migrate_is_refused_by_name_under_qkeras_09(tmp_path, capsys):
    with pytest.raises(KerasEnvironmentError, match="run it in the Keras 3 environment: see requirements-keras3.txt"):
        qextract.migrate(EXAMPLE, out=tmp_path / "new.keras")
    assert main(["migrate", str(EXAMPLE), "--out", str(tmp_path / "new.keras")]) == KerasEnvironmentError.exit_code
    assert "migrate builds qkeras-v3 layers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
