"""Readers: every format module's ``read`` returns exactly what its ``write`` wrote; verify cross-checks them.

Round trips run over every format x every number format x packings (none, a
few codes to an odd-width word, words crossing a 64-bit limb). Corruption
tests edit one file and fix its sha256 in the manifest, so only the readers
and the cross-check can notice.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import zoo
from test_writers import NUMBER_FORMATS, code_width, exported

from qextract.errors import VerificationError
from qextract.exporting.exporter import export
from qextract.layouts import ExportedTensor
from qextract.manifest.building import tensor_entry
from qextract.numformat import FixedPoint, PowerOfTwo, Ternary
from qextract.verification.verifier import load_export, verify
from qextract.writers import FORMATS, Codes, entries
from qextract.writers._entry import number_format

FORMAT_IDS = [f"{f}-{'s' if f.signed else 'u'}" for f in NUMBER_FORMATS]
PER_TENSOR = ("mem", "coe", "mif")


def manifest_of(tensors: list[ExportedTensor], word_bits: int | None) -> dict:
    """The part of a manifest the readers use, built by the manifest's own code."""
    layers = [{"name": t.layer, "tensors": [tensor_entry(t, [], 0, ()).to_json()]} for t in tensors]
    return {"word_bits": word_bits, "layers": layers}


def packings(fmt) -> list[int | None]:
    """No packing; several codes to an odd-width word; words wider than a 64-bit limb."""
    return [None, max(13, code_width(fmt)), 72]


def files_of(writer: str, paths: list[Path], tensors: list[ExportedTensor]) -> list[Path]:
    written = [t for t in tensors if t.size or writer not in PER_TENSOR]
    return paths if writer in PER_TENSOR else paths * len(written)


def assert_holds(got: Codes, t: ExportedTensor) -> None:
    expected = t.codes if t.quantized else t.values
    assert got.codes.shape == t.shape and got.codes.dtype == expected.dtype
    assert got.codes.tobytes() == expected.tobytes()
    if t.signs is None:
        assert got.signs is None
    else:
        assert got.signs.dtype == np.int8 and np.array_equal(got.signs, t.signs)


# --- round trips -------------------------------------------------------------------------


def test_every_format_module_reads_with_the_same_signature():
    signatures = {name: str(inspect.signature(module.read)) for name, module in FORMATS.items()}
    assert len(set(signatures.values())) == 1, signatures


@pytest.mark.parametrize("writer", list(FORMATS))
@pytest.mark.parametrize("fmt", NUMBER_FORMATS, ids=FORMAT_IDS)
def test_read_returns_exactly_what_write_wrote(tmp_path, writer, fmt):
    tensors = [
        exported(fmt, seed=1),
        exported(fmt, (7,), seed=2, per_channel=fmt.quantized, layer="dense", name="bias"),
    ]
    for word_bits in packings(fmt):
        table = entries(manifest_of(tensors, word_bits))
        paths = FORMATS[writer].write(tensors, tmp_path / str(word_bits), word_bits=word_bits)
        for t, path in zip(tensors, files_of(writer, paths, tensors), strict=True):
            assert_holds(FORMATS[writer].read(path, table[t.key]), t)


@pytest.mark.parametrize("writer", list(FORMATS))
def test_colliding_names_read_their_own_tensor(tmp_path, writer):
    """Names the writers number (conv_1_kernel_2, Conv_1.kernel_2.mem) are derived alike when reading."""
    fmt = FixedPoint(bits=5, integer=1)
    layers = ["conv-1", "conv_1", "Conv_1", "block 1/conv"]
    tensors = [exported(fmt, (2, 3), seed=i, layer=layer) for i, layer in enumerate(layers)]
    table = entries(manifest_of(tensors, 16))
    assert [table[t.key].c_name for t in tensors] == [
        "conv_1_kernel",
        "conv_1_kernel_2",
        "Conv_1_kernel_3",
        "block_1_conv_kernel",
    ]
    paths = FORMATS[writer].write(tensors, tmp_path, word_bits=16)
    for t, path in zip(tensors, files_of(writer, paths, tensors), strict=True):
        assert_holds(FORMATS[writer].read(path, table[t.key]), t)


