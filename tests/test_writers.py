"""Writers: write, parse back with small independent parsers, compare with the codes exactly.

The parsers and the word decoding here follow REFERENCE.md section 5 and the
conventions documented in qextract/writers/_words.py; they do not import the
writers' helpers. Golden tests spell out expected bytes derived by hand.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qextract.errors import ExportError, QExtractWarning
from qextract.layouts import ExportedTensor, Layout
from qextract.numformat import Binary, FixedPoint, Float, LookupTable, PowerOfTwo, Ternary
from qextract.tensor import decode
from qextract.writers import FORMATS, write_all

# --- fixtures ----------------------------------------------------------------------------

NUMBER_FORMATS = (
    [FixedPoint(bits=b, integer=min(b - 1, 2), is_signed=True) for b in range(1, 17)]
    + [FixedPoint(bits=b, integer=b // 2, is_signed=False) for b in range(1, 17)]
    + [
        FixedPoint(bits=8, integer=3, is_signed=True, symmetric=True),
        FixedPoint(bits=24, integer=0, is_signed=True),
        Binary(),
        Binary(use_01=True),
        Ternary(),
        PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0),
        PowerOfTwo(bits=6, exponent_min=-12, exponent_max=5),
        LookupTable(bits=3, table=(-1.0, -0.5, -0.125, 0.0, 0.1, 0.375, 0.75, 3.0)),
        Float(),
    ]
)
FORMAT_IDS = [f"{f}-{'s' if f.signed else 'u'}" for f in NUMBER_FORMATS]
TEXT_FORMATS = ("header", "mem", "coe", "mif")


def code_width(fmt) -> int:
    """Bits of one stored code: REFERENCE/brief conventions, written out independently."""
    if fmt.kind == "float":
        return 32
    if fmt.kind == "binary":
        return 1
    if fmt.kind == "po2":
        return fmt.exponent_bits + 2
    return fmt.bits


def exported(fmt, shape=(3, 2, 5), per_channel=False, seed=0, layer="conv_1", name="kernel") -> ExportedTensor:
    """A laid-out tensor built from NumPy alone; codes include both ends of the range."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal(shape).astype(np.float32)
    base = dict(layer=layer, layer_class="QConv1D", kind="conv1d", name=name, layout=Layout.parse("ohwi"),
                axes="OKI"[: len(shape)].ljust(len(shape), "X"), raw=raw, native_shape=shape)  # fmt: skip
    if not fmt.quantized:
        values = (raw * np.float32(3.0)).astype(np.float32)
        values.flat[:3] = [np.float32(1e-30), np.float32(-3.4e38), np.float32(0.1)]
        return ExportedTensor(**base, values=values, format=fmt)
    codes = rng.integers(fmt.code_min, fmt.code_max + 1, shape).astype(fmt.code_dtype)
    if codes.size:
        codes.flat[0], codes.flat[-1] = fmt.code_min, fmt.code_max
    if fmt.kind == "binary" and not fmt.use_01:  # binary codes are -1 or +1, never 0
        codes = np.where(codes == 0, 1, codes).astype(fmt.code_dtype)
    signs = rng.choice(np.array([-1, 0, 1], np.int8), shape) if fmt.kind == "po2" else None
    if per_channel:
        scale = (2.0 ** -np.arange(shape[0]) * np.float32(1.1)).astype(np.float32)  # 1.1: not a power of two
        scale_axis, bscale = 0, scale.reshape(-1, *[1] * (len(shape) - 1))
    else:
        scale, scale_axis = np.asarray(np.float32(2.0**-3)), None
        bscale = scale
    values = decode(fmt, codes, bscale, signs)
    return ExportedTensor(**base, values=values, format=fmt, codes=codes, signs=signs, scale=scale,
                          scale_axis=scale_axis, quantizer_str=f"q({fmt})")  # fmt: skip


def word_widths(fmt) -> list[int | None]:
    w = code_width(fmt)
    return [None, *sorted({w, *(b for b in (8, 13, 32, 64, 72, 128) if b >= w)})]


# --- independent parsers and decoders ----------------------------------------------------


def parse_mem(text: str, word_bits: int) -> list[int]:
    lines = [ln.strip() for ln in text.splitlines()]
    data = [ln for ln in lines if ln and not ln.startswith("//")]
    assert all(len(d) == math.ceil(word_bits / 4) for d in data), "digit count"
    assert all(re.fullmatch(r"[0-9a-f]+", d) for d in data)
    return [int(d, 16) for d in data]


