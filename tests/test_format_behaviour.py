"""Number formats carry their behaviour; output formats are descriptors in one table.

Driven by the registries: every number format kind (``numformat.KINDS``) and
every output format (``writers.FORMATS``) must have a case here, so adding
either without a test fails. The references are written out independently,
in plain Python/NumPy, from the conventions documented in
``qextract/numformat`` and ``qextract/writers/_words.py``.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import itertools
import pkgutil
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qextract
from qextract import manifest, numformat
from qextract.errors import ExportError, UsageError
from qextract.layouts import ExportedTensor, Layout
from qextract.manifest.building import tensor_entry
from qextract.numformat import KINDS, Binary, FixedPoint, Float, LookupTable, NumberFormat, PowerOfTwo, Ternary
from qextract.writers import FORMATS, OutputFormat, check_names, entries, write_all
from qextract.writers.memory import MemoryFile

# --- one case per number format kind ------------------------------------------------------

SAMPLES: dict[str, list[NumberFormat]] = {
    "fixed": [
        FixedPoint(bits=1, integer=0),
        FixedPoint(bits=4, integer=1),
        FixedPoint(bits=8, integer=3, symmetric=True),
        FixedPoint(bits=6, integer=2, is_signed=False),
        FixedPoint(bits=24, integer=0),
        FixedPoint(bits=64, integer=10),
        FixedPoint(bits=63, integer=0, is_signed=False),
    ],
    "po2": [
        PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0),
        PowerOfTwo(bits=6, exponent_min=-12, exponent_max=5),
        PowerOfTwo(bits=3, exponent_min=-3, exponent_max=0, negative=False),
        PowerOfTwo(bits=2, exponent_min=0, exponent_max=0),
    ],
    "binary": [Binary(), Binary(use_01=True)],
    "ternary": [Ternary()],
    "lut": [
        LookupTable(bits=3, table=(-1.0, -0.5, -0.125, 0.0, 0.1, 0.375, 0.75, 3.0)),
        LookupTable(bits=1, table=(0.5,)),
    ],
    "float": [Float()],
}
ALL = [f for fmts in SAMPLES.values() for f in fmts]
IDS = [str(f) for f in ALL]


def exponent_width(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding ``[lo, hi]``."""
    return next(e for e in itertools.count(1) if -(2 ** (e - 1)) <= lo and hi <= 2 ** (e - 1) - 1)


