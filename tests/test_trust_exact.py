"""Issue 9, deliverables 4 and 7: exact at every width; layouts say what they mean.

Widths: every ``quantized_bits`` / ``quantized_relu`` width QKeras accepts is
either extracted with the true integer codes (checked against codes derived
here from the raw weights with NumPy, and against QKeras's own output bit for
bit) and survives every writer and reader, or it is refused at extraction by
name. Layouts: a Dense fed by Flatten records the flatten order its inputs
follow, and an oihw kernel takes PyTorch's NCHW flatten, checked against the
Keras model's own output.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_readers import assert_holds, manifest_of
from test_writers import check_fields, code_width, exported, fields_from_file, parse_header, unpack

import qextract
from qextract import QExtractWarning, _keras
from qextract._keras import qkeras, tf
from qextract.errors import ExactnessError, LayoutError, UnsupportedError
from qextract.layers import TensorSource
from qextract.layouts import LAYOUTS, flatten_order, from_layout, layout_scale, to_layout
from qextract.numformat import FixedPoint, PowerOfTwo
from qextract.reading.extraction import quantize_tensor
from qextract.writers import FORMATS, entries

tf()
Q = qkeras()
Qz = Q.quantizers
keras = _keras.keras()
ALL_FORMATS = list(FORMATS)

# --- independent references ----------------------------------------------------------------

INT_TYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64]


def code_range(bits: int, signed: bool, symmetric: bool = False) -> tuple[int, int]:
    if not signed:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)) + int(symmetric), 2 ** (bits - 1) - 1


def smallest_dtype(lo: int, hi: int) -> np.dtype:
    return np.dtype(next(t for t in INT_TYPES if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max))


def float32_inward(code: int, toward: int) -> int:
    """The float32 integer nearest ``code`` on the side of ``toward``: what a float32 grid can reach."""
    f = np.float32(code)
    while (int(f) > code and toward < code) or (int(f) < code and toward > code):
        f = np.nextafter(f, np.float32(toward))
    return int(f)


def grid_codes(lo: int, hi: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` codes: both reachable ends of [lo, hi], 0 and +-1 where allowed, the rest random float32 integers."""
    ends = [float32_inward(lo, 0), float32_inward(hi, 0), 0, 1, -1]
    codes = [c for c in ends if lo <= c <= hi]
    random = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64).astype(np.float32).astype(np.float64)
    random = [float32_inward(int(min(max(c, lo), hi)), 0) for c in random]
    return np.array((codes + random)[:n], np.int64)


def quantize(q, x: np.ndarray, name: str = "kernel"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QExtractWarning)
        return quantize_tensor(TensorSource(name, x, q), "l", "QDense")


def direct(q, x: np.ndarray) -> np.ndarray:
    """QKeras's own output: what the layer computes with."""
    return np.asarray(q(tf().constant(x)), np.float32)


# --- one model, one Dense per width --------------------------------------------------------

UNITS, INPUTS = 3, 4


class Grid(NamedTuple):
    """A fixed-point grid: step 2**(integer - (bits - kn)), codes signed when kn (keep_negative)."""

    bits: int
    integer: int
    kn: int
    sym: bool = False