def parse_coe(text: str, word_bits: int) -> list[int]:
    lines = [ln for ln in text.splitlines() if not ln.startswith(";")]
    body = "".join(ln + "\n" for ln in lines)
    m = re.fullmatch(r"memory_initialization_radix=16;\nmemory_initialization_vector=\n(.*);\n", body, re.S)
    assert m, body[:200]
    items = [x.strip() for x in m.group(1).split(",")]
    assert all(len(x) == math.ceil(word_bits / 4) for x in items)
    return [int(x, 16) for x in items]


def parse_mif(text: str, word_bits: int) -> list[int]:
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("--"))
    m = re.search(
        r"WIDTH=(\d+);\s*DEPTH=(\d+);\s*ADDRESS_RADIX=HEX;\s*DATA_RADIX=HEX;\s*CONTENT BEGIN\n(.*?)END;\s*$", body, re.S
    )
    assert m, body[:300]
    width, depth = int(m.group(1)), int(m.group(2))
    assert width == word_bits
    rows = [re.fullmatch(r"\s*([0-9a-fA-F]+) : ([0-9a-fA-F]+);", ln) for ln in m.group(3).splitlines()]
    assert all(rows) and len(rows) == depth
    assert [int(r.group(1), 16) for r in rows] == list(range(depth))
    return [int(r.group(2), 16) for r in rows]


def parse_header(text: str) -> tuple[dict[str, int], dict[str, tuple[str, list[str]]], list[str]]:
    """(#defines, arrays name -> (ctype, items), typedef lines), comments removed."""
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    defines = {k: int(v) for k, v in re.findall(r"^#define (\w+) (-?\d+)", code, re.M)}
    arrays = {}
    for ctype, name, _, body in re.findall(r"static const (\w+) (\w+)\[([^=]*)\] = \{(.*?)\n\};", code, re.S):
        items = [x for x in re.split(r"[,{}\s]+", body) if x]
        arrays[name] = (ctype, items)
    typedefs = re.findall(r"^typedef .*;$", code, re.M)
    return defines, arrays, typedefs


def c_int(token: str) -> int:
    return int(token.rstrip("uUlL"), 16) if token.startswith("0x") else int(token)


C_TYPES = [("int8_t", -(2**7), 2**7 - 1), ("uint8_t", 0, 2**8 - 1), ("int16_t", -(2**15), 2**15 - 1),
           ("uint16_t", 0, 2**16 - 1), ("int32_t", -(2**31), 2**31 - 1)]  # fmt: skip


def smallest_c_type(lo: int, hi: int) -> str:
    return next(name for name, a, b in C_TYPES if a <= lo and hi <= b)


def unpack(words: list[int], width: int, word_bits: int, count: int) -> list[int]:
    """Fields of ``width`` bits, first in the least significant bits; padding must be zero."""
    per_word = word_bits // width
    assert len(words) == math.ceil(count / per_word)
    fields = []
    for w in words:
        assert 0 <= w < 2**word_bits
        assert w >> (per_word * width) == 0, "bits above the last field must be zero"
        fields += [(w >> (j * width)) & (2**width - 1) for j in range(per_word)]
    assert all(f == 0 for f in fields[count:]), "tail of the last word must be zero"
    return fields[:count]


def sign_extend(v: int, bits: int) -> int:
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def check_fields(t: ExportedTensor, fields: list[int]) -> None:
    """Decode storage fields by the documented convention and compare with the tensor exactly."""
    fmt, width = t.format, code_width(t.format)
    if not fmt.quantized:
        got = np.array([struct.unpack("<f", struct.pack("<I", f))[0] for f in fields], np.float32)
        assert got.tobytes() == t.values.reshape(-1).tobytes()
        return
    codes = t.codes.reshape(-1).tolist()
    if fmt.kind == "binary":
        expected = codes if fmt.use_01 else [1 if c > 0 else 0 for c in codes]
        assert fields == expected
        return
    if fmt.kind == "po2":
        e = width - 2
        signs = t.signs.reshape(-1).tolist()
        for f, c, s in zip(fields, codes, signs):
            zero, negative, exponent = f >> (e + 1), (f >> e) & 1, sign_extend(f & (2**e - 1), e)
            assert zero == (s == 0) and negative == (s < 0)
            if s != 0:
                assert exponent == c
        return
    decoded = [sign_extend(f, width) for f in fields] if fmt.code_min < 0 else fields
    assert decoded == codes