def random_codes(fmt: NumberFormat, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (and signs) a format allows, both ends of the range included; float32 values for Float."""
    if fmt.kind == "float":
        return rng.standard_normal(n).astype(np.float32) * np.float32(1e3), None
    lo, hi = fmt.code_min, fmt.code_max
    codes = [lo, hi] + [int(x) for x in rng.integers(lo, hi, n - 2, endpoint=True, dtype=np.int64)]
    if fmt.kind == "binary" and not fmt.use_01:
        codes = [1 if c == 0 else c for c in codes]
    signs = None
    if fmt.kind == "po2":
        choices = [-1, 0, 1] if fmt.negative else [0, 1]
        signs = np.array([choices[int(i)] for i in rng.integers(0, len(choices), n)], np.int8)
    return np.array(codes, np.int64), signs


def reference_word(fmt: NumberFormat, code: float, sign: int | None) -> int:
    """The storage word of one code, from the documented conventions alone."""
    if fmt.kind == "float":
        return struct.unpack("<I", struct.pack("<f", float(code)))[0]
    if fmt.kind == "binary":
        return int(code) if fmt.use_01 else int(code > 0)
    if fmt.kind == "po2":
        e = exponent_width(fmt.exponent_min, fmt.exponent_max)
        return ((sign == 0) << (e + 1)) | ((sign < 0) << e) | (int(code) % 2**e)
    return int(code) % 2**fmt.bits  # two's complement (or plain binary) at bits


def reference_width(fmt: NumberFormat) -> int:
    return {"float": 32, "binary": 1}.get(fmt.kind) or (
        exponent_width(fmt.exponent_min, fmt.exponent_max) + 2 if fmt.kind == "po2" else fmt.bits
    )


def reference_value(fmt: NumberFormat, code: float, sign: int | None, scale: np.float32) -> np.float32:
    """What one code means, in float32 arithmetic."""
    if fmt.kind == "float":
        return np.float32(code) * scale
    if fmt.kind == "po2":
        return np.float32(sign) * np.float32(2.0 ** int(code)) * scale
    if fmt.kind == "lut":
        return np.float32(fmt.table[int(code)]) * scale
    return np.asarray(code, np.int64).astype(np.float32) * scale  # int64 -> float32 as NumPy casts, no double rounding


C_TYPES = {"int8_t": (8, True), "uint8_t": (8, False), "int16_t": (16, True), "uint16_t": (16, False),
           "int32_t": (32, True), "uint32_t": (32, False), "int64_t": (64, True)}  # fmt: skip


def test_every_number_format_kind_has_cases():
    """A new NumberFormat subclass registers itself in KINDS; without samples here this fails."""
    assert set(SAMPLES) == set(KINDS), "add samples (and references above) for every number format kind"
    assert all(type(f) is KINDS[kind] for kind, fmts in SAMPLES.items() for f in fmts)


@pytest.mark.parametrize("fmt", ALL, ids=IDS)
def test_storage_words_round_trip_random_codes(fmt):
    rng = np.random.default_rng(7)
    for _ in range(5):
        codes, signs = random_codes(fmt, rng, 200)
        words = fmt.to_storage(codes, signs)
        assert words.dtype == np.uint64 and fmt.storage_bits == reference_width(fmt)
        expected = [
            reference_word(fmt, c, None if signs is None else int(s))
            for c, s in zip(codes.tolist(), signs if signs is not None else codes)
        ]
        assert words.tolist() == expected
        back, back_signs = fmt.from_storage(words)
        assert back.dtype == fmt.code_dtype and back.tobytes() == codes.astype(fmt.code_dtype).tobytes()
        if signs is None:
            assert back_signs is None
        else:
            assert back_signs.dtype == np.int8 and np.array_equal(back_signs, signs)


@pytest.mark.parametrize("fmt", ALL, ids=IDS)
def test_decode_and_value_rule_agree_with_the_reference(fmt):
    """decode matches the reference bit for bit, and the value rule's text, evaluated, gives the same values."""
    rng = np.random.default_rng(3)
    codes, signs = random_codes(fmt, rng, 50)
    scale = np.float32(0.375) if fmt.quantized else np.float32(1.0)
    got = fmt.decode(codes, scale, signs)
    assert got.dtype == np.float32
    listed_signs = [None] * len(codes) if signs is None else signs.tolist()
    expected = np.array([reference_value(fmt, c, s, scale) for c, s in zip(codes.tolist(), listed_signs)], np.float32)
    assert got.tobytes() == expected.tobytes()
    rule = fmt.value_rule()
    assert rule.startswith("value = ")
    names = {"scale": scale, "table": np.asarray(getattr(fmt, "table", ()), np.float32),
             "float32": lambda w: np.float32(struct.unpack("<f", struct.pack("<I", int(w)))[0])}  # fmt: skip
    if fmt.bits <= 24 or not fmt.quantized:  # the text in exact float32 arithmetic
        words = fmt.to_storage(codes, signs).tolist()
        for i, (c, s) in enumerate(zip(codes.tolist(), listed_signs)):
            value = eval(rule.split("=", 1)[1], {}, {**names, "code": c, "sign": s, "word": words[i]})
            assert np.float32(value).tobytes() == got[i].tobytes(), (rule, c, s)
    assert fmt.value_rule("scale[channel]").endswith("scale[channel]") or not fmt.quantized


@pytest.mark.parametrize("fmt", [f for f in ALL if f.quantized], ids=[str(f) for f in ALL if f.quantized])
def test_check_refuses_codes_outside_the_format(fmt):
    codes, signs = random_codes(fmt, np.random.default_rng(0), 6)
    held, _ = fmt.check(codes, signs)
    assert held.dtype == fmt.code_dtype and held.tobytes() == codes.astype(fmt.code_dtype).tobytes()
    if fmt.code_min == -(2**63) and fmt.code_max == 2**63 - 1:
        pytest.skip("every int64 is a code")
    bad = codes.copy()
    bad[3] = fmt.code_max + 1 if fmt.code_max < 2**63 - 1 else fmt.code_min - 1
    if signs is not None:
        signs = signs.copy()
        signs[3] = 1
    with pytest.raises(ValueError, match=rf"code {bad[3]} at index 3 is outside format"):
        fmt.check(bad, signs)
    if fmt.kind == "binary" and not fmt.use_01:
        with pytest.raises(ValueError, match="code 0 at index 0"):
            fmt.check(np.array([0, 1]))


@pytest.mark.parametrize("fmt", ALL, ids=IDS)
def test_c_type_holds_every_code_and_description_round_trips(fmt):
    if not fmt.quantized:
        assert fmt.c_type == "float" and fmt.code_dtype == np.float32
    else:
        bits, signed = C_TYPES[fmt.c_type]
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        assert lo <= fmt.code_min and fmt.code_max <= hi
        assert np.dtype(fmt.c_type.replace("_t", "")) == fmt.code_dtype
    assert numformat.from_description(fmt.describe()) == fmt
    assert str(fmt.storage_bits) in fmt.storage_rule()


def test_to_storage_refuses_what_its_field_cannot_hold():
    with pytest.raises(ValueError, match=r"codes span \[-1, 9\].*4-bit two's complement"):
        FixedPoint(bits=4, integer=1).to_storage(np.array([0, 9, -1]))
    with pytest.raises(ValueError, match="binary codes must be -1/\\+1"):
        Binary().to_storage(np.array([0, 1]))
    with pytest.raises(ValueError, match="need their signs"):
        PowerOfTwo(bits=4, exponent_min=-3).to_storage(np.array([0, -1]))
    with pytest.raises(ValueError, match="both zero and negative"):
        PowerOfTwo(bits=4, exponent_min=-7).from_storage(np.array([0b110000], np.uint64))


def test_no_module_tests_a_number_formats_kind():
    """Writers, manifest, tensors and export ask the format; only the number formats know their kinds."""
    root = Path(qextract.__file__).parent
    files = [*root.glob("writers/*.py"), *root.glob("manifest/*.py"), *root.glob("exporting/*.py"), root / "tensor.py"]
    assert len(files) > 10, "the modules to check moved: update this list"
    offenders = [f"{p.name}: {m[0]}" for p in files for m in re.finditer(r"(?:format|fmt)\.kind\b.*", p.read_text())]
    offenders += [
        f"{p.name}: {m[0]}"
        for p in files
        for m in re.finditer(r"isinstance\([^)]*(?:PowerOfTwo|LookupTable|Binary)", p.read_text())
    ]
    assert offenders == []


# --- one case per output format -----------------------------------------------------------

OUTPUTS: dict[str, dict[str, object]] = {  # what each format's files are, written out here
    "npz": {"per_tensor": False, "files": ["weights.npz"], "words": False},
    "header": {"per_tensor": False, "files": ["weights.h"], "words": True},
    "mem": {"per_tensor": True, "files": ["a.kernel.mem", "b.bias.mem"], "words": True},
    "coe": {"per_tensor": True, "files": ["a.kernel.coe", "b.bias.coe"], "words": True},
    "mif": {"per_tensor": True, "files": ["a.kernel.mif", "b.bias.mif"], "words": True},
    "csv": {"per_tensor": False, "files": ["weights.csv"], "words": False},
}


def tensor(fmt: NumberFormat, layer: str, name: str, shape: tuple[int, ...], seed: int) -> ExportedTensor:
    codes, signs = random_codes(fmt, np.random.default_rng(seed), int(np.prod(shape)))
    base: dict[str, Any] = {"layer": layer, "layer_class": "QDense", "kind": "dense", "name": name,
                            "layout": Layout.parse("hwio"), "axes": "IO"[-len(shape) :], "native_shape": shape}  # fmt: skip
    if not fmt.quantized:
        values = codes.reshape(shape)
        return ExportedTensor(**base, values=values, raw=values, format=fmt)
    codes = codes.astype(fmt.code_dtype).reshape(shape)
    signs = None if signs is None else signs.reshape(shape)
    scale = np.float32(0.25)
    values = np.array([reference_value(fmt, c, s, scale) for c, s in zip(codes.reshape(-1).tolist(),
                       [None] * codes.size if signs is None else signs.reshape(-1).tolist())], np.float32).reshape(shape)  # fmt: skip
    return ExportedTensor(**base, values=values, raw=values, format=fmt, codes=codes, signs=signs,
                          scale=np.asarray(scale), quantizer_str=f"q({fmt})")  # fmt: skip


def test_every_output_format_has_a_case_and_one_table_derives_the_rest():
    assert list(OUTPUTS) == list(FORMATS), "add a case for every output format (and keep FORMATS' order)"
    export_module = importlib.import_module(
        "qextract.exporting.exporter"
    )  # the module (qextract.export is the function)

    assert export_module.PER_TENSOR_FORMATS == {n for n, c in OUTPUTS.items() if c["per_tensor"]}
    assert export_module.WORD_FORMATS == tuple(n for n, c in OUTPUTS.items() if c["words"])
    for name, f in FORMATS.items():
        assert isinstance(f, OutputFormat) and f.name == name
        assert (f.per_tensor, f.words) == (OUTPUTS[name]["per_tensor"], OUTPUTS[name]["words"])


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("fmt", ALL, ids=IDS)
def test_every_output_format_round_trips_every_number_format(tmp_path, name, fmt):
    desc = FORMATS[name]
    tensors = [tensor(fmt, "a", "kernel", (3, 4), 1), tensor(fmt, "b", "bias", (5,), 2)]
    for word_bits in (None, 64) if fmt.storage_bits <= 64 else (None,):
        out = tmp_path / str(word_bits)
        paths = desc.write(tensors, out, word_bits=word_bits, model_name="m")
        assert [p.name for p in paths] == OUTPUTS[name]["files"]
        assert [p.name for p in paths] == (
            [desc.file_name(f"{t.layer}.{t.name}") for t in tensors] if desc.per_tensor else [desc.file_name()]
        )
        layers = [{"name": t.layer, "tensors": [tensor_entry(t, [], 0, ()).to_json()]} for t in tensors]
        table = entries({"word_bits": word_bits, "layers": layers})
        for t, path in zip(tensors, paths if desc.per_tensor else paths * len(tensors)):
            got = desc.read(path, table[t.key])
            expected = t.codes if t.quantized else t.values
            assert got.codes.dtype == expected.dtype and got.codes.tobytes() == expected.tobytes()
            assert (got.signs is None) == (t.signs is None)
            if t.signs is not None:
                assert np.array_equal(got.signs, t.signs)


@pytest.mark.parametrize("name", [n for n, c in OUTPUTS.items() if c["words"]])
def test_word_formats_pack_with_word_bits(tmp_path, name):
    t = tensor(FixedPoint(bits=4, integer=1), "a", "kernel", (3, 4), 0)
    one = FORMATS[name].write([t], tmp_path / "one")[0].read_bytes()
    packed = FORMATS[name].write([t], tmp_path / "packed", word_bits=16)[0].read_bytes()
    assert one != packed


def test_mem_coe_mif_are_one_memory_format_in_three_syntaxes():
    syntaxes = [FORMATS[n].read.__self__ for n in ("mem", "coe", "mif")]
    assert all(isinstance(s, MemoryFile) for s in syntaxes)
    assert [FORMATS[n].write.__self__ for n in ("mem", "coe", "mif")] == syntaxes
    assert [s.suffix for s in syntaxes] == [FORMATS[n].suffix for n in ("mem", "coe", "mif")]
    assert {s.comment for s in syntaxes} == {"//", ";", "--"}


def test_format_names_are_validated_in_one_place(tmp_path):
    assert check_names(None) == list(FORMATS)
    assert check_names("mif") == ["mif"] and check_names(["csv", "npz", "csv"]) == ["csv", "npz"]
    choices = ", ".join(FORMATS)
    for formats in (["npz", "vhdl", "json"], []):
        with pytest.raises(UsageError, match=r"unknown format\(s\) ('vhdl', 'json'|\(none\)); choose from " + choices):
            check_names(formats)
    with pytest.raises(ExportError, match=r"'vhdl'"):
        write_all([], tmp_path, ["vhdl"])
    with pytest.raises(UsageError, match=r"unknown format\(s\) 'vhdl'"):
        qextract.export(None, tmp_path / "x", formats=["vhdl"])  # refused before the source is looked at
    from qextract.cli import _format_list

    with pytest.raises(
        argparse.ArgumentTypeError, match=rf"^unknown format\(s\) bogus; choose from {','.join(FORMATS)}$"
    ):
        _format_list("npz,bogus")
    assert _format_list(" mem , npz ") == ["mem", "npz"]
    assert list(tmp_path.iterdir()) == []


def _enums(node: object) -> list[list[object]]:
    """Every ``enum`` list in a JSON Schema."""
    if isinstance(node, dict):
        return ([node["enum"]] if isinstance(node.get("enum"), list) else []) + [
            e for v in node.values() for e in _enums(v)
        ]
    return [e for v in node for e in _enums(v)] if isinstance(node, list) else []


def test_the_manifest_schema_names_every_output_format_and_number_format_kind():
    """The shipped schema is the manifest's contract for other tools: its name lists are the registries'."""
    enums = _enums(manifest.schema())
    formats = [e for e in enums if "npz" in e]
    kinds = [e for e in enums if "po2" in e]
    assert formats and all(sorted(e) == sorted(FORMATS) for e in formats), (
        "list the output format in manifest/schema.json"
    )
    assert kinds and all(sorted(e) == sorted(KINDS) for e in kinds), (
        "list the number format kind in manifest/schema.json"
    )


# --- doctests of the NumPy-only modules ---------------------------------------------------

NUMPY_ONLY = [
    "qextract.numformat",
    "qextract.layouts",
    "qextract.padding",
    "qextract.tensor",
    "qextract.manifest.building",
]
NUMPY_ONLY += sorted(
    {"qextract.numformat", "qextract.writers"}
    | {
        f"{pkg}.{m.name}"
        for pkg in ("qextract.numformat", "qextract.writers")
        for m in pkgutil.iter_modules(importlib.import_module(pkg).__path__)
    }
)


@pytest.mark.parametrize("module", sorted(set(NUMPY_ONLY)))
def test_doctests_of_numpy_only_modules(module):
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0, f"{result.failed} doctest(s) of {module} failed"
    if module in ("qextract.numformat", "qextract.numformat.formats", "qextract.writers", "qextract.layouts"):
        assert result.attempted > 0