def _fixed_cases() -> list[tuple[str, object, object, Grid]]:
    """(layer name, kernel quantizer, bias quantizer, their grid) for every width.

    The kernel has alpha=1, the bias alpha=None: QDense turns a *kernel* quantizer's
    alpha=None into "auto_po2" (as QKeras's weighted layers all do), never a bias quantizer's.
    """
    cases = []
    for b in range(1, 33):
        for kn in (1, 0):
            kernel, bias = (Qz.quantized_bits(b, 0, keep_negative=kn, alpha=a) for a in (1, None))
            cases.append((f"{'su'[1 - kn]}{b}", kernel, bias, Grid(b, 0, kn)))
    for b in range(1, 32):  # from 32 bits on QKeras's quantized_relu outputs NaN (refused, tested below)
        cases.append((f"r{b}", Qz.quantized_relu(b, 0), Qz.quantized_relu(b, 0), Grid(b, 0, 0)))
    for name, args, grid in [
        ("sym8", (8, 0, 1), Grid(8, 0, 1, True)),
        ("sym24", (24, 2, 1), Grid(24, 2, 1, True)),
        ("sym25", (25, 0, 1), Grid(25, 0, 1, True)),
        ("i3b12", (12, 3), Grid(12, 3, 1)),
        ("i5b30", (30, 5), Grid(30, 5, 1)),
        ("b33", (33, 0), Grid(33, 0, 1)),
        ("b40", (40, 1), Grid(40, 1, 1)),
        ("b48", (48, 0), Grid(48, 0, 1)),
        ("b64", (64, 0), Grid(64, 0, 1)),
    ]:
        cases.append((name, Qz.quantized_bits(*args, alpha=1), Qz.quantized_bits(*args), grid))
    u63 = [Qz.quantized_bits(63, 0, keep_negative=0, alpha=a) for a in (1, None)]
    cases.append(("u63", *u63, Grid(63, 0, 0)))
    cases.append(("relu_i2b20", Qz.quantized_relu(20, 2), Qz.quantized_relu(20, 2), Grid(20, 2, 0)))
    return cases


FIXED = _fixed_cases()
AUTO = [(f"ap{b}", Qz.quantized_bits(b, 0, alpha="auto_po2")) for b in (2, 8, 16, 24, 32)]
PO2 = [(f"po{b}", Qz.quantized_po2(b, max_value=4)) for b in (4, 8, 16, 32, 63)]
PO2 += [("rpo32", Qz.quantized_relu_po2(32, max_value=4))]
PO2_EXPONENTS = np.array([[-20, -3, 0], [1, 2, -1], [-7, 0, 2], [-23, 1, -2]])  # 2**-23 > QKeras's 1e-7 floor
PO2_SIGNS = np.array([[1, -1, 1], [-1, 1, 0], [1, 1, -1], [1, -1, 1]])