def fields_from_file(writer: str, path: Path, t: ExportedTensor, word_bits: int | None) -> list[int]:
    width = code_width(t.format)
    wb = word_bits or width
    text = path.read_text()
    words = {"mem": parse_mem, "coe": parse_coe, "mif": parse_mif}[writer](text, wb)
    return unpack(words, width, wb, t.size)


# --- round trips over every number format and packing ------------------------------------


@pytest.mark.parametrize("writer", ["mem", "coe", "mif"])
@pytest.mark.parametrize("fmt", NUMBER_FORMATS, ids=FORMAT_IDS)
def test_memory_files_read_back_exactly(tmp_path, writer, fmt):
    tensors = [exported(fmt, seed=1), exported(fmt, shape=(7,), seed=2, layer="dense", name="bias")]
    for word_bits in word_widths(fmt):
        out = tmp_path / str(word_bits)
        paths = FORMATS[writer].write(tensors, out, word_bits=word_bits, model_name="m")
        assert [p.name for p in paths] == [f"conv_1.kernel.{writer}", f"dense.bias.{writer}"]
        for t, path in zip(tensors, paths):
            check_fields(t, fields_from_file(writer, path, t, word_bits))


@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
@pytest.mark.parametrize("fmt", NUMBER_FORMATS, ids=FORMAT_IDS)
def test_header_reads_back_exactly(tmp_path, fmt, per_channel):
    t = exported(fmt, per_channel=per_channel and fmt.quantized, seed=3)
    for word_bits in word_widths(fmt):
        (path,) = FORMATS["header"].write([t], tmp_path, word_bits=word_bits, model_name="my-model")
        assert path.name == "weights.h"
        text = path.read_text()
        assert text.startswith("/*") and "#ifndef QEXTRACT_MY_MODEL_WEIGHTS_H" in text and "#include <stdint.h>" in text
        assert text.rstrip().endswith("#endif /* QEXTRACT_MY_MODEL_WEIGHTS_H */")
        defines, arrays, typedefs = parse_header(text)
        p = "CONV_1_KERNEL"
        assert defines[f"{p}_RANK"] == 3 and [defines[f"{p}_DIM{i}"] for i in range(3)] == list(t.shape)
        assert defines[f"{p}_SIZE"] == t.size and defines[f"{p}_BITS"] == fmt.bits
        ctype, items = arrays["conv_1_kernel"]
        if not fmt.quantized:
            assert ctype == "float"
            assert np.array(items, np.float64).astype(np.float32).tobytes() == t.values.reshape(-1).tobytes()
            continue
        assert ctype == smallest_c_type(fmt.code_min, fmt.code_max)
        assert [int(x) for x in items] == t.codes.reshape(-1).tolist()
        scale_type, scale_items = arrays["conv_1_kernel_scale"]
        assert scale_type == "float" and defines[f"{p}_SCALE_SIZE"] == t.scale.size
        assert np.array(scale_items, np.float64).astype(np.float32).tobytes() == t.scale.reshape(-1).tobytes()
        assert defines[f"{p}_SCALE_AXIS"] == (0 if per_channel else -1)
        if fmt.kind == "po2":
            assert arrays["conv_1_kernel_sign"][0] == "int8_t"
            assert [int(x) for x in arrays["conv_1_kernel_sign"][1]] == t.signs.reshape(-1).tolist()
        if fmt.kind == "lut":
            table = np.array(arrays["conv_1_kernel_table"][1], np.float64).astype(np.float32)
            assert table.tobytes() == np.asarray(fmt.table, np.float32).tobytes()
        if fmt.kind == "fixed" and not per_channel:  # scale 2**-3: W bits, F = 3 fractional
            assert defines[f"{p}_FRAC_BITS"] == 3
            kind = "ap_fixed" if fmt.signed else "ap_ufixed"
            assert typedefs == [f"typedef {kind}<{fmt.bits},{fmt.bits - 3}> conv_1_kernel_t;"]
        else:
            assert f"{p}_FRAC_BITS" not in defines and typedefs == []
        if word_bits is None:
            assert "conv_1_kernel_words" not in arrays
            continue
        wtype, witems = arrays["conv_1_kernel_words"]
        limbs = defines.get(f"{p}_WORD_LIMBS", 1)
        values = [c_int(x) for x in witems]
        words = [sum(v << (64 * j) for j, v in enumerate(values[i : i + limbs])) for i in range(0, len(values), limbs)]
        assert defines[f"{p}_WORD_BITS"] == word_bits and defines[f"{p}_DEPTH"] == len(words)
        assert wtype == next(f"uint{b}_t" for b in (8, 16, 32, 64) if word_bits <= b or b == 64)
        check_fields(t, unpack(words, code_width(fmt), word_bits, t.size))


