"""Export + manifest + verify, over the zoo of layer kinds, every layout and format."""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest
import zoo

import qextract
from qextract.errors import ExportError, VerificationError
from qextract.exporting.exporter import export
from qextract.layers import LAYERS
from qextract.layouts import LAYOUTS
from qextract.manifest import validate
from qextract.padding import same_pad
from qextract.verification.verifier import VERIFIED_KINDS, verify
from qextract.writers import FORMATS

H5 = zoo.EXAMPLE
VERIFIABLE = [n for n, c in zoo.CASES.items() if LAYERS[c.layer_class].kind in VERIFIED_KINDS]


@pytest.fixture(scope="module")
def digits():
    return qextract.load_model(H5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_example_exports_and_verifies_in_every_layout(tmp_path, digits, layout):
    result = export(digits, tmp_path / "out", layout=layout, formats=list(FORMATS), dense_as_conv=True)
    manifest = json.loads(result.manifest_path.read_text())
    validate(manifest)
    assert manifest == json.loads(json.dumps(result.manifest.to_json()))
    table = verify(result.out_dir, digits)
    assert table["passed"].all() and len(table) == 6, table.to_string()
    assert table.attrs["formats_checked"] == list(FORMATS)  # every file read back and cross-checked
    fc5 = next(layer for layer in manifest["layers"] if layer["name"] == "fc5")
    assert fc5["flatten_shape"] == [2, 2, 16]
    assert (
        fc5["tensors"][0]["shape"] == {"hwio": [2, 2, 16, 10], "ohwi": [10, 2, 2, 16], "oihw": [10, 16, 2, 2]}[layout]
    )
    for f in manifest["files"]:
        assert (result.out_dir / f["path"]).stat().st_size == f["bytes"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", VERIFIABLE)
def test_every_verifiable_kind_round_trips_through_the_files(tmp_path, name, layout):
    model = zoo.randomize(zoo.CASES[name].build(), seed=zlib.crc32(name.encode()) % 1000)
    out = export(model, tmp_path / "e", layout=layout, formats=["npz", "mem"]).out_dir
    table = verify(out, model)
    assert list(table["passed"]) == [True], table.to_string()


def test_verify_fails_for_another_model_and_for_changed_files(tmp_path):
    model = zoo.randomize(zoo.CASES["conv2d_same_s2_odd"].build(), seed=1)
    out = export(model, tmp_path / "e", layout="oihw").out_dir
    other = zoo.randomize(zoo.CASES["conv2d_same_s2_odd"].build(), seed=2)
    assert list(verify(out, other)["passed"]) == [False]
    data = (out / "weights.npz").read_bytes()
    (out / "weights.npz").write_bytes(data[:-10] + bytes(10))
    with pytest.raises(VerificationError, match="changed since export"):
        verify(out, model)


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [
        (8, 3, 2, (0, 1)),  # TF puts the odd pixel at the end
        (7, 3, 2, (1, 1)),
        (8, 4, 2, (1, 1)),
        (6, 2, 1, (0, 1)),
        (5, 5, 1, (2, 2)),
        (9, 1, 3, (0, 0)),
    ],
)
def test_same_padding_numbers_derived_by_hand(size, kernel, stride, expected):
    assert same_pad(size, kernel, stride) == expected


def test_explicit_padding_reproduces_tensorflow_same():
    from qextract._keras import tf

    t = tf()
    rng = np.random.default_rng(0)
    for h, w, k, s in [(8, 6, 3, 2), (7, 9, 3, 2), (8, 8, 4, 2), (6, 5, 2, 1)]:
        x = rng.standard_normal((1, h, w, 2)).astype(np.float32)
        f = rng.standard_normal((k, k, 2, 3)).astype(np.float32)
        same = t.nn.conv2d(x, f, s, "SAME").numpy()
        (top, bottom), (left, right) = same_pad(h, k, s), same_pad(w, k, s)
        padded = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
        np.testing.assert_allclose(t.nn.conv2d(padded, f, s, "VALID").numpy(), same, rtol=1e-6, atol=1e-6)


def test_manifest_records_geometry(tmp_path):
    model = zoo.randomize(zoo.CASES["conv2d_same_s2_k3_even"].build())
    manifest = export(model, tmp_path / "e", layout="ohwi").manifest.to_json()
    layer = next(layer for layer in manifest["layers"] if layer["name"] == "q")
    g = layer["geometry"]
    assert g["strides"] == [2, 2] and g["padding"] == "same"
    assert g["explicit_padding"] == {"top": 0, "bottom": 1, "left": 0, "right": 1}
    kernel = layer["tensors"][0]
    assert kernel["axes"] == "OHWI" and kernel["shape"] == [3, 3, 3, 2]
    # QKeras made the kernel quantizer auto_po2: per-channel scales, so no single HLS type, although
    # quantized_bits(6,2,1) alone would suggest ap_fixed<6,3>. Only the scale-aware type is recorded.
    assert "ap_type" not in kernel["format"]
    if kernel["scale"]["per_channel"] and len(set(kernel["scale"]["values"])) > 1:
        assert kernel["ap_type"] is None
    bias = layer["tensors"][1]
    assert bias["ap_type"] == "ap_fixed<8,3>" and bias["format"]["fractional_bits"] == 5


def test_existing_output_is_refused_without_force_and_kept_intact(tmp_path, digits):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty.*force=True"):
        export(digits, out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="is not a qextract export"):  # --force replaces only a previous export
        export(digits, out, force=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export(digits, out)
    export(digits, out, force=True)
    assert (out / "manifest.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left


def test_failed_export_leaves_nothing(tmp_path, digits, monkeypatch):
    from qextract.writers import FORMATS as table

    real = table["mif"].sink

    def failing(*args, **kwargs):  # export streams each tensor through every format's sink
        sink = real(*args, **kwargs)

        def boom(t):
            raise OSError("disk full (simulated)")

        sink.add = boom
        return sink

    monkeypatch.setattr(table["mif"], "sink", failing)
    with pytest.raises(ExportError, match="writing failed .disk full .simulated"):
        export(digits, tmp_path / "out", formats=["npz", "mif"])
    assert list(tmp_path.iterdir()) == []


def test_layers_option_exports_only_those(tmp_path, digits):
    manifest = export(digits, tmp_path / "o", layers=["conv1", "fc5"]).manifest.to_json()
    assert [layer["name"] for layer in manifest["layers"]] == ["conv1", "fc5"]
    shutil.rmtree(tmp_path / "o")