@pytest.mark.parametrize("writer", list(FORMATS))
def test_empty_tensors_read_as_empty(tmp_path, writer):
    fmt = PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0)
    tensors = [exported(fmt, (0, 3), layer="e"), exported(fmt, (4,), layer="full")]
    table = entries(manifest_of(tensors, None))
    paths = FORMATS[writer].write(tensors, tmp_path)
    if writer not in PER_TENSOR:  # header, mem, coe and mif write no file for an empty tensor
        assert_holds(FORMATS[writer].read(paths[0], table["e/kernel"]), tensors[0])
    assert_holds(FORMATS[writer].read(paths[-1], table["full/kernel"]), tensors[1])
    assert_holds(Codes.empty(fmt, (0, 3)), tensors[0])


@pytest.mark.parametrize("fmt", NUMBER_FORMATS, ids=FORMAT_IDS)
def test_manifest_formats_rebuild_the_number_format(fmt):
    assert number_format(json.loads(json.dumps(fmt.describe()))) == fmt


# --- corrupted files ---------------------------------------------------------------------


def first_data_line(text: str, comment: str, edit) -> str:
    lines = text.split("\n")
    i = next(i for i, line in enumerate(lines) if not line.startswith(comment))
    while not re.search(r"[0-9a-f]", lines[i]) or lines[i].startswith("memory_"):
        i += 1
    lines[i] = edit(lines[i])
    return "\n".join(lines)