@pytest.mark.parametrize("fmt", NUMBER_FORMATS, ids=FORMAT_IDS)
def test_npz_round_trip(tmp_path, fmt):
    tensors = [exported(fmt, seed=4), exported(fmt, (4,), per_channel=fmt.quantized, layer="fc", name="bias")]
    (path,) = FORMATS["npz"].write(tensors, tmp_path)
    assert path.name == "weights.npz"
    with np.load(path, allow_pickle=False) as data:
        expected = {"conv_1/kernel", "fc/bias"}
        if fmt.quantized:
            expected |= {f"{k}:{s}" for k in ("conv_1/kernel", "fc/bias") for s in ("codes", "scale")}
        if fmt.kind == "po2":
            expected |= {"conv_1/kernel:signs", "fc/bias:signs"}
        assert set(data.files) == expected
        for t in tensors:
            assert data[t.key].dtype == np.float32 and data[t.key].tobytes() == t.values.tobytes()
            if fmt.quantized:
                codes = data[f"{t.key}:codes"]
                assert codes.dtype == fmt.code_dtype and np.array_equal(codes, t.codes)
                assert data[f"{t.key}:scale"].tobytes() == t.scale.astype(np.float32).tobytes()
                assert (
                    decode(fmt, codes, t.broadcast_scale(), data.get(f"{t.key}:signs")).tobytes() == t.values.tobytes()
                )


