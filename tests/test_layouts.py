"""Layouts against NumPy: explicit index loops, convolutions in both layouts, and round trips.

Driven by one table of every layer kind x tensor x layout; the oracles below are
written from REFERENCE.md section 3, independently of the recipes in layouts.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qextract.errors import LayoutError
from qextract.layouts import (
    AXIS_MEANINGS,
    LAYOUTS,
    ExportedTensor,
    Layout,
    axes,
    from_layout,
    lay_out,
    layout_scale,
    scale_axis,
    to_layout,
)
from qextract.numformat import Binary, FixedPoint, Float, LookupTable, PowerOfTwo, Ternary
from qextract.tensor import QuantizedTensor

# --- oracles: output shape and "output index -> native index", from the reference table ---


def _identity(*s):
    return s, lambda *i: i


ORACLES = {
    ("dense", "ohwi"): lambda I, O: ((O, I), lambda o, i: (i, o)),
    ("dense", "oihw"): lambda I, O: ((O, I), lambda o, i: (i, o)),
    ("conv1d", "ohwi"): lambda K, I, O: ((O, K, I), lambda o, k, i: (k, i, o)),
    ("conv1d", "oihw"): lambda K, I, O: ((O, I, K), lambda o, i, k: (k, i, o)),
    ("conv2d", "ohwi"): lambda H, W, I, O: ((O, H, W, I), lambda o, h, w, i: (h, w, i, o)),
    ("conv2d", "oihw"): lambda H, W, I, O: ((O, I, H, W), lambda o, i, h, w: (h, w, i, o)),
    ("depthwise2d", "ohwi"): lambda H, W, C, M: ((1, H, W, C * M), lambda z, h, w, j: (h, w, j // M, j % M)),
    ("depthwise2d", "oihw"): lambda H, W, C, M: ((C * M, 1, H, W), lambda j, z, h, w: (h, w, j // M, j % M)),
    ("depthwise1d", "ohwi"): lambda K, C, M: ((1, K, C * M), lambda z, k, j: (k, j // M, j % M)),
    ("depthwise1d", "oihw"): lambda K, C, M: ((C * M, 1, K), lambda j, z, k: (k, j // M, j % M)),
    ("transpose2d", "ohwi"): lambda H, W, O, I: ((O, H, W, I), lambda o, h, w, i: (h, w, o, i)),
    ("transpose2d", "oihw"): lambda H, W, O, I: ((I, O, H, W), lambda i, o, h, w: (h, w, o, i)),
    ("rnn", "ohwi"): lambda I, G: ((G, I), lambda g, i: (i, g)),
    ("rnn", "oihw"): lambda I, G: ((G, I), lambda g, i: (i, g)),
}


def oracle(rule: str, layout: str, x: np.ndarray) -> np.ndarray:
    """What the layout means, element by element."""
    make = ORACLES.get((rule, layout), _identity)
    shape, source = make(*x.shape)
    out = np.empty(shape, x.dtype)
    for index in np.ndindex(*shape):
        out[index] = x[source(*index)]
    return out


# --- the table: kind, tensor, rule, native letters ('1' = size 1), axes per layout -------

RNN = [
    (kind, name, rule, letters, ax)
    for kind in ("simple_rnn", "lstm", "gru", "bidirectional")
    for prefix in ("", "forward/", "backward/")
    for name, rule, letters, ax in [
        (f"{prefix}kernel", "rnn", "IG", ("IG", "GI", "GI")),
        (f"{prefix}recurrent_kernel", "rnn", "UG", ("UG", "GU", "GU")),
        (f"{prefix}bias", "identity", "G", ("G", "G", "G")),
    ]
] + [
    (kind, name, "identity", "BG", ("BG", "BG", "BG"))
    for kind, name in (("gru", "bias"), ("bidirectional", "forward/bias"), ("simple_rnn", "bias"), ("lstm", "bias"))
]  # a rank-2 bias is the GRU's (B, G); the recurrent kinds share their table

BIAS = ("O", "O", "O")
CASES = [
    ("dense", "kernel", "dense", "IO", ("IO", "OI", "OI")),
    ("dense", "bias", "identity", "O", BIAS),
    ("conv1d", "kernel", "conv1d", "KIO", ("KIO", "OKI", "OIK")),
    ("conv1d", "bias", "identity", "O", BIAS),
    ("conv2d", "kernel", "conv2d", "HWIO", ("HWIO", "OHWI", "OIHW")),
    ("conv2d", "bias", "identity", "O", BIAS),
    ("depthwise_conv2d", "depthwise_kernel", "depthwise2d", "HWCM", ("HWCM", "1HWO", "O1HW")),
    ("depthwise_conv2d", "bias", "identity", "O", BIAS),
    ("separable_conv1d", "depthwise_kernel", "depthwise1d", "KCM", ("KCM", "1KO", "O1K")),
    ("separable_conv1d", "pointwise_kernel", "conv1d", "1IO", ("KIO", "OKI", "OIK")),
    ("separable_conv1d", "bias", "identity", "O", BIAS),
    ("separable_conv2d", "depthwise_kernel", "depthwise2d", "HWCM", ("HWCM", "1HWO", "O1HW")),
    ("separable_conv2d", "pointwise_kernel", "conv2d", "11IO", ("HWIO", "OHWI", "OIHW")),
    ("separable_conv2d", "bias", "identity", "O", BIAS),
    ("conv2d_transpose", "kernel", "transpose2d", "HWOI", ("HWOI", "OHWI", "IOHW")),
    ("conv2d_transpose", "bias", "identity", "O", BIAS),
    *[("batchnorm", n, "identity", "N", ("N", "N", "N")) for n in ("gamma", "beta", "moving_mean", "moving_variance")],
    *RNN,
    ("activation", "alpha", "identity", "N", ("N", "N", "N")),  # unknown kind: unchanged
    ("pooling", "table", "identity", "ab", ("XX", "XX", "XX")),
    ("conv2d", "extra", "identity", "abc", ("XXX", "XXX", "XXX")),  # unknown tensor of a known kind
]
CASE_IDS = [f"{kind}-{name}" for kind, name, *_ in CASES]
SIZES = {
    "I": 3,
    "O": 4,
    "K": 3,
    "H": 2,
    "W": 3,
    "C": 3,
    "M": 2,
    "G": 8,
    "U": 2,
    "B": 2,
    "N": 5,
    "1": 1,
    "a": 2,
    "b": 3,
    "c": 2,
}


def native_shape(letters: str, sizes: dict[str, int] = SIZES) -> tuple[int, ...]:
    return tuple(sizes[c] for c in letters)


def sample(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinct values, so a wrong permutation cannot pass by accident."""
    return np.random.default_rng(seed).permutation(math.prod(shape)).reshape(shape).astype(np.int64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind,name,rule,letters,expected_axes", CASES, ids=CASE_IDS)
def test_layout_matches_index_oracle(kind, name, rule, letters, expected_axes, layout):
    x = sample(native_shape(letters))
    out = to_layout(kind, name, x, layout)
    np.testing.assert_array_equal(out, oracle(rule, layout, x))
    assert out.flags.c_contiguous
    assert axes(kind, name, layout, ndim=x.ndim) == expected_axes[LAYOUTS.index(layout)]
    assert len(axes(kind, name, layout, ndim=x.ndim)) == out.ndim
    assert set(axes(kind, name, layout, ndim=x.ndim)) <= set(AXIS_MEANINGS)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind,name,rule,letters,expected_axes", CASES, ids=CASE_IDS)
def test_round_trip_is_exact(kind, name, rule, letters, expected_axes, layout):
    x = np.random.default_rng(1).standard_normal(native_shape(letters)).astype(np.float32)
    out = to_layout(kind, name, x, layout)
    back = from_layout(kind, name, out, layout, x.shape)
    assert back.dtype == x.dtype and back.shape == x.shape
    assert back.tobytes() == x.tobytes()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind,name,rule,letters,expected_axes", CASES, ids=CASE_IDS)
def test_scale_moves_with_its_axis(kind, name, rule, letters, expected_axes, layout):
    """A per-channel scale along each native axis lands where to_layout puts that axis."""
    shape = native_shape(letters)
    for axis in range(len(shape)):
        scale = np.arange(1, shape[axis] + 1, dtype=np.float32)
        along = [1] * len(shape)
        along[axis] = -1
        moved = to_layout(kind, name, np.broadcast_to(scale.reshape(along), shape), layout)
        new_scale, new_axis = layout_scale(kind, name, layout, scale, shape, axis)
        assert new_axis == scale_axis(kind, name, layout, len(shape), axis)
        target = [1] * moved.ndim
        target[new_axis] = -1
        np.testing.assert_array_equal(moved, np.broadcast_to(new_scale.reshape(target), moved.shape))


def test_depthwise_scale_is_tiled_per_channel():
    scale = np.array([0.5, 0.25], np.float32)  # per multiplier M=2, C=3
    for layout, expected_axis in (("hwio", 3), ("ohwi", 3), ("oihw", 0)):
        new, axis = layout_scale("depthwise_conv2d", "depthwise_kernel", layout, scale, (2, 2, 3, 2), -1)
        assert axis == expected_axis
        np.testing.assert_array_equal(new, scale if layout == "hwio" else np.tile(scale, 3))
    assert layout_scale("conv2d", "kernel", "ohwi", np.float32(0.5), (1, 1, 2, 3), None)[1] is None
    assert scale_axis("conv2d", "kernel", "ohwi", 4, None) is None


# --- meaning: the same computation with either kernel ---------------------------------


def correlate2d_nhwc(x, k):
    """Keras Conv2D (valid, stride 1): y[n,p,q,o] = sum x[n,p+h,q+w,i] k[h,w,i,o]."""
    H, W = k.shape[:2]
    P, Q = x.shape[1] - H + 1, x.shape[2] - W + 1
    patches = np.stack([[x[:, h : h + P, w : w + Q, :] for w in range(W)] for h in range(H)])  # h,w,n,p,q,i
    return np.einsum("hwnpqi,hwio->npqo", patches, k)


def correlate2d_nchw(x, k):
    """PyTorch conv2d (valid, stride 1): y[n,o,p,q] = sum k[o,i,h,w] x[n,i,p+h,q+w]."""
    H, W = k.shape[2:]
    P, Q = x.shape[2] - H + 1, x.shape[3] - W + 1
    patches = np.stack([[x[:, :, h : h + P, w : w + Q] for w in range(W)] for h in range(H)])  # h,w,n,i,p,q
    return np.einsum("hwnipq,oihw->nopq", patches, k)


def test_conv2d_hwio_and_oihw_compute_the_same():
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 8, (2, 6, 5, 3))
    k = rng.integers(-8, 8, (3, 2, 3, 4))
    y = correlate2d_nhwc(x, k)
    y_torch = correlate2d_nchw(x.transpose(0, 3, 1, 2), to_layout("conv2d", "kernel", k, "oihw"))
    np.testing.assert_array_equal(y, y_torch.transpose(0, 2, 3, 1))
    k_ohwi = to_layout("conv2d", "kernel", k, "ohwi")  # TFLite: y = sum x[..,i] * k[o,h,w,i]
    np.testing.assert_array_equal(y, correlate2d_nhwc(x, k_ohwi.transpose(1, 2, 3, 0)))