def _expected_fixed(
    grid: Grid, rng: np.random.Generator, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Raw weights exactly on the grid, their codes and the code range (bits == 1 signed: the sign quantizer)."""
    bits, integer, kn, sym = grid
    n = math.prod(shape)
    if bits == 1 and kn == 1:
        codes = np.resize([1, -1], n).reshape(shape)
        return codes.astype(np.float32), codes, (-1, 1)
    lo, hi = code_range(bits, bool(kn), sym)
    codes = grid_codes(lo, hi, n, rng).reshape(shape)
    step = 2.0 ** (integer - (bits - kn))
    raw = (codes.astype(np.float64) * step).astype(np.float32)
    assert np.array_equal(raw.astype(np.float64) / step, codes)  # the raw weights are exactly the grid values
    return raw, codes, (lo, hi)


@pytest.fixture(scope="module")
def widths_model():
    rng = np.random.default_rng(9)
    inp = keras.Input((INPUTS,))
    specs = [(n, q, b) for n, q, b, _ in FIXED] + [(n, q, None) for n, q in AUTO + PO2]
    layers = [Q.QDense(UNITS, kernel_quantizer=q, bias_quantizer=b, name=n) for n, q, b in specs]
    model = keras.Model(inp, [layer(inp) for layer in layers])
    expected = {}
    for name, _, _, grid in FIXED:
        kernel = _expected_fixed(grid, rng, (INPUTS, UNITS))
        bias = _expected_fixed(grid, rng, (UNITS,))
        model.get_layer(name).set_weights([kernel[0], bias[0]])
        expected[name] = kernel[1:]
        expected[f"{name}/bias"] = bias[1:]
    for name, _ in AUTO:
        model.get_layer(name).set_weights(
            [rng.uniform(-2, 2, (INPUTS, UNITS)).astype(np.float32), np.zeros(UNITS, np.float32)]
        )
    for name, _ in PO2:
        signs = np.abs(PO2_SIGNS) if name.startswith("r") else PO2_SIGNS
        raw = (signs * np.exp2(PO2_EXPONENTS.astype(np.float64))).astype(np.float32)
        model.get_layer(name).set_weights([raw, np.zeros(UNITS, np.float32)])
        # a zero weight becomes +2**min_exp in QKeras: zero itself (sign 0) once that underflows float32
        min_exp = int(dict(PO2)[name]._min_exp)
        tiny = np.float32(2.0 ** max(min_exp, -1000)) > 0
        exponents = np.clip(PO2_EXPONENTS, min_exp, None)  # QKeras clips small exponents at min_exp
        expected[name] = (np.where(signs == 0, min_exp, exponents), np.where(signs == 0, int(tiny), signs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QExtractWarning)
        ex = qextract.extract(model)
    return model, ex, expected


def test_every_width_extracts_the_true_integer_codes(widths_model):
    model, ex, expected = widths_model
    for name, _, _, _ in FIXED:
        layer = model.get_layer(name)
        assert getattr(layer.bias_quantizer_internal, "alpha", None) is None  # alpha None reaches the bias intact
        for tensor, key, quantizer in (("kernel", name, "kernel"), ("bias", f"{name}/bias", "bias")):
            t = ex[name][tensor]
            codes, (lo, hi) = expected[key]
            assert t.codes.dtype == smallest_dtype(lo, hi), key
            assert t.codes.astype(np.int64).tolist() == codes.tolist(), key
            assert t.format.code_min == lo and t.format.code_max == hi, key
            layer_values = direct(getattr(layer, f"{quantizer}_quantizer_internal"), t.raw)
            assert t.values.tobytes() == layer_values.tobytes() == t.raw.tobytes(), key
            assert t.ste_rounded == 0
    for name, _ in AUTO:
        t = ex[name]["kernel"]
        assert np.all(np.frexp(t.scale)[0] == 0.5)  # power-of-two scales: codes x scale is exact arithmetic
        assert t.values.tobytes() == direct(model.get_layer(name).kernel_quantizer_internal, t.raw).tobytes()
        assert np.array_equal(t.codes.astype(np.float64) * t.broadcast_scale().astype(np.float64), t.values)
    for name, _ in PO2:
        t = ex[name]["kernel"]
        exponents, signs = expected[name]
        assert t.signs.tolist() == signs.tolist(), name
        assert t.codes[signs != 0].tolist() == exponents[signs != 0].tolist(), name
        assert t.values.tobytes() == direct(model.get_layer(name).kernel_quantizer_internal, t.raw).tobytes()


@pytest.mark.parametrize("layout,word_bits", [("hwio", None), ("oihw", 64)])
def test_every_width_survives_every_format_and_verifies(tmp_path, widths_model, layout, word_bits):
    model, ex, expected = widths_model
    out = qextract.export(ex, tmp_path / "e", layout=layout, formats=ALL_FORMATS, word_bits=word_bits).out_dir
    table = qextract.verify(out, model)
    assert table["passed"].all(), table[~table["passed"].astype(bool)].to_string()
    assert table.attrs["formats_checked"] == ALL_FORMATS  # every file read back; all held identical codes
    with np.load(out / "weights.npz") as z:
        for name, _, _, _ in FIXED:
            codes = z[f"{name}/kernel:codes"]
            native = codes if layout == "hwio" else codes.T  # Dense (I,O) <-> (O,I)
            assert native.astype(np.int64).tolist() == expected[name][0].tolist(), name


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,weight,code",
    [
        ("quantized_bits(32,0,1,alpha=1)", 1.0, 2**31),  # the case: was written as -2**31
        ("quantized_bits(32,0,0,alpha=1)", 1.5, 2**31),
        ("quantized_bits(26,0,0)", 1.0, 2**25),
        ("quantized_bits(31,2,0)", 4.0, 2**30),
        ("quantized_bits(32,0,1)", -1.0, -(2**31)),  # symmetric: -(2**31 - 1) rounds to -2**31 as well
        ("quantized_bits(25,0,0,keep_negative=0)", 1.0, 2**25),
        ("quantized_bits(64,0,0)", 1.0, 2**63),
        ("quantized_relu(25,0)", 1.0, 2**25),
        ("quantized_relu(31,3)", 8.0, 2**31),
    ],
)
def test_a_code_past_the_float32_clip_bound_is_refused_at_extraction(spec, weight, code):
    q = eval(spec, {k: getattr(Qz, k) for k in ("quantized_bits", "quantized_relu")})
    x = np.array([[0.25, weight], [-0.125, 0.0]], np.float32)
    # QKeras itself computes the value of a code one past the format's range
    bits, integer = q.bits, int(q.integer)
    magnitude = bits - (q.keep_negative if hasattr(q, "keep_negative") else 0)
    assert float(direct(q, x)[0, 1]) == code * 2.0 ** (integer - magnitude)
    with pytest.raises(ExactnessError) as e:
        quantize(q, x)
    message = str(e.value)
    assert "layer 'l' (QDense), tensor 'kernel' (2, 2)" in message and str(q) in message
    assert f"is code {code}, outside" in message and "float32" in message and "Fix:" in message


def test_quantized_relu_of_32_bits_and_more_computes_nan_and_is_refused():
    q = Qz.quantized_relu(32, 0)
    x = np.array([0.25, 0.5], np.float32)
    assert np.isnan(direct(q, x)).all()  # QKeras's own output: 2**32 overflows its int32 power
    with pytest.raises(
        ExactnessError, match=r"tensor 'kernel' \(2,\): quantizer quantized_relu\(32,0\) produced NaN.*31 bits"
    ):
        quantize(q, x)


def test_a_model_with_such_a_weight_fails_in_extract_not_in_export(tmp_path):
    inp = keras.Input((2,))
    model = keras.Model(inp, Q.QDense(2, kernel_quantizer=Qz.quantized_bits(32, 0, 1, alpha=1), name="wide")(inp))
    model.get_layer("wide").set_weights([np.array([[1.0, 0.5], [-0.25, 0.0]], np.float32), np.zeros(2, np.float32)])
    with pytest.raises(ExactnessError, match=r"layer 'wide' \(QDense\), tensor 'kernel'.*2147483648"):
        qextract.extract(model)
    with pytest.raises(ExactnessError):
        qextract.export(model, tmp_path / "e")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda: Qz.quantized_bits(64, 0, keep_negative=0), "18446744073709551615"),
        (lambda: Qz.quantized_bits(65, 0), "beyond the 64-bit signed integers"),
        (lambda: Qz.quantized_bits(100, 0, alpha="auto_po2"), "beyond the 64-bit signed integers"),
        (lambda: Qz.quantized_po2(64, max_value=4), "needs 65 bits"),
    ],
)
def test_codes_no_int64_or_64_bit_word_holds_are_refused_by_name(make, problem):
    q = make()
    with pytest.raises(UnsupportedError) as e:
        quantize(q, np.array([0.5, -0.25, 0.0], np.float32))
    assert "layer 'l' (QDense), tensor 'kernel'" in str(e.value) and problem in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("spec", ["quantized_bits(28,0,alpha=0.37)", "quantized_bits(26,1,alpha=0.1)"])
def test_codes_a_float32_value_cannot_tell_apart_are_refused(spec):
    q = eval(spec, {"quantized_bits": Qz.quantized_bits})
    x = np.random.default_rng(1).uniform(-0.9, 0.9, (8, 8)).astype(np.float32) * 2.0 ** int(q.integer)
    values, s = direct(q, x), np.float32(q.alpha) * np.float32(2.0 ** (int(q.integer) - (q.bits - 1)))
    # independent evidence: some layer value is float32(code * scale) for two neighbouring codes
    c = np.rint(values.astype(np.float64) / np.float64(s))
    twins = (np.float32(c + 1) * s == values) | (np.float32(c - 1) * s == values)
    assert twins.any()
    with pytest.raises(
        ExactnessError, match=r"tensor 'kernel' \(8, 8\).*do not determine their codes.*power-of-two scale"
    ):
        quantize(q, x)


def test_below_2_to_the_23_a_non_power_of_two_scale_still_gives_unique_codes():
    q = Qz.quantized_bits(24, 0, alpha=0.37)
    x = np.random.default_rng(2).uniform(-0.99, 0.99, (16, 16)).astype(np.float32)
    t = quantize(q, x)
    s = t.scale.astype(np.float32)
    assert np.abs(t.codes).max() > 2**22
    c = t.codes.astype(np.int64)
    assert np.array_equal(c.astype(np.float32) * s, t.values)
    for step in (-1, 1):  # no neighbouring code gives the same float32 value
        assert not np.any((c + step).astype(np.float32) * s == t.values)


def test_a_clipped_weight_rounded_by_the_straight_through_form_keeps_the_end_code():
    """At 24 bits x + (q - x) rounds q = 1 - 2**-23 to 1.0 for x = 4.

    The code is the range's end, as for other widths.
    """
    q = Qz.quantized_bits(24, 0, alpha=1)
    x = np.array([4.0, -4.0, 0.5], np.float32)
    assert direct(q, x).tolist() == [1.0, -1.0, 0.5]  # the straight-through rounding, in QKeras itself
    with pytest.warns(QExtractWarning, match="straight-through"):
        t = quantize_tensor(TensorSource("kernel", x, q), "l", "QDense")
    assert t.codes.tolist() == [2**23 - 1, -(2**23), 2**22] and t.ste_rounded == 1


def test_binary_with_a_zero_scale_channel_extracts_codes_every_writer_holds(tmp_path):
    """binary(alpha="auto") on an all-zero column: scale 0, and the code is +1 (QKeras's sign of 0), never 0."""
    inp = keras.Input((3,))
    model = keras.Model(inp, Q.QDense(2, kernel_quantizer=Qz.binary(alpha="auto"), name="bin")(inp))
    model.get_layer("bin").set_weights(
        [np.array([[0.0, 0.5], [0.0, -0.3], [0.0, 0.1]], np.float32), np.zeros(2, np.float32)]
    )
    t = qextract.extract(model)["bin"]["kernel"]
    assert t.scale[0] == 0 and t.codes[:, 0].tolist() == [1, 1, 1] and t.codes[:, 1].tolist() == [1, -1, 1]
    out = qextract.export(model, tmp_path / "e", formats=ALL_FORMATS, word_bits=32).out_dir
    assert qextract.verify(out, model)["passed"].all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.integers(2, 40),
    integer=st.integers(-3, 5),
    keep_negative=st.booleans(),
    symmetric=st.booleans(),
    alpha=st.sampled_from([None, 1]),
    seed=st.integers(0, 2**16),
    ends=st.booleans(),
)
def test_property_codes_are_qkeras_integers_or_refused(bits, integer, keep_negative, symmetric, alpha, seed, ends):
    """Codes from NumPy: QKeras's p = x * 2**k rounded half to even, clipped at its float32 bounds."""
    kn = int(keep_negative)
    if bits - kn < 1:
        return
    q = Qz.quantized_bits(bits, integer, int(symmetric), keep_negative=kn, alpha=alpha)
    rng = np.random.default_rng(seed)
    try:
        direct(q, np.zeros(1, np.float32))
    except Exception:
        with pytest.raises(UnsupportedError, match="QKeras's own"):
            quantize(q, np.zeros(1, np.float32))
        return
    x = (rng.uniform(-1.9, 1.9, (6, 5)) * 2.0**integer).astype(np.float32)  # within 2x the range: no STE rounding
    if ends:
        x.flat[:4] = np.float32(2.0**integer) * np.array([1, -1, 1 - 2.0**-30, -1 + 2.0**-30], np.float32)
    k = bits - kn - integer
    m = 2.0 ** (bits - kn)
    lo_clip, hi_clip = np.float32(kn * (-m + int(symmetric))), np.float32(m - 1)  # QKeras's float32 bounds
    ref = np.clip(np.rint(x.astype(np.float64) * 2.0**k), lo_clip, hi_clip)
    lo, hi = code_range(bits, bool(kn), bool(symmetric) and bool(kn))
    if ref.min() < lo or ref.max() > hi:
        with pytest.raises(ExactnessError, match="layer 'l'.*not on its"):
            quantize(q, x)
        return
    t = quantize(q, x)
    assert t.codes.astype(np.int64).tolist() == ref.astype(np.int64).tolist()
    assert t.codes.dtype == smallest_dtype(lo, hi)
    assert t.values.tobytes() == direct(q, x).tobytes()


# --- wide and extreme codes through every writer and reader ---------------------------------

WIDE = [
    FixedPoint(bits=32, integer=0),
    FixedPoint(bits=32, integer=0, is_signed=False),
    FixedPoint(bits=33, integer=2),
    FixedPoint(bits=40, integer=0, is_signed=False),
    FixedPoint(bits=48, integer=5),
    FixedPoint(bits=63, integer=0, is_signed=False),
    FixedPoint(bits=64, integer=0),
    FixedPoint(bits=64, integer=0, symmetric=True),
    PowerOfTwo(bits=63, exponent_min=-(2**61), exponent_max=2**61 - 1),
]
WIDE_IDS = [f"{f}-{'s' if f.signed else 'u'}" for f in WIDE]


def wide_tensors(fmt) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # po2 values of 2**(2**61): inf, not read back
        tensors = [exported(fmt, (3, 2, 5), seed=1), exported(fmt, (7,), seed=2, layer="dense", name="bias")]
    lo, hi = fmt.code_min, fmt.code_max
    for t in tensors:
        t.codes.flat[:4] = [lo, hi, lo + 1, hi - 1]  # both ends, and their neighbours
        if t.signs is not None:
            t.signs.flat[:4] = [1, -1, -1, 1]
    return tensors


@pytest.mark.parametrize("fmt", WIDE, ids=WIDE_IDS)
def test_wide_codes_survive_every_writer_and_reader(tmp_path, fmt):
    tensors = wide_tensors(fmt)
    assert tensors[0].codes.dtype == smallest_dtype(fmt.code_min, fmt.code_max)
    for word_bits in (None, 64, 72, 128):
        out = tmp_path / str(word_bits)
        table = entries(manifest_of(tensors, word_bits))
        for writer, module in FORMATS.items():
            paths = module.write(tensors, out, word_bits=word_bits)
            paths = paths if len(paths) == len(tensors) else paths * len(tensors)
            for t, path in zip(tensors, paths, strict=True):
                assert_holds(module.read(path, table[t.key]), t)  # the module's own reader
                if writer in ("mem", "coe", "mif"):  # an independent parser and decoder
                    check_fields(t, fields_from_file(writer, path, t, word_bits))
        _, arrays, _ = parse_header((out / "weights.h").read_text())
        items = arrays["conv_1_kernel"][1]
        # C has no literal for -2**63 (minus a constant too large for any signed type): <stdint.h>'s macro instead
        assert items == ["INT64_MIN" if c == -(2**63) else str(c) for c in tensors[0].codes.reshape(-1).tolist()]
        csv_rows = (out / "weights.csv").read_text().splitlines()
        assert f",{fmt.code_max}," in "\n".join(csv_rows) and f",{fmt.code_min}," in "\n".join(csv_rows)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_header_with_extreme_codes_compiles_cleanly_and_holds_them(tmp_path):
    """gcc -Werror -pedantic is the independent reader: -2**63 has no C literal, so INT64_MIN must be written."""
    tensors = []
    for i, fmt in enumerate(
        [FixedPoint(bits=64), FixedPoint(bits=32), FixedPoint(bits=32, is_signed=False), FixedPoint(bits=40)]
    ):
        t = exported(fmt, (6,), seed=i, layer=f"w{i}")
        t.codes.flat[:2] = [fmt.code_min, fmt.code_max]
        tensors.append(t)
    FORMATS["header"].write(tensors, tmp_path, word_bits=64, model_name="wide")
    lines = []
    for t in tensors:
        name = f"{t.layer}_kernel"
        lines.append(f'for (i = 0; i < {t.size}; i++) printf("{name} %lld\\n", (long long){name}[i]);')
        words = f"{name}_words"
        lines.append(
            f"for (i = 0; i < sizeof {words} / sizeof {words}[0]; i++) "
            f'printf("{words} %llu\\n", (unsigned long long){words}[i]);'
        )
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "weights.h"\nint main(void) {\n size_t i;\n '
        + "\n ".join(lines)
        + "\n return 0;\n}\n"
    )
    for std in ("-std=c99", "-std=c11"):
        subprocess.run(
            ["gcc", std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", "main", "main.c"], cwd=tmp_path, check=True
        )
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.split("\n")
    printed: dict[str, list[int]] = {}
    for line in filter(None, out):
        key, value = line.split()
        printed.setdefault(key, []).append(int(value))
    for t in tensors:
        name = f"{t.layer}_kernel"
        assert printed[name] == t.codes.reshape(-1).tolist()
        check_fields(t, unpack(printed[f"{name}_words"], code_width(t.format), 64, t.size))


# --- layouts: Dense fed by Flatten -----------------------------------------------------------

FLATTEN_SHAPES = [(6,), (5, 3), (3, 4, 2), (2, 3, 2, 2)]  # (C,), (L,C), (H,W,C), (D,H,W,C)
KERAS_ORDER = {1: "C", 2: "LC", 3: "HWC", 4: "DHWC"}
CHANNELS_FIRST = {1: "C", 2: "CL", 3: "CHW", 4: "CDHW"}


def channels_first_flatten(x: np.ndarray) -> np.ndarray:
    """PyTorch's / ONNX's Flatten of the channels-first tensor: (N, ..., C) -> (N, C, ...) -> (N, -1)."""
    return np.moveaxis(x, -1, 1).reshape(x.shape[0], -1)


@pytest.fixture(scope="module")
def flatten_model():
    """One branch per flatten rank (Flatten -> QDense), plus a Dense not fed by Flatten."""
    inputs, outputs = [], []
    for i, shape in enumerate(FLATTEN_SHAPES):
        inp = keras.Input(shape, name=f"in{i}")
        flat = keras.layers.Flatten(name=f"flat{i}")(inp)
        q = {"kernel_quantizer": Qz.quantized_bits(8, 1, alpha=1), "bias_quantizer": Qz.quantized_bits(8, 2, alpha=1)}
        outputs.append(Q.QDense(4, name=f"fc{i}", **q)(flat))
        inputs.append(inp)
    outputs.append(Q.QDense(3, kernel_quantizer=Qz.quantized_bits(6, 0, alpha=1), name="after")(outputs[2]))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(7)
    model.set_weights([rng.uniform(-1.5, 1.5, w.shape).astype(np.float32) for w in model.weights])
    return model


def _samples(rng: np.random.Generator, n: int = 5) -> list[np.ndarray]:
    return [rng.standard_normal((n, *s)).astype(np.float32) for s in FLATTEN_SHAPES]


@pytest.mark.parametrize("dense_as_conv", [False, True], ids=["matrix", "conv"])
def test_oihw_kernel_takes_the_channels_first_flatten(tmp_path, flatten_model, dense_as_conv):
    out = qextract.export(
        flatten_model, tmp_path / "e", layout="oihw", formats=["npz"], dense_as_conv=dense_as_conv
    ).out_dir
    xs = _samples(np.random.default_rng(3))
    keras_out = flatten_model.predict(xs, verbose=0)
    with np.load(out / "weights.npz") as z:
        for i, x in enumerate(xs):
            kernel = z[f"fc{i}/kernel"]
            matrix = kernel.reshape(kernel.shape[0], -1)  # (O, C, H, W) -> (O, C*H*W): PyTorch's Linear weight
            ours = channels_first_flatten(x) @ matrix.T + z[f"fc{i}/bias"]
            np.testing.assert_allclose(ours, keras_out[i], rtol=1e-5, atol=1e-5)
            if len(FLATTEN_SHAPES[i]) > 1:  # the Keras (channels-last) order would be wrong for this input
                wrong = x.reshape(len(x), -1) @ matrix.T + z[f"fc{i}/bias"]
                assert np.max(np.abs(wrong - keras_out[i])) > 1e-2


@pytest.mark.parametrize("dense_as_conv", [False, True], ids=["matrix", "conv"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_records_the_flatten_order_and_verifies(tmp_path, flatten_model, layout, dense_as_conv):
    result = qextract.export(
        flatten_model, tmp_path / "e", layout=layout, formats=["npz", "mem"], dense_as_conv=dense_as_conv
    )
    manifest = json.loads(result.manifest_path.read_text())
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    for i, shape in enumerate(FLATTEN_SHAPES):
        entry = layers[f"fc{i}"]
        expected = CHANNELS_FIRST[len(shape)] if layout == "oihw" else KERAS_ORDER[len(shape)]
        assert entry["flatten_order"] == expected and entry["flatten_shape"] == list(shape)
        kernel = entry["tensors"][0]
        if not dense_as_conv:
            assert kernel["axes"] == ("IO" if layout == "hwio" else "OI")
            assert kernel["shape"] == ([math.prod(shape), 4] if layout == "hwio" else [4, math.prod(shape)])
    assert "flatten_order" not in layers["after"] and "flatten_shape" not in layers["after"]
    table = qextract.verify(result.out_dir, flatten_model)
    assert table["passed"].all() and len(table) == len(FLATTEN_SHAPES) + 1, table.to_string()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fs", FLATTEN_SHAPES, ids=str)
def test_matrix_rows_follow_the_flatten_order_and_invert_exactly(layout, fs):
    rng = np.random.default_rng(len(fs))
    k = rng.standard_normal((math.prod(fs), 3)).astype(np.float32)
    out = to_layout("dense", "kernel", k, layout, flatten_shape=fs, dense_as_conv=False)
    # NumPy reference: rows reshaped to (..., C, O), inputs put in flatten_order, then (I,O) or (O,I)
    split = k.reshape(*fs, 3)
    if layout == "oihw":
        split = np.moveaxis(split, len(fs) - 1, 0)  # C first
    matrix = split.reshape(-1, 3)
    assert out.tobytes() == (matrix if layout == "hwio" else matrix.T).tobytes()
    assert flatten_order(layout, fs, dense_as_conv=False) == flatten_order(layout, fs)
    back = from_layout("dense", "kernel", out, layout, k.shape, flatten_shape=fs, dense_as_conv=False)
    assert back.tobytes() == k.tobytes()


@settings(max_examples=40, deadline=None)
@given(
    fs=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    outputs=st.integers(1, 4),
    layout=st.sampled_from(LAYOUTS),
    conv=st.booleans(),
)
def test_property_flatten_layouts_round_trip(fs, outputs, layout, conv):
    k = np.arange(math.prod(fs) * outputs, dtype=np.int64).reshape(-1, outputs)
    out = to_layout("dense", "kernel", k, layout, flatten_shape=fs, dense_as_conv=conv)
    assert (
        from_layout("dense", "kernel", out, layout, k.shape, flatten_shape=fs, dense_as_conv=conv).tobytes()
        == k.tobytes()
    )
    # the matrix form holds the convolution form's values, merely reshaped: both share one input order
    conv_form = to_layout("dense", "kernel", k, layout, flatten_shape=fs, dense_as_conv=True)
    matrix = to_layout("dense", "kernel", k, layout, flatten_shape=fs, dense_as_conv=False)
    rows = matrix if layout == "hwio" else matrix.T
    conv_rows = conv_form.reshape(-1, outputs) if layout == "hwio" else conv_form.reshape(outputs, -1).T
    assert rows.tobytes() == conv_rows.tobytes()


def test_a_per_row_scale_moves_with_the_rows():
    fs, k = (2, 3, 4), np.arange(24 * 5).reshape(24, 5)
    scale = np.arange(24, dtype=np.float32)
    moved, axis = layout_scale("dense", "kernel", "oihw", scale, k.shape, 0, flatten_shape=fs, dense_as_conv=False)
    rows = to_layout("dense", "kernel", k, "oihw", flatten_shape=fs, dense_as_conv=False)
    assert axis == 1 and moved.tolist() == (rows[0] // 5).tolist()  # row r of k holds 5r..5r+4
    with pytest.raises(LayoutError, match="flattened input axis"):
        layout_scale("dense", "kernel", "oihw", scale, k.shape, 0, flatten_shape=fs)