@pytest.mark.parametrize("fmt", NUMBER_FORMATS[::3] + NUMBER_FORMATS[-9:], ids=str)
def test_csv_round_trip(tmp_path, fmt):
    tensors = [exported(fmt, seed=5, per_channel=fmt.quantized), exported(fmt, (4,), layer="fc", name="bias")]
    (path,) = FORMATS["csv"].write(tensors, tmp_path)
    df = pd.read_csv(path, dtype={"layer": str, "tensor": str, "multi_index": str})
    assert list(df.columns) == [
        "layer",
        "tensor",
        "layout",
        "index",
        "multi_index",
        "raw",
        "value",
        "code",
        "sign",
        "scale",
    ]
    assert len(df) == sum(t.size for t in tensors)
    for t in tensors:
        rows = df[(df.layer == t.layer) & (df.tensor == t.name)]
        assert (rows.layout == "ohwi").all() and rows["index"].tolist() == list(range(t.size))
        assert rows.multi_index.tolist() == [",".join(map(str, ix)) for ix in np.ndindex(*t.shape)]
        assert rows.value.to_numpy(np.float32).tobytes() == t.values.reshape(-1).tobytes()
        assert rows.raw.to_numpy(np.float32).tobytes() == t.raw.reshape(-1).tobytes()
        if t.quantized:
            assert rows.code.astype(int).tolist() == t.codes.reshape(-1).tolist()
            scales = np.broadcast_to(t.broadcast_scale(), t.shape).reshape(-1)
            assert rows.scale.to_numpy(np.float32).tobytes() == scales.astype(np.float32).tobytes()
        else:
            assert rows.code.isna().all() and rows.scale.isna().all()
        if fmt.kind == "po2":
            assert rows.sign.astype(int).tolist() == t.signs.reshape(-1).tolist()
        else:
            assert rows.sign.isna().all()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_header_compiles_and_holds_the_values(tmp_path):
    """The C compiler is the independent reader: print every array with exact (%a) floats."""
    tensors = [
        exported(FixedPoint(bits=6, integer=2), per_channel=True, layer="c1"),
        exported(PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0), layer="c2"),
        exported(FixedPoint(bits=16, integer=2, is_signed=False), layer="c3"),
        exported(Float(), layer="c4"),
        exported(LookupTable(bits=3, table=(-1.0, -0.5, -0.125, 0.0, 0.1, 0.375, 0.75, 3.0)), layer="c5"),
    ]
    FORMATS["header"].write(tensors, tmp_path, word_bits=72, model_name="net")
    _, arrays, _ = parse_header((tmp_path / "weights.h").read_text())
    lines = []
    for name, (ctype, _) in arrays.items():
        loop = f"for (i = 0; i < sizeof {name} / sizeof {name}[0]; i++)"
        if name.endswith("_words"):  # [depth][2] uint64_t limbs
            element = f"((const uint64_t *){name})[i]"
            lines.append(
                f'for (i = 0; i < sizeof {name} / 8; i++) printf("{name} %llu\\n", (unsigned long long){element});'
            )
        elif ctype == "float":
            lines.append(f'{loop} printf("{name} %a\\n", (double){name}[i]);')
        else:
            lines.append(f'{loop} printf("{name} %lld\\n", (long long){name}[i]);')
    body = "\n ".join(lines)
    (tmp_path / "main.c").write_text(
        f'#include <stdio.h>\n#include "weights.h"\nint main(void) {{\n size_t i;\n {body}\n return 0;\n}}\n'
    )
    cc = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", "main", "main.c"]
    subprocess.run(cc, cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout
    printed: dict[str, list[str]] = {}
    for line in out.splitlines():
        name, value = line.split()
        printed.setdefault(name, []).append(value)
    for t, stem in zip(tensors, ["c1_kernel", "c2_kernel", "c3_kernel", "c4_kernel", "c5_kernel"]):
        if not t.quantized:
            got = np.array([float.fromhex(v) for v in printed[stem]], np.float32)
            assert got.tobytes() == t.values.reshape(-1).tobytes()
            continue
        assert [int(v) for v in printed[stem]] == t.codes.reshape(-1).tolist()
        scale = np.array([float.fromhex(v) for v in printed[f"{stem}_scale"]], np.float32)
        assert scale.tobytes() == t.scale.reshape(-1).tobytes()
        limbs = [int(v) for v in printed[f"{stem}_words"]]
        words = [limbs[i] | limbs[i + 1] << 64 for i in range(0, len(limbs), 2)]
        check_fields(t, unpack(words, code_width(t.format), 72, t.size))
    assert [int(v) for v in printed["c2_kernel_sign"]] == tensors[1].signs.reshape(-1).tolist()


# --- golden bytes, derived by hand --------------------------------------------------------


def golden_tensor() -> ExportedTensor:
    """Dense kernel (2,2), 4-bit signed codes [[-3,1],[7,-8]], scale 0.25, hwio."""
    codes = np.array([[-3, 1], [7, -8]], np.int8)
    return ExportedTensor(
        layer="fc", layer_class="QDense", kind="dense", name="kernel", layout=Layout.parse("hwio"), axes="IO",
        values=np.array([[-0.75, 0.25], [1.75, -2.0]], np.float32),
        raw=np.array([[-0.7, 0.3], [1.8, -2.1]], np.float32),
        format=FixedPoint(bits=4, integer=1), codes=codes, scale=np.asarray(np.float32(0.25)),
        quantizer_str="quantized_bits(4,1,alpha=1)", native_shape=(2, 2),
    )  # fmt: skip


def data_only(text: str, comment: str) -> str:
    return "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith(comment))


def test_golden_mem(tmp_path):
    # two's complement nibbles: -3 -> d, 1 -> 1, 7 -> 7, -8 -> 8
    (p,) = FORMATS["mem"].write([golden_tensor()], tmp_path)
    assert p.name == "fc.kernel.mem"
    text = p.read_text()
    assert data_only(text, "//") == "d\n1\n7\n8\n"
    assert text.startswith("// ") and "fc/kernel" in text and "layout hwio" in text and "shape 2x2" in text
    # packed two to a byte, first code in the low nibble: 0x1d, 0x87
    (p,) = FORMATS["mem"].write([golden_tensor()], tmp_path / "p", word_bits=8)
    assert data_only(p.read_text(), "//") == "1d\n87\n"


def test_golden_coe(tmp_path):
    (p,) = FORMATS["coe"].write([golden_tensor()], tmp_path)
    assert data_only(p.read_text(), ";") == (
        "memory_initialization_radix=16;\nmemory_initialization_vector=\nd,\n1,\n7,\n8;\n"
    )
    (p,) = FORMATS["coe"].write([golden_tensor()], tmp_path / "p", word_bits=16)
    assert data_only(p.read_text(), ";").endswith("memory_initialization_vector=\n871d;\n")


def test_golden_mif(tmp_path):
    (p,) = FORMATS["mif"].write([golden_tensor()], tmp_path)
    assert data_only(p.read_text(), "--") == (
        "WIDTH=4;\nDEPTH=4;\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
        "\t0 : d;\n\t1 : 1;\n\t2 : 7;\n\t3 : 8;\nEND;\n"
    )


def test_golden_header(tmp_path):
    (p,) = FORMATS["header"].write([golden_tensor()], tmp_path, model_name="tiny")
    code = re.sub(r"^/\*.*?\*/\n", "", p.read_text(), flags=re.S | re.M)  # comment blocks
    code = re.sub(r" /\*.*?\*/", "", code)  # trailing comments
    assert code == (
        "#ifndef QEXTRACT_TINY_WEIGHTS_H\n#define QEXTRACT_TINY_WEIGHTS_H\n\n#include <stdint.h>\n"
        "#ifdef QEXTRACT_AP_TYPES\n#include <ap_fixed.h>\n#endif\n\n"
        "#define FC_KERNEL_RANK 2\n#define FC_KERNEL_DIM0 2\n#define FC_KERNEL_DIM1 2\n"
        "#define FC_KERNEL_SIZE 4\n#define FC_KERNEL_BITS 4\n#define FC_KERNEL_FRAC_BITS 2\n"
        "#define FC_KERNEL_SCALE_SIZE 1\n#define FC_KERNEL_SCALE_AXIS -1\n"
        "static const int8_t fc_kernel[FC_KERNEL_SIZE] = {\n    -3,  1,  7, -8,\n};\n"
        "static const float fc_kernel_scale[FC_KERNEL_SCALE_SIZE] = {\n    0.25,\n};\n"
        "#ifdef QEXTRACT_AP_TYPES\ntypedef ap_fixed<4,2> fc_kernel_t;\n#endif\n"
        "\n#endif\n"
    )


def test_golden_csv(tmp_path):
    (p,) = FORMATS["csv"].write([golden_tensor()], tmp_path)
    assert p.read_text() == (
        "layer,tensor,layout,index,multi_index,raw,value,code,sign,scale\n"
        'fc,kernel,hwio,0,"0,0",-0.7,-0.75,-3,,0.25\n'
        'fc,kernel,hwio,1,"0,1",0.3,0.25,1,,0.25\n'
        'fc,kernel,hwio,2,"1,0",1.8,1.75,7,,0.25\n'
        'fc,kernel,hwio,3,"1,1",-2.1,-2.0,-8,,0.25\n'
    )


def test_golden_npz(tmp_path):
    (p,) = FORMATS["npz"].write([golden_tensor()], tmp_path)
    with np.load(p, allow_pickle=False) as data:
        assert sorted(data.files) == ["fc/kernel", "fc/kernel:codes", "fc/kernel:scale"]
        assert data["fc/kernel"].tolist() == [[-0.75, 0.25], [1.75, -2.0]]
        assert data["fc/kernel:codes"].dtype == np.int8 and data["fc/kernel:codes"].tolist() == [[-3, 1], [7, -8]]
        assert data["fc/kernel:scale"].shape == () and float(data["fc/kernel:scale"]) == 0.25


def small(fmt, codes, signs=None, values=None) -> ExportedTensor:
    codes = None if codes is None else np.array(codes, np.int64)
    vals = values if values is not None else np.zeros(len(codes), np.float32)
    return ExportedTensor(
        layer="l", layer_class="Q", kind="dense", name="bias", layout=Layout.parse("hwio"), axes="O",
        values=np.asarray(vals, np.float32), raw=None, format=fmt, codes=codes,
        signs=None if signs is None else np.array(signs, np.int8), native_shape=(len(vals),),
    )  # fmt: skip


PO2_3 = PowerOfTwo(bits=4, exponent_min=-3, exponent_max=0)


@pytest.mark.parametrize(
    "tensor,word_bits,lines",
    [
        (small(Ternary(), [-1, 0, 1, -1]), None, ["3", "0", "1", "3"]),  # 2-bit two's complement
        (small(Binary(), [-1, 1, 1, -1]), None, ["0", "1", "1", "0"]),  # +1 -> 1, -1 -> 0
        (small(Binary(), [-1, 1, 1, -1]), 4, ["6"]),  # bits 0,1,1,0 from the LSB: 0b0110
        (small(Binary(use_01=True), [0, 1, 1, 0]), None, ["0", "1", "1", "0"]),
        (small(FixedPoint(bits=5, integer=5, is_signed=False), [0, 31, 16, 1]), None, ["00", "1f", "10", "01"]),
        (small(LookupTable(bits=2, table=(0.0, 1.0, 2.0, 4.0)), [3, 0, 2, 1]), None, ["3", "0", "2", "1"]),
        (small(FixedPoint(bits=3, integer=0), [1, -1, 3, -4]), 7, ["39", "23"]),  # 1|7<<3, 3|4<<3
        # exponent_bits 3 -> 5-bit words: zero<<4 | negative<<3 | exponent&7
        (small(PO2_3, [0, -1, -3, -3], [1, -1, 0, 1]), None, ["00", "0f", "15", "05"]),
        (small(Float(), None, values=[1.0, -2.5, 0.0, -0.0]), None, ["3f800000", "c0200000", "00000000", "80000000"]),
        # two float32 per 72-bit word (18 digits), the first in the low 32 bits; the second word is padding
        (small(Float(), None, values=[1.0, -2.5, 0.0]), 72, ["00c02000003f800000", "000000000000000000"]),
        # three 24-bit codes in a 72-bit word: the third straddles the 64-bit limb boundary
        (small(FixedPoint(bits=24, integer=0), [0x123456, -1, 0x7ABCDE]), 72, ["7abcdeffffff123456"]),
    ],
    ids=[
        "ternary",
        "binary",
        "binary-packed",
        "binary01",
        "unsigned5",
        "lut",
        "packed-7",
        "po2",
        "float",
        "float-72",
        "straddle",
    ],
)
def test_golden_words(tmp_path, tensor, word_bits, lines):
    (p,) = FORMATS["mem"].write([tensor], tmp_path, word_bits=word_bits)
    assert data_only(p.read_text(), "//") == "".join(f"{ln}\n" for ln in lines)


# --- names, errors, table -----------------------------------------------------------------


def test_formats_table_and_write_all(tmp_path):
    assert list(FORMATS) == ["npz", "header", "mem", "coe", "mif", "csv"]
    assert all(callable(m.write) for m in FORMATS.values())
    written = write_all([golden_tensor()], tmp_path, word_bits=8, model_name="tiny")
    assert {k: [p.name for p in v] for k, v in written.items()} == {
        "npz": ["weights.npz"], "header": ["weights.h"], "mem": ["fc.kernel.mem"],
        "coe": ["fc.kernel.coe"], "mif": ["fc.kernel.mif"], "csv": ["weights.csv"],
    }  # fmt: skip
    assert list(write_all([golden_tensor()], tmp_path / "two", ["mem", "csv", "mem"])) == ["mem", "csv"]
    assert list(write_all([golden_tensor()], tmp_path / "one", "coe")) == ["coe"]
    with pytest.raises(ExportError, match=r"'vhdl', 'json'.*npz, header, mem, coe, mif, csv"):
        write_all([golden_tensor()], tmp_path, ["vhdl", "mem", "json"])


def test_output_is_deterministic(tmp_path):
    tensors = [exported(f, seed=i, layer=f"l{i}") for i, f in enumerate(NUMBER_FORMATS[-9:])]
    a = write_all(tensors, tmp_path / "a", ["header", "mem", "coe", "mif", "csv"], word_bits=64)
    b = write_all(tensors, tmp_path / "b", ["header", "mem", "coe", "mif", "csv"], word_bits=64)
    for fmt in a:
        assert [p.name for p in a[fmt]] == [p.name for p in b[fmt]]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a[fmt], b[fmt]))