def test_conv1d_kio_and_oik_compute_the_same():
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 8, (2, 7, 3))  # N, L, I
    k = rng.integers(-8, 8, (3, 3, 5))  # K, I, O
    L = x.shape[1] - k.shape[0] + 1
    y = sum(np.einsum("nli,io->nlo", x[:, t : t + L], k[t]) for t in range(k.shape[0]))
    k_oik = to_layout("conv1d", "kernel", k, "oihw")
    xt = x.transpose(0, 2, 1)  # N, I, L
    y_torch = sum(np.einsum("nil,oi->nol", xt[:, :, t : t + L], k_oik[:, :, t]) for t in range(k.shape[0]))
    np.testing.assert_array_equal(y, y_torch.transpose(0, 2, 1))


def test_depthwise_channel_order_is_c_times_m_plus_m():
    rng = np.random.default_rng(4)
    C, M = 3, 2
    x = rng.integers(-8, 8, (1, 5, 4, C))
    k = rng.integers(-8, 8, (2, 3, C, M))
    H, W = k.shape[:2]
    P, Q = 5 - H + 1, 4 - W + 1
    # TF depthwise: output channel c*M + m
    y = np.zeros((1, P, Q, C * M), np.int64)
    for p, q, c, m in itertools.product(range(P), range(Q), range(C), range(M)):
        y[0, p, q, c * M + m] = np.sum(x[0, p : p + H, q : q + W, c] * k[:, :, c, m])
    # PyTorch groups=C: weight (C*M, 1, H, W), output channel j reads input channel j // M
    k_t = to_layout("depthwise_conv2d", "depthwise_kernel", k, "oihw")
    xt = x.transpose(0, 3, 1, 2)
    for p, q, j in itertools.product(range(P), range(Q), range(C * M)):
        assert y[0, p, q, j] == np.sum(xt[0, j // M, p : p + H, q : q + W] * k_t[j, 0])
    # TFLite: weight (1, H, W, C*M)
    k_l = to_layout("depthwise_conv2d", "depthwise_kernel", k, "ohwi")
    for p, q, j in itertools.product(range(P), range(Q), range(C * M)):
        assert y[0, p, q, j] == np.sum(x[0, p : p + H, q : q + W, j // M] * k_l[0, :, :, j])


def test_conv2d_transpose_iohw_scatters_the_same():
    rng = np.random.default_rng(5)
    x = rng.integers(-8, 8, (3, 2, 4))  # P, Q, I
    k = rng.integers(-8, 8, (2, 3, 5, 4))  # H, W, O, I  (Keras)
    H, W, O, _ = k.shape
    y = np.zeros((3 + H - 1, 2 + W - 1, O), np.int64)
    for p, q in np.ndindex(3, 2):
        y[p : p + H, q : q + W] += np.einsum("hwoi,i->hwo", k, x[p, q])
    k_t = to_layout("conv2d_transpose", "kernel", k, "oihw")  # PyTorch ConvTranspose2d: (I, O, H, W)
    y_t = np.zeros((O, 3 + H - 1, 2 + W - 1), np.int64)
    for p, q in np.ndindex(3, 2):
        y_t[:, p : p + H, q : q + W] += np.einsum("iohw,i->ohw", k_t, x[p, q])
    np.testing.assert_array_equal(y, y_t.transpose(1, 2, 0))
    k_l = to_layout("conv2d_transpose", "kernel", k, "ohwi")  # TFLite: (O, H, W, I)
    np.testing.assert_array_equal(k_l, k.transpose(2, 0, 1, 3))


@pytest.mark.parametrize("flatten_shape", [(2, 3, 4), (5, 3), (6,), (2, 2, 3, 2)])
def test_flatten_dense_in_convolution_form(flatten_shape):
    rng = np.random.default_rng(6)
    O = 5
    x = rng.integers(-8, 8, flatten_shape)  # channels_last activation entering Flatten
    k = rng.integers(-8, 8, (math.prod(flatten_shape), O))
    y = x.reshape(-1) @ k  # Keras: Flatten then Dense
    k_oihw = to_layout("dense", "kernel", k, "oihw", flatten_shape=flatten_shape)
    x_nchw = np.moveaxis(x, -1, 0)  # PyTorch tensor (C, H, W)
    assert k_oihw.shape == (O, flatten_shape[-1], *flatten_shape[:-1])
    # a full-size correlation (sum over every C,H,W) == Linear after an NCHW flatten
    np.testing.assert_array_equal(y, np.tensordot(k_oihw, x_nchw, axes=x.ndim))
    np.testing.assert_array_equal(y, k_oihw.reshape(O, -1) @ x_nchw.reshape(-1))
    k_hwio = to_layout("dense", "kernel", k, "hwio", flatten_shape=flatten_shape)
    np.testing.assert_array_equal(y, np.tensordot(x, k_hwio, axes=x.ndim))
    k_ohwi = to_layout("dense", "kernel", k, "ohwi", flatten_shape=flatten_shape)
    np.testing.assert_array_equal(y, np.tensordot(k_ohwi, x, axes=x.ndim))
    expected_axes = {4: "OIDHW", 3: "OIHW", 2: "OIK", 1: "OI"}[len(flatten_shape)]
    assert axes("dense", "kernel", "oihw", flatten_shape=flatten_shape) == expected_axes
    for layout, out in (("hwio", k_hwio), ("ohwi", k_ohwi), ("oihw", k_oihw)):
        back = from_layout("dense", "kernel", out, layout, k.shape, flatten_shape=flatten_shape)
        np.testing.assert_array_equal(back, k)


def test_flatten_oihw_is_the_reference_formula():
    k = sample((2 * 3 * 4, 5))
    np.testing.assert_array_equal(
        to_layout("dense", "kernel", k, "oihw", flatten_shape=(2, 3, 4)), k.reshape(2, 3, 4, 5).transpose(3, 2, 0, 1)
    )
    assert axes("dense", "kernel", "hwio", flatten_shape=(2, 3, 4)) == "HWIO"
    assert axes("dense", "kernel", "ohwi", flatten_shape=(2, 3, 4)) == "OHWI"
    # the bias of a flattened dense layer is not touched
    np.testing.assert_array_equal(
        to_layout("dense", "bias", np.arange(5), "oihw", flatten_shape=(2, 3, 4)), np.arange(5)
    )


def test_reference_table_formulas():
    k = sample((2, 3, 4, 5))
    np.testing.assert_array_equal(to_layout("conv2d", "kernel", k, "ohwi"), k.transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(to_layout("conv2d", "kernel", k, "oihw"), k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(to_layout("depthwise_conv2d", "depthwise_kernel", k, "ohwi"), k.reshape(1, 2, 3, 20))
    np.testing.assert_array_equal(to_layout("conv2d_transpose", "kernel", k, "ohwi"), k.transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(to_layout("conv2d_transpose", "kernel", k, "oihw"), k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(to_layout("dense", "kernel", k[0, 0], "ohwi"), k[0, 0].T)


# --- Layout parsing and errors ---------------------------------------------------------


def test_layout_parse_is_cached_and_accepts_aliases():
    assert Layout.parse("ohwi") is Layout.parse("ohwi")
    assert Layout.parse("OHWI") == Layout.parse("tflite") == Layout.parse("HWIO->OHWI") == Layout("ohwi")
    assert Layout.parse("pytorch").name == Layout.parse(" ONNX ").name == Layout.parse("caffe").name == "oihw"
    assert Layout.parse("keras").native and not Layout.parse("oihw").native
    layout = Layout.parse("oihw")
    assert Layout.parse(layout) is layout and str(layout) == "oihw"
    with pytest.raises(AttributeError):
        layout.name = "hwio"  # frozen


@pytest.mark.parametrize("spec", ["nhwc", "", "oihw->ohwi", "ohwi->nchw"])
def test_unknown_layout_names_the_choices(spec):
    with pytest.raises(LayoutError, match="hwio"):
        Layout.parse(spec)


def test_layout_rejects_non_strings():
    with pytest.raises(LayoutError, match="string"):
        Layout.parse(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind,name,shape,expected",
    [
        ("conv2d", "kernel", (3, 3, 2), r"conv2d tensor 'kernel' has shape \(3, 3, 2\); expected rank 4 \(H,W,I,O\)"),
        ("dense", "kernel", (3,), r"expected rank 2 \(I,O\)"),
        ("depthwise_conv2d", "depthwise_kernel", (3, 3, 2), r"rank 4 \(H,W,C,M\)"),
        ("separable_conv1d", "pointwise_kernel", (1, 1, 4, 2), r"rank 3 \(K,I,O\)"),
        ("batchnorm", "gamma", (2, 3), r"batchnorm tensor 'gamma' has shape \(2, 3\); expected rank 1 \(N\)"),
        ("gru", "forward/bias", (2, 3, 4), r"rank 1 \(G\) or rank 2 \(B,G\)"),
        ("conv2d", "bias", (4, 1), r"rank 1 \(O\)"),
    ],
)
def test_wrong_rank_names_kind_tensor_shape_and_expectation(kind, name, shape, expected):
    with pytest.raises(LayoutError, match=expected):
        to_layout(kind, name, np.zeros(shape), "ohwi")


def test_from_layout_checks_the_shape():
    with pytest.raises(LayoutError, match=r"expected \(4, 2, 3, 3\) \(OHWI\)"):
        from_layout("conv2d", "kernel", np.zeros((4, 3, 3, 2)), "ohwi", (2, 3, 3, 4))


def test_flatten_errors():
    with pytest.raises(LayoutError, match=r"flatten_shape \(2, 3, 4\).*24 inputs != 25 rows"):
        to_layout("dense", "kernel", np.zeros((25, 3)), "oihw", flatten_shape=(2, 3, 4))
    with pytest.raises(LayoutError, match=r"flatten_shape \(6,\).*6 inputs != 7 rows"):
        to_layout("dense", "kernel", np.zeros((7, 3)), "hwio", flatten_shape=(6,))
    with pytest.raises(LayoutError, match="only to a dense layer"):
        to_layout("conv2d", "kernel", np.zeros((1, 1, 2, 3)), "oihw", flatten_shape=(1, 1, 2))
    with pytest.raises(LayoutError, match="1 to 4 entries"):
        to_layout("dense", "kernel", np.zeros((24, 3)), "oihw", flatten_shape=(1, 1, 2, 3, 4))
    with pytest.raises(LayoutError, match="flattened input axis"):
        layout_scale("dense", "kernel", "oihw", np.ones(24), (24, 3), 0, flatten_shape=(2, 3, 4))
    scale, axis = layout_scale("dense", "kernel", "oihw", np.ones(3), (24, 3), 1, flatten_shape=(2, 3, 4))
    assert axis == 0 and scale.shape == (3,)


def test_scale_errors():
    with pytest.raises(LayoutError, match="does not run along axis 3"):
        layout_scale("conv2d", "kernel", "ohwi", np.ones(5), (2, 2, 3, 4), 3)
    with pytest.raises(LayoutError, match="out of range"):
        scale_axis("conv2d", "kernel", "ohwi", 4, 4)


# --- ExportedTensor ----------------------------------------------------------------------

FORMATS = [
    FixedPoint(bits=6, integer=2, is_signed=True),
    FixedPoint(bits=5, integer=5, is_signed=False),
    Binary(),
    Binary(use_01=True),
    Ternary(),
    PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0),
    LookupTable(bits=2, table=(-1.5, -0.25, 0.0, 2.0)),
    Float(),
]


def make_tensor(fmt, shape, scale_axis_native, rng, name="kernel") -> QuantizedTensor:
    """A QuantizedTensor whose values are exactly decode(codes, scale), built from NumPy."""
    if scale_axis_native is None:
        scale = np.float32(2.0 ** rng.integers(-6, 2)) * np.float32(1 if fmt.kind != "lut" else 0.75)
        scale = np.asarray(scale, np.float32)
        bscale = scale
    else:
        scale = (2.0 ** rng.integers(-6, 2, shape[scale_axis_native]) * rng.choice([1.0, 0.75, 1.25])).astype(
            np.float32
        )
        along = [1] * len(shape)
        along[scale_axis_native] = -1
        bscale = scale.reshape(along)
    raw = rng.standard_normal(shape).astype(np.float32)
    if not fmt.quantized:
        return QuantizedTensor("layer1", "QConv2D", name, raw=raw, values=raw.copy())
    codes = rng.integers(fmt.code_min, fmt.code_max + 1, shape).astype(fmt.code_dtype)
    signs = None
    if fmt.kind == "po2":
        signs = rng.choice(np.array([-1, 0, 1], np.int8), shape)
    from qextract.tensor import decode

    values = decode(fmt, codes, bscale, signs)
    return QuantizedTensor(
        "layer1", "QConv2D", name, raw=raw, values=values, format=fmt, codes=codes, scale=scale,
        scale_axis=scale_axis_native, signs=signs, quantizer_str=str(fmt),
    )  # fmt: skip


SHAPED = [(k, n, rule, letters) for k, n, rule, letters, _ in CASES]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind,name,rule,letters", SHAPED, ids=CASE_IDS)
def test_lay_out_moves_everything_and_decodes_exactly(kind, name, rule, letters, layout, fmt):
    rng = np.random.default_rng(7)
    shape = native_shape(letters)
    for axis in (None, len(shape) - 1):
        qt = make_tensor(fmt, shape, axis if fmt.quantized else None, rng, name)
        et = lay_out(qt, kind, layout)
        assert isinstance(et, ExportedTensor) and et.layout == Layout.parse(layout)
        assert et.axes == axes(kind, name, layout, ndim=len(shape)) and et.native_shape == shape
        assert et.values.dtype == np.float32 and et.raw.dtype == np.float32
        np.testing.assert_array_equal(et.values, oracle(rule, layout, qt.values))
        np.testing.assert_array_equal(et.raw, oracle(rule, layout, qt.raw))
        if fmt.quantized:
            np.testing.assert_array_equal(et.codes, oracle(rule, layout, qt.codes))
            assert et.codes.dtype == qt.codes.dtype
        if qt.signs is not None:
            np.testing.assert_array_equal(et.signs, oracle(rule, layout, qt.signs))
        assert et.decode().tobytes() == et.values.tobytes()  # bit for bit
        assert from_layout(kind, name, et.values, layout, shape).tobytes() == qt.values.tobytes()
        assert (et.key, et.shape, et.size, et.quantized) == (
            f"layer1/{name}",
            et.values.shape,
            qt.values.size,
            fmt.quantized,
        )


def test_lay_out_error_names_the_layer():
    qt = make_tensor(FORMATS[0], (3, 3, 2), None, np.random.default_rng(0))
    with pytest.raises(LayoutError, match=r"layer 'layer1' \(QConv2D\): conv2d tensor 'kernel' has shape \(3, 3, 2\)"):
        lay_out(qt, "conv2d", "oihw")


def test_lay_out_refuses_parts_of_another_shape():
    qt = make_tensor(FORMATS[0], (2, 2, 1, 3), None, np.random.default_rng(0))
    qt = QuantizedTensor(**{**qt.__dict__, "codes": qt.codes.reshape(2, 2, 3, 1)})
    with pytest.raises(LayoutError, match=r"layer 'layer1'.*values \(2, 2, 1, 3\) but codes \(2, 2, 3, 1\)"):
        lay_out(qt, "conv2d", "oihw")


def test_lay_out_flatten_and_unquantized():
    rng = np.random.default_rng(0)
    qt = make_tensor(FORMATS[0], (12, 5), 1, rng)
    et = lay_out(qt, "dense", "oihw", flatten_shape=(2, 2, 3))
    assert et.shape == (5, 3, 2, 2) and et.axes == "OIHW" and et.scale_axis == 0 and et.native_shape == (12, 5)
    assert et.decode().tobytes() == et.values.tobytes()
    bias = lay_out(make_tensor(Float(), (5,), None, rng, "bias"), "dense", "oihw", flatten_shape=(2, 2, 3))
    assert bias.codes is None and bias.axes == "O" and bias.scale_axis is None and not bias.quantized
    assert bias.decode() is bias.values and bias.ap_type is None


def test_exported_tensor_ap_type():
    qt = make_tensor(FixedPoint(bits=8, integer=3), (2, 2, 1, 3), None, np.random.default_rng(0))
    qt = QuantizedTensor(**{**qt.__dict__, "scale": np.asarray(np.float32(2**-4))})
    et = lay_out(qt, "conv2d", "ohwi")
    assert et.ap_type == "ap_fixed<8,4>" and not et.per_channel


# --- property tests ----------------------------------------------------------------------

dims = st.integers(1, 4)


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from(CASES),
    layout=st.sampled_from(LAYOUTS),
    sizes=st.fixed_dictionaries({c: dims for c in SIZES if c != "1"}),
    seed=st.integers(0, 2**16),
)
def test_property_every_kind_round_trips_and_matches_oracle(case, layout, sizes, seed):
    kind, name, rule, letters, _ = case
    shape = native_shape(letters, {**sizes, "1": 1})
    x = sample(shape, seed)
    out = to_layout(kind, name, x, layout)
    np.testing.assert_array_equal(out, oracle(rule, layout, x))
    np.testing.assert_array_equal(from_layout(kind, name, out, layout, shape), x)


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from(CASES),
    layout=st.sampled_from(LAYOUTS),
    fmt=st.sampled_from(FORMATS),
    sizes=st.fixed_dictionaries({c: dims for c in SIZES if c != "1"}),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_exported_tensor_decodes_bit_for_bit(case, layout, fmt, sizes, per_channel, seed):
    kind, name, _, letters, _ = case
    shape = native_shape(letters, {**sizes, "1": 1})
    axis = len(shape) - 1 if per_channel and fmt.quantized else None
    et = lay_out(make_tensor(fmt, shape, axis, np.random.default_rng(seed), name), kind, layout)
    assert et.decode().tobytes() == et.values.tobytes()


@settings(max_examples=100, deadline=None)
@given(
    spatial=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    channels=st.integers(1, 4),
    outputs=st.integers(1, 4),
    layout=st.sampled_from(LAYOUTS),
)
def test_property_flatten_round_trips(spatial, channels, outputs, layout):
    fs = (*spatial, channels)
    k = sample((math.prod(fs), outputs))
    out = to_layout("dense", "kernel", k, layout, flatten_shape=fs)
    assert out.size == k.size and out.ndim == len(fs) + 1
    np.testing.assert_array_equal(from_layout("dense", "kernel", out, layout, k.shape, flatten_shape=fs), k)
