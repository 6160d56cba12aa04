"""The streaming export: one layer (and a large tensor a piece at a time) extracted, laid out and written at once.

The reference is the non-streaming result: the whole extraction laid out
(with public ``lay_out``, by the exporter's documented rule for a Dense fed
by Flatten) and written at once by ``write_all``, every file rendered whole.
The export must give the same bytes, with pieces of the default size and with
tiny ones that cut every tensor at many line boundaries. ``.npz`` members
carry the time they were written, so the zip clock is fixed for both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import tracemalloc
import types
import weakref
import zipfile

import numpy as np
import pytest
import zoo

import qextract
from qextract.errors import ExportError
from qextract.exporting import exporter
from qextract.kinds import Kind
from qextract.layouts import lay_out
from qextract.tensor import Extraction
from qextract.writers import FORMATS, write_all

keras = zoo.keras
ALL = list(FORMATS)
CASES = ["dense_po2", "dense_ternary", "conv2d_same_s2_even", "depthwise", "separable2d", "conv2d_batchnorm", "lstm"]


@pytest.fixture(autouse=True)
def fixed_zip_clock(monkeypatch):
    monkeypatch.setattr(zipfile, "time", types.SimpleNamespace(time=lambda: 1.7e9, localtime=time.localtime))


def flatten_cnn():
    """A convolution, a Flatten and two Dense layers: the kernel after Flatten is laid out by its flatten shape."""
    inp = keras.Input((6, 5, 2))
    x = zoo.Q.QConv2D(3, 3, kernel_quantizer="quantized_bits(6,0,1)", bias_quantizer="quantized_bits(8,3)", name="c")(
        inp
    )
    x = keras.layers.Flatten(name="flat")(x)
    x = zoo.Q.QDense(
        24, kernel_quantizer="quantized_bits(4,0,alpha='auto_po2')", bias_quantizer="quantized_bits(8,2)", name="d1"
    )(x)
    x = zoo.Q.QDense(7, kernel_quantizer="quantized_po2(4)", bias_quantizer="quantized_bits(16,8)", name="d2")(x)
    return zoo.randomize(keras.Model(inp, x, name="flat-cnn"), 3)


@pytest.fixture(scope="module")
def models():
    out = {name: zoo.randomize(zoo.CASES[name].build(), 1) for name in CASES}
    out["flatten_cnn"] = flatten_cnn()
    return out


def whole(model, layout, dense_as_conv=False):
    """Every tensor laid out, the whole extraction at once."""
    tensors = []
    for record in qextract.extract(model):
        flatten = record.config.get("flatten_input_shape") if record.kind == Kind.DENSE else None
        for t in record:
            shape = tuple(flatten) if flatten is not None and t.name == "kernel" else None
            tensors.append(lay_out(t, record.kind, layout, flatten_shape=shape, dense_as_conv=dense_as_conv))
    return tensors


def assert_same_as_whole(model, out, tmp_path, formats, layout="hwio", word_bits=None, dense_as_conv=False):
    reference = tmp_path / "whole"
    written = write_all(
        whole(model, layout, dense_as_conv), reference, formats, word_bits=word_bits, model_name=model.name
    )
    expected = [p.relative_to(reference).as_posix() for paths in written.values() for p in paths]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == expected
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "manifest.json"])
    for entry in manifest["files"]:
        data = (reference / entry["path"]).read_bytes()
        assert (out / entry["path"]).read_bytes() == data, entry["path"]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)


@pytest.mark.parametrize("chunk", [None, 3, 40])
@pytest.mark.parametrize("name", [*CASES, "flatten_cnn"])
def test_every_format_is_byte_identical_to_writing_everything_at_once(models, name, chunk, tmp_path, monkeypatch):
    if chunk is not None:  # tiny pieces: every tensor cut at many line and word boundaries
        monkeypatch.setattr(exporter, "open_sinks", functools.partial(exporter.open_sinks, chunk=chunk))
    model = models[name]
    for layout, word_bits in (("hwio", None), ("oihw", 24), ("ohwi", 64)):
        out = tmp_path / f"{layout}-{word_bits}"
        qextract.export(model, out, layout=layout, formats=ALL, word_bits=word_bits, dense_as_conv=True)
        assert_same_as_whole(model, out, tmp_path / f"ref-{layout}-{word_bits}", ALL, layout, word_bits, True)


def test_an_extraction_streams_to_the_same_bytes(models, tmp_path):
    model = models["flatten_cnn"]
    qextract.export(qextract.extract(model), tmp_path / "out", formats=ALL, word_bits=16)
    assert_same_as_whole(model, tmp_path / "out", tmp_path, ALL, word_bits=16)


def test_wide_words_and_large_tensors_in_default_pieces(tmp_path):
    """A tensor several default pieces long, 72-bit words in the header (one row of limbs each)."""
    inp = keras.Input((700,))
    x = zoo.Q.QDense(400, kernel_quantizer="quantized_bits(8,0,alpha='auto_po2')", name="big")(inp)
    x = zoo.Q.QDense(3, kernel_quantizer="quantized_bits(36,4)", use_bias=False, name="wide")(x)
    model = zoo.randomize(keras.Model(inp, x, name="big"), 2)
    qextract.export(model, tmp_path / "out", formats=["npz", "header", "mif"], word_bits=64)
    assert_same_as_whole(model, tmp_path / "out", tmp_path, ["npz", "header", "mif"], word_bits=64)
    out = exporter.open_sinks(tmp_path / "h", ["header"], word_bits=None, chunk=48)
    for t in whole(model, "hwio"):
        out.add(t)
    out.close()
    write_all(whole(model, "hwio"), tmp_path / "h-ref", ["header"])
    assert (tmp_path / "h" / "weights.h").read_bytes() == (tmp_path / "h-ref" / "weights.h").read_bytes()


def dense_stack(layers: int, units: int = 512):
    inp = keras.Input((units,))
    x = inp
    for i in range(layers):
        x = zoo.Q.QDense(units, kernel_quantizer="quantized_bits(8,0,alpha='auto_po2')", name=f"d{i}")(x)
    return zoo.randomize(keras.Model(inp, x, name=f"stack{layers}"), 0)


def test_memory_follows_the_largest_layer_not_the_model(tmp_path):
    """NumPy's allocations at their peak (tracemalloc) are the same for 2 and 8 layers of 1 MB of float weights.

    The code before streaming held every tensor in several forms at once: 15 MB for 2 layers, 43 MB for 8.
    """
    formats = ["npz", "header", "mem", "coe", "mif"]
    qextract.export(dense_stack(1, 64), tmp_path / "warm", formats=formats)
    peaks = {}
    for layers in (2, 8):
        model = dense_stack(layers)
        tracemalloc.start()
        try:
            qextract.export(model, tmp_path / f"s{layers}", formats=formats)
            peaks[layers] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    layer_mb = 512 * 513 * 4 / 2**20
    assert peaks[8] < 1.15 * peaks[2], peaks
    assert peaks[8] < 10 * layer_mb, peaks


def test_a_late_failure_leaves_nothing_and_names_every_tensor(tmp_path):
    """Codes too wide for word_bits in two layers, the second after others were written: one error naming both
    (the message the whole list gives), and no output, temporary folder or folder made for it left."""
    inp = keras.Input((5,))
    x = zoo.Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", name="a")(inp)
    x = zoo.Q.QDense(4, kernel_quantizer="quantized_bits(12,4)", name="b")(x)
    x = zoo.Q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", name="c")(x)
    x = zoo.Q.QDense(2, kernel_quantizer="quantized_bits(10,4)", use_bias=False, name="d")(x)
    model = zoo.randomize(keras.Model(inp, x), 0)
    with pytest.raises(ExportError) as streamed:  # into folders the export makes: removed again
        qextract.export(model, tmp_path / "new" / "folders" / "out", formats=["npz", "mem", "header"], word_bits=8)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError) as at_once:
        write_all(whole(model, "hwio"), tmp_path / "ref", ["npz", "mem", "header"], word_bits=8)
    assert str(streamed.value) == str(at_once.value)
    assert "b/kernel (12 bits)" in str(streamed.value) and "d/kernel (10 bits)" in str(streamed.value)


def test_a_layer_given_twice_is_refused_as_before(tmp_path, models):
    ex = qextract.extract(models["dense_po2"])
    twice = Extraction((*ex.layers, *ex.layers), model_name="twice")
    with pytest.raises(ExportError, match="tensors given more than once: q/bias, q/kernel"):
        qextract.export(twice, tmp_path / "out", formats=["npz", "mem"])
    assert list(tmp_path.iterdir()) == []


def test_extraction_is_consumed_one_layer_at_a_time(models, tmp_path, monkeypatch):
    """Each layer is written before the next is extracted: no two records are alive at once."""
    from qextract.reading import extraction

    alive: list[int] = []
    most = []
    real = extraction._extract_placed

    def counted(placed):
        record, ids = real(placed)
        alive.append(1)
        most.append(len(alive))
        weakref.finalize(record, alive.pop)
        return record, ids

    monkeypatch.setattr(extraction, "_extract_placed", counted)
    model = dense_stack(4, 16)
    qextract.export(model, tmp_path / "out", formats=["npz"])
    assert len(most) == 5 and max(most) == 1  # the input layer has a record too
    assert np.load(tmp_path / "out" / "weights.npz")["d3/kernel:codes"].shape == (16, 16)