def test_names_are_sanitized_and_unique(tmp_path):
    fmt = FixedPoint(bits=4, integer=1)
    tensors = [
        exported(fmt, (2,), layer="block 1/conv", name="forward/kernel"),
        exported(fmt, (2,), layer="conv-1", name="kernel"),
        exported(fmt, (2,), layer="conv_1", name="kernel"),
        exported(fmt, (2,), layer="Conv_1", name="kernel"),
        exported(fmt, (2,), layer="1st", name="bias"),
    ]
    mems = FORMATS["mem"].write(tensors, tmp_path)
    assert [p.name for p in mems] == [
        "block_1_conv.forward_kernel.mem", "conv-1.kernel.mem", "conv_1.kernel.mem", "Conv_1.kernel_2.mem",
        "1st.bias.mem",
    ]  # fmt: skip
    FORMATS["header"].write(tensors, tmp_path)
    _, arrays, _ = parse_header((tmp_path / "weights.h").read_text())
    names = [n for n in arrays if not n.endswith("_scale")]
    assert names == ["block_1_conv_forward_kernel", "conv_1_kernel", "conv_1_kernel_2", "Conv_1_kernel_3", "w_1st_bias"]
    with np.load(FORMATS["npz"].write(tensors, tmp_path)[0]) as data:
        assert "block 1/conv/forward/kernel:codes" in data.files