TERNARY = exported(Ternary(), (2, 3), seed=7, layer="t")
PACKED = exported(FixedPoint(bits=3, integer=0), (5,), seed=8, layer="p")  # 4 codes per 13-bit word, 1 in the last
CORRUPTIONS = {
    # mem, 13-bit words of four 3-bit codes: the last word holds one code; set a bit of its empty tail
    "mem-tail-bit": (
        "mem",
        PACKED,
        13,
        lambda s: s[: s.rstrip().rfind("\n") + 1] + "0008\n",
        "bits outside the 3-bit codes",
    ),
    # ternary 2-bit field 0b10 is -2: not a ternary code
    "mem-out-of-range": (
        "mem",
        TERNARY,
        None,
        lambda s: first_data_line(s, "//", lambda _: "2"),
        r"code -2 at index 0 is outside format ternary",
    ),
    "mem-short": ("mem", TERNARY, None, lambda s: s[: s.rstrip().rfind("\n") + 1], "5 memory words, expected 6"),
    "mem-not-hex": ("mem", TERNARY, None, lambda s: first_data_line(s, "//", lambda _: "g"), "'g' in a memory word"),
    "coe-end": ("coe", TERNARY, None, lambda s: s.rstrip()[:-1] + ",\n", "';' after the last word"),
    "mif-address": ("mif", TERNARY, None, lambda s: s.replace("\t0 : ", "\t1 : ", 1), "addresses 0 to 5"),
    "mif-width": ("mif", TERNARY, None, lambda s: s.replace("WIDTH=2;", "WIDTH=3;"), "expected WIDTH=2"),
    "header-missing": (
        "header",
        TERNARY,
        None,
        lambda s: s.replace("t_kernel[", "t_kernel_x["),
        r"no array t_kernel\[\]",
    ),
    "header-type": (
        "header",
        TERNARY,
        None,
        lambda s: s.replace("int8_t t_kernel[", "int16_t t_kernel["),
        "is int16_t, expected int8_t",
    ),
    "header-count": (
        "header",
        TERNARY,
        None,
        lambda s: s.replace(" = {\n", " = {\n    1,\n", 1),
        "holds 7 numbers, expected 6",
    ),
    "header-words": (
        "header",
        PACKED,
        13,
        lambda s: re.sub(
            r"(p_kernel_words\[[^{]*\{\n\s*0x[0-9a-f]*)([0-9a-f])", lambda m: m[1] + "%x" % (int(m[2], 16) ^ 1), s
        ),
        r"p_kernel_words\[\] holds code",
    ),
    "csv-row-missing": (
        "csv",
        TERNARY,
        None,
        lambda s: "\n".join(s.split("\n")[:2] + s.split("\n")[3:]),
        "5 rows, expected 6",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_files_are_a_verification_error_naming_file_and_tensor(tmp_path, case):
    writer, t, word_bits, corrupt, message = CORRUPTIONS[case]
    (path,) = FORMATS[writer].write([t], tmp_path, word_bits=word_bits)
    entry = entries(manifest_of([t], word_bits))[t.key]
    assert_holds(FORMATS[writer].read(path, entry), t)
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(VerificationError, match=rf"{re.escape(str(path))}: {t.key}: .*{message}"):
        FORMATS[writer].read(path, entry)


def test_a_tensor_missing_from_npz_names_the_array(tmp_path):
    (path,) = FORMATS["npz"].write([TERNARY], tmp_path)
    other = entries(manifest_of([exported(Ternary(), (2, 3), layer="u")], None))["u/kernel"]
    with pytest.raises(VerificationError, match=r"weights.npz: u/kernel: no array 'u/kernel:codes'"):
        FORMATS["npz"].read(path, other)


# --- verify: files other than npz, and the cross-check itself ----------------------------


def zoo_export(tmp_path: Path, formats: list[str], **kwargs):
    model = zoo.randomize(zoo.CASES["conv2d_same_s2_odd"].build(), seed=3)
    return model, export(model, tmp_path / "e", layout="ohwi", formats=formats, **kwargs).out_dir


def test_an_export_without_npz_verifies_from_header_and_mem(tmp_path):
    model, out = zoo_export(tmp_path, ["header", "mem"])
    assert not (out / "weights.npz").exists()
    table = verify(out, model)
    assert list(table["passed"]) == [True], table.to_string()
    assert table.attrs["formats_checked"] == ["header", "mem"]


def test_every_format_verifies_alone(tmp_path):
    model, out = zoo_export(tmp_path, ["coe"], word_bits=16)
    table = verify(out, model)
    assert list(table["passed"]) == [True] and table.attrs["formats_checked"] == ["coe"]
    _, npz_values = load_export(zoo_export(tmp_path / "npz", ["npz"])[1])
    _, values = load_export(out)
    assert {k: v.tobytes() for k, v in values.items()} == {k: v.tobytes() for k, v in npz_values.items()}


def rehash(out: Path, changed: Path) -> None:
    """Record ``changed``'s new sha256 and size in the manifest, as if it had been exported so."""
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    data = changed.read_bytes()
    for f in manifest["files"]:
        if out / f["path"] == changed:
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def flip_hex(line: str) -> str:
    """The last hex digit with its lowest bit flipped: still a valid 4-bit code, but another one."""
    return line[:-1] + "%x" % (int(line[-1], 16) ^ 1)


def flip_csv_code(line: str) -> str:
    row = next(csv.reader([line]))
    row[7] = str(int(row[7]) ^ 1)
    out = []
    csv.writer(_Collect(out), lineterminator="").writerow(row)
    return out[0]


class _Collect:
    def __init__(self, into: list[str]) -> None:
        self.write = into.append


TAMPER = {
    "mem": ("q.kernel.mem", lambda s: first_data_line(s, "//", flip_hex)),
    "coe": ("q.kernel.coe", lambda s: first_data_line(s, ";", lambda ln: flip_hex(ln[:-1]) + ln[-1])),
    "mif": ("q.kernel.mif", lambda s: re.sub(r"\t0+ : [0-9a-f]+", lambda m: flip_hex(m[0]), s, count=1)),
    "header": (
        "weights.h",
        lambda s: re.sub(r"(q_kernel\[[^{]*\{\n\s*)(-?\d+)", lambda m: m[1] + str(int(m[2]) ^ 1), s),
    ),
    "csv": ("weights.csv", lambda s: first_data_line(s, "layer,", flip_csv_code)),
}


@pytest.mark.parametrize("fmt", list(TAMPER))
def test_one_changed_code_with_a_matching_sha256_is_caught_by_the_cross_check(tmp_path, fmt):
    """The sha256 check passes (the manifest was updated), so only reading the files can notice."""
    model, out = zoo_export(tmp_path, list(FORMATS))
    name, tamper = TAMPER[fmt]
    path = out / name
    text = path.read_text()
    path.write_text(tamper(text))
    assert path.read_text() != text
    rehash(out, path)
    with pytest.raises(
        VerificationError, match=rf"{re.escape(str(path))}: q/kernel holds code -?\d+ at index 0 .* weights.npz holds"
    ):
        verify(out, model)


def test_a_changed_mem_file_is_caught_without_npz(tmp_path):
    model, out = zoo_export(tmp_path, ["header", "mem"])
    path = out / "q.kernel.mem"
    path.write_text(first_data_line(path.read_text(), "//", flip_hex))
    rehash(out, path)
    with pytest.raises(
        VerificationError,
        match=r"q\.kernel\.mem: q/kernel holds code .* at index 0 \(0, 0, 0, 0\), but weights\.h holds",
    ):
        verify(out, model)