def test_duplicate_tensors_are_refused(tmp_path):
    t = golden_tensor()
    for writer in FORMATS.values():
        with pytest.raises(ExportError, match="fc/kernel"):
            writer.write([t, t], tmp_path)


def test_word_bits_too_narrow_names_every_tensor(tmp_path):
    tensors = [golden_tensor(), exported(Float(), (3,), layer="fp"), exported(Binary(), (3,), layer="b")]
    for writer in ("header", "mem", "coe", "mif"):
        with pytest.raises(ExportError, match=r"word_bits=3: fc/kernel \(4 bits\), fp/kernel \(32 bits\)"):
            FORMATS[writer].write(tensors, tmp_path, word_bits=3)
    with pytest.raises(ExportError, match="positive integer"):
        FORMATS["mem"].write(tensors, tmp_path, word_bits=0)


def test_codes_outside_their_format_are_refused(tmp_path):
    bad = small(FixedPoint(bits=4, integer=1), [0, 9, -1, 2])
    with pytest.raises(ExportError, match=r"l/bias: codes span \[-1, 9\].*4-bit two's complement"):
        FORMATS["mem"].write([bad], tmp_path)
    with pytest.raises(ExportError, match="binary codes"):
        FORMATS["mem"].write([small(Binary(), [0, 1])], tmp_path)
    with pytest.raises(ExportError, match="signs"):
        FORMATS["mem"].write([small(PowerOfTwo(bits=4, exponent_min=-3), [0, -1])], tmp_path)


def test_empty_tensors_are_skipped_with_a_warning(tmp_path):
    empty = exported(FixedPoint(bits=4, integer=1), (0,), layer="e")
    for writer in ("header", "mem", "coe", "mif"):
        with pytest.warns(QExtractWarning, match="e/kernel has no elements"):
            paths = FORMATS[writer].write([empty, golden_tensor()], tmp_path / writer)
        assert len(paths) == 1


def test_unwritable_folder_raises_export_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for writer in FORMATS.values():
        with pytest.raises(ExportError, match="cannot write"):
            writer.write([golden_tensor()], blocker / "out")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt=st.sampled_from(NUMBER_FORMATS),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    seed=st.integers(0, 2**16),
    writer=st.sampled_from(["mem", "coe", "mif"]),
    extra=st.sampled_from([None, 0, 3, 16, 40]),
)
def test_property_every_memory_writer_parses_back(tmp_path_factory, fmt, shape, seed, writer, extra):
    t = exported(fmt, shape=shape, seed=seed)
    word_bits = None if extra is None else code_width(fmt) + extra
    out = tmp_path_factory.mktemp("w")
    (path,) = FORMATS[writer].write([t], out, word_bits=word_bits)
    check_fields(t, fields_from_file(writer, path, t, word_bits))


def test_header_refuses_a_tensor_named_like_another_tensors_scale_array(tmp_path):
    a = exported(FixedPoint(bits=4, integer=1), layer="x", name="k")
    b = exported(FixedPoint(bits=4, integer=1), layer="x", name="k_scale")
    with pytest.raises(ExportError, match="x_k_scale.*scale array of tensor 'x/k'"):
        FORMATS["header"].write([a, b], tmp_path)
