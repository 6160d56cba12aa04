"""Error report, weight report and plot, checked against independent numbers.

The oracle computes every layer's float output in NumPy from the raw weights,
every quantized output with an explicit sub-model per layer, quantized
pre-activations in NumPy from the layer's quantized weights, and every
metric in NumPy from whole arrays - nothing shared with qextract.report.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

import qextract  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.analysis.data import batches, digits
from qextract.analysis.report import ErrorStats, error_report, quantizer_bounds, weight_report
from qextract.errors import DataError, QExtractError, UnsupportedError
from qextract.numformat import FixedPoint, PowerOfTwo
from qextract.tensor import Extraction, LayerRecord, QuantizedTensor

tf()
q = qkeras()
keras = _keras.keras()
L = keras.layers

N = 150  # samples: enough for every statistic, small enough to be quick
RELU1 = 2.0 * (1 - 1 / 16)  # top of quantized_relu(4,1)
RELU2 = 2.0 * (1 - 1 / 8)  # top of quantized_relu(3,1)
TANH_LO, TANH_HI = -1.0, 1 - 1 / 8  # quantized_tanh(4)


# --------------------------------------------------------------------------- model and oracle


def _build_model():
    inp = keras.Input((8, 8, 1), name="image")
    x = q.QConv2D(4, 3, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(6,2,1)",
                  activation="quantized_relu(4,1)", name="c1")(inp)  # fmt: skip
    x = q.QConv2DBatchnorm(4, 3, kernel_quantizer="quantized_bits(6,1,1)", bias_quantizer="quantized_bits(8,3,1)",
                           activation="quantized_relu(3,1)", name="cbn")(x)  # fmt: skip
    x = q.QActivation("quantized_tanh(4)", name="act")(x)
    x = L.Flatten(name="flat")(x)
    x = q.QDense(5, kernel_quantizer="quantized_bits(6,0,1)", bias_quantizer="quantized_bits(6,2,1)", name="d")(x)
    model = keras.Model(inp, x, name="tiny")
    rng = np.random.default_rng(7)
    for layer in model.layers:
        for w in layer.weights:
            name = w.name.split("/")[-1]
            if name.startswith("iteration"):
                continue
            if "variance" in name:
                value = rng.uniform(0.3, 1.5, w.shape)
            elif "gamma" in name:
                value = rng.uniform(0.6, 1.4, w.shape)
            elif "bias" in name or "beta" in name or "mean" in name:
                value = rng.normal(0, 0.2, w.shape)
            else:
                value = rng.normal(0, 0.45, w.shape)
            w.assign(value.astype(np.float32))
    return model


@pytest.fixture(scope="module")
def model():
    return _build_model()


@pytest.fixture(scope="module")
def x():
    return digits()[:N]


def conv_valid(x, kernel, bias):
    k = kernel.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return np.einsum("nhwcij,ijco->nhwo", patches.astype(np.float64), kernel.astype(np.float64)) + bias


def quantized_output(model, name, x):
    return keras.Model(model.input, model.get_layer(name).output).predict(x, verbose=0)


def float_reference(model, x):
    """Every layer's float output, from the raw weights, in NumPy (float64)."""
    c1, cbn, d = model.get_layer("c1"), model.get_layer("cbn"), model.get_layer("d")
    out = {}
    out["c1", "pre_activation"] = conv_valid(x, c1.kernel.numpy(), c1.bias.numpy())
    out["c1", "output"] = np.maximum(out["c1", "pre_activation"], 0)  # quantized_relu -> relu
    bn = cbn.batchnorm
    y = conv_valid(out["c1", "output"], cbn.kernel.numpy(), cbn.bias.numpy())
    y = (y - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * bn.gamma.numpy()
    out["cbn", "pre_activation"] = y + bn.beta.numpy()
    out["cbn", "output"] = np.maximum(out["cbn", "pre_activation"], 0)
    out["act", "output"] = np.clip(out["cbn", "output"], -1, 1)  # QKeras's hard tanh
    out["flat", "output"] = out["act", "output"].reshape(len(x), -1)
    out["d", "output"] = out["flat", "output"] @ d.kernel.numpy() + d.bias.numpy()
    return out


def quantized_reference(model, x):
    """Every layer's quantized output (sub-models) and pre-activation (NumPy)."""
    c1, cbn = model.get_layer("c1"), model.get_layer("cbn")
    out = {(n, "output"): quantized_output(model, n, x) for n in ("c1", "cbn", "act", "flat", "d")}
    kq = c1.kernel_quantizer_internal(c1.kernel).numpy()
    bq = c1.bias_quantizer_internal(c1.bias).numpy()
    out["c1", "pre_activation"] = conv_valid(x, kq, bq)
    fk, fb = cbn.get_folded_weights()
    kq = cbn.kernel_quantizer_internal(fk).numpy()
    bq = cbn.bias_quantizer_internal(fb).numpy()
    out["cbn", "pre_activation"] = conv_valid(out["c1", "output"], kq, bq)
    return out


def metrics(f, qv, bounds=None):
    f, qv = np.asarray(f, np.float64).ravel(), np.asarray(qv, np.float64).ravel()
    e = qv - f
    m = {
        "float_min": f.min(), "float_max": f.max(), "float_mean": f.mean(), "float_std": f.std(),
        "quant_min": qv.min(), "quant_max": qv.max(),
        "mean_abs_err": np.abs(e).mean(), "max_abs_err": np.abs(e).max(), "rmse": np.sqrt(np.mean(e**2)),
        "rel_l2_err": np.linalg.norm(e) / np.linalg.norm(f),
        "snr_db": 10 * np.log10(np.sum(f**2) / np.sum(e**2)),
        "cosine": f @ qv / (np.linalg.norm(f) * np.linalg.norm(qv)),
    }  # fmt: skip
    if bounds is not None:
        m["frac_saturated"] = np.mean(np.isin(qv, [b for b in bounds if b is not None]))
    return m


EXPECTED_ROWS = [
    ("c1", "pre_activation", "QConv2D", None),
    ("c1", "output", "QConv2D", (None, RELU1)),
    ("cbn", "pre_activation", "QConv2DBatchnorm", None),
    ("cbn", "output", "QConv2DBatchnorm", (None, RELU2)),
    ("act", "output", "QActivation", (TANH_LO, TANH_HI)),
    ("flat", "output", "Flatten", None),
    ("d", "output", "QDense", None),
]


def assert_row(row, expected, tol=1e-4):
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=tol, abs=tol), key


@pytest.fixture(scope="module")
def propagated(model, x):
    return error_report(model, x, batch_size=64, quiet=True)


@pytest.fixture(scope="module")
def isolated(model, x):
    return error_report(model, x, mode="isolated", batch_size=64, quiet=True)


# --------------------------------------------------------------------------- error report


def test_rows_follow_model_order_with_pre_activation_rows(propagated):
    got = list(zip(propagated["layer"], propagated["stage"], propagated["class"]))
    assert got == [row[:3] for row in EXPECTED_ROWS]
    assert propagated.attrs == {"mode": "propagated", "model": "tiny"}
    assert list(propagated["shape"]) == ["(6, 6, 4)"] * 2 + ["(4, 4, 4)"] * 3 + ["(64,)", "(5,)"]
    assert list(propagated["elements"]) == [144, 144, 64, 64, 64, 64, 5]
    assert set(propagated["samples"]) == {N}


def test_propagated_metrics_match_independent_computation(model, x, propagated):
    fref, qref = float_reference(model, x), quantized_reference(model, x)
    for (layer, stage, _, bounds), (_, row) in zip(EXPECTED_ROWS, propagated.iterrows()):
        expected = metrics(fref[layer, stage], qref[layer, stage], bounds)
        assert_row(row, expected)
        equal = np.mean(np.float32(fref[layer, stage]) == qref[layer, stage])
        assert row["frac_equal"] == pytest.approx(equal, abs=0.01)
        if bounds is None:
            assert math.isnan(row["frac_saturated"])
    # The saturation columns name the bounds the quantizers actually reach.
    act = propagated.iloc[4]
    assert (act["saturation_low"], act["saturation_high"]) == (TANH_LO, TANH_HI)
    assert act["frac_saturated"] > 0
    relu = propagated.iloc[1]  # a relu's floor 0 is not saturation
    assert math.isnan(relu["saturation_low"]) and relu["saturation_high"] == RELU1
    assert relu["quantizer"] == "quantized_relu(4,1)" and pd.isna(propagated.iloc[0]["quantizer"])


def test_isolated_rows_show_each_layers_own_error(model, x, isolated):
    fref = float_reference(model, x)
    cbn, act, d = model.get_layer("cbn"), model.get_layer("act"), model.get_layer("d")
    f_in = fref["c1", "output"].astype(np.float32)
    fk, fb = cbn.get_folded_weights()
    pre = conv_valid(f_in, cbn.kernel_quantizer_internal(fk).numpy(), cbn.bias_quantizer_internal(fb).numpy())
    own = {
        ("cbn", "pre_activation"): pre,
        ("cbn", "output"): cbn(f_in, training=False).numpy(),
        ("act", "output"): act(fref["cbn", "output"].astype(np.float32)).numpy(),
        ("flat", "output"): fref["flat", "output"],
        ("d", "output"): d(fref["flat", "output"].astype(np.float32)).numpy(),
    }
    rows = {(r.layer, r.stage): r for r in isolated.itertuples()}
    for (layer, stage), qv in own.items():
        if layer == "flat":  # a float op on float input: no error of its own
            assert rows[layer, stage].max_abs_err < 1e-6
            continue
        bounds = next(b for (l_, s_, _, b) in EXPECTED_ROWS if (l_, s_) == (layer, stage))
        expected = metrics(fref[layer, stage], qv, bounds)
        assert_row(rows[layer, stage]._asdict(), expected)


def test_isolated_and_propagated_agree_on_first_layer_and_differ_later(propagated, isolated):
    numeric = propagated.select_dtypes("number").columns
    pd.testing.assert_frame_equal(propagated.iloc[:2][numeric], isolated.iloc[:2][numeric], rtol=1e-9)
    for i in (3, 4, 6):  # cbn, act, d outputs: fed float inputs, their error is smaller
        assert isolated.iloc[i]["rmse"] < propagated.iloc[i]["rmse"]
    assert isolated.attrs["mode"] == "isolated"


def test_streaming_in_batches_equals_all_at_once(model, x, propagated):
    whole = error_report(model, x, batch_size=len(x), quiet=True)
    small = error_report(model, x, batch_size=7, quiet=True)
    numeric = whole.select_dtypes("number").columns
    pd.testing.assert_frame_equal(whole[numeric], small[numeric], rtol=1e-6)
    pd.testing.assert_frame_equal(whole[numeric], propagated[numeric], rtol=1e-6)


def test_one_forward_pass_per_model_per_batch(model, x, monkeypatch):
    from qextract.analysis import taps

    calls = []
    original = taps.Runner.__call__

    def counting(self, inputs):
        calls.append(self)
        return original(self, inputs)

    monkeypatch.setattr(taps.Runner, "__call__", counting)
    for mode in ("propagated", "isolated"):
        calls.clear()
        error_report(model, x[:50], mode=mode, batch_size=20, quiet=True)
        assert len(calls) == 2 * 3  # 3 batches, one pass of each model per batch
        assert len(set(map(id, calls))) == 2


def test_user_float_model_is_matched_by_name(model, x, propagated):
    from qextract.analysis.twin import float_model

    twin = float_model(model)
    df = error_report(model, x, float_model=twin, batch_size=64, quiet=True)
    numeric = df.select_dtypes("number").columns
    pd.testing.assert_frame_equal(df[numeric], propagated[numeric], rtol=1e-6)


def test_sequential_model_and_fused_float_activation_pre_rows():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            q.QDense(4, kernel_quantizer="quantized_bits(4,0,1)", activation="quantized_tanh(4)", name="d"),
        ]
    )
    xs = np.random.default_rng(2).normal(size=(40, 6)).astype(np.float32)
    df = error_report(model, xs, quiet=True)
    assert list(zip(df["layer"], df["stage"])) == [("d", "pre_activation"), ("d", "output")]
    k = model.layers[0]
    f_pre = xs @ k.kernel.numpy() + k.bias.numpy()
    q_pre = xs @ k.kernel_quantizer_internal(k.kernel).numpy() + k.bias.numpy()
    assert_row(df.iloc[0], metrics(f_pre, q_pre))
    assert_row(df.iloc[1], metrics(np.clip(f_pre, -1, 1), model.predict(xs, verbose=0), (TANH_LO, TANH_HI)))


def test_data_forms_give_the_same_batches(x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(len(x)))
    ds = tf().data.Dataset.from_tensor_slices((x, np.zeros(len(x))))
    forms = {
        "npy path": tmp_path / "x.npy",
        "npz path": str(tmp_path / "xy.npz"),
        "unbatched (x, y) dataset": ds,
        "batched dataset": ds.batch(33),
        "list of batches": [x[:100], x[100:]],
        "generator": (b for b in np.array_split(x, 4)),
        "(x, y) tuple": (x, np.zeros(len(x))),
        "int array": (x * 16).astype(np.int64),
    }
    for label, form in forms.items():
        got = np.concatenate(list(batches(form, (8, 8, 1), batch_size=64)))
        expected = x if label != "int array" else x * 16
        assert got.dtype == np.float32, label
        np.testing.assert_array_equal(got, expected, err_msg=label)


def test_report_from_a_dataset_and_a_file_equals_report_from_array(model, x, propagated, tmp_path):
    np.save(tmp_path / "x.npy", x)
    numeric = propagated.select_dtypes("number").columns
    for form in (tmp_path / "x.npy", tf().data.Dataset.from_tensor_slices(x).batch(50)):
        df = error_report(model, form, batch_size=64, quiet=True)
        pd.testing.assert_frame_equal(df[numeric], propagated[numeric], rtol=1e-6)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((4, 8, 8, 3), np.float32), r"shape \(4, 8, 8, 3\).*expected \(N, 8, 8, 1\)"),
        (np.zeros((4, 8, 8), np.float32), r"expected \(N, 8, 8, 1\) \(add a trailing channel axis"),
        (np.zeros((8, 8, 1), np.float32), r"one sample: add a batch axis"),
        (np.full((2, 8, 8, 1), "a"), r"^data: dtype <U1 is not numeric.*\(N, 8, 8, 1\)"),
        (np.full((2, 8, 8, 1), np.nan, np.float32), r"NaN"),
        (np.zeros((0, 8, 8, 1), np.float32), r"no samples.*\(N, 8, 8, 1\)"),
        ([np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8))], r"batch 1: shape \(2, 8, 8\)"),
        ({"x": 1}, r"cannot use a dict"),
        ("/nonexistent/data.npy", r"does not exist"),
    ],
)
def test_bad_data_is_a_clear_error(model, data, match):
    with pytest.raises(DataError, match=match):
        error_report(model, data, quiet=True)


def test_npz_with_unnamed_arrays_is_a_clear_error(model, tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 8, 8, 1)), b=np.zeros(2))
    with pytest.raises(DataError, match=r"holds arrays a, b; name the input array one of x"):
        error_report(model, tmp_path / "two.npz", quiet=True)


def test_bad_mode_and_multi_input_models_are_refused(model, x):
    with pytest.raises(QExtractError, match="mode must be one of propagated, isolated"):
        error_report(model, x, mode="sideways")
    a, b = keras.Input((3,)), keras.Input((3,))
    two = keras.Model([a, b], L.Add()([q.QDense(2)(a), q.QDense(2)(b)]))
    with pytest.raises(UnsupportedError, match="has 2 inputs"):
        error_report(two, x)


def test_progress_bar_only_on_a_terminal(model, x, capsys, monkeypatch):
    error_report(model, x[:20], quiet=False)
    assert capsys.readouterr().err == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    error_report(model, x[:20], quiet=False)
    assert "sample" in tty.getvalue()
    tty.truncate(0)
    error_report(model, x[:20], quiet=True)
    assert tty.getvalue() == ""


# --------------------------------------------------------------------------- building blocks


def test_error_stats_streaming_is_exact_and_stable():
    rng = np.random.default_rng(0)
    f = (1e4 + rng.normal(0, 1e-2, (300, 7))).astype(np.float32)  # large mean, tiny spread
    qv = np.round(f * 64) / 64
    whole, parts = ErrorStats((None, 1e4)), ErrorStats((None, 1e4))
    whole.update(f, qv)
    for chunk in np.array_split(np.arange(300), 11):
        parts.update(f[chunk], qv[chunk])
    a, b = whole.metrics(), parts.metrics()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    assert a["float_std"] == pytest.approx(np.float64(f).std(), rel=1e-6)
    assert a["frac_saturated"] == pytest.approx(np.mean(qv == 1e4))
    exact = ErrorStats()
    exact.update(f, f)
    m = exact.metrics()
    assert (m["snr_db"], m["rel_l2_err"], m["cosine"], m["frac_equal"]) == (math.inf, 0.0, pytest.approx(1.0), 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "quantized_bits(4,0,1)",
        "quantized_bits(6,2,0)",
        "quantized_bits(5,1,0,keep_negative=False)",
        "quantized_bits(4,1,1,alpha=0.5)",
        "quantized_bits(1,0)",
        "quantized_relu(4,1)",
        "quantized_relu(3,0,negative_slope=0.25)",
        "quantized_tanh(4)",
        "quantized_tanh(5,symmetric=True)",
        "quantized_sigmoid(4)",
        "quantized_ulaw(6,0)",
        "quantized_hswish(8,3)",
    ],
)
def test_quantizer_bounds_are_the_values_it_reaches(text):
    quantizer = q.quantizers.get_quantizer(text)
    out = quantizer(np.linspace(-300, 300, 120001).astype(np.float32)).numpy()
    lo, hi = quantizer_bounds(quantizer)
    assert hi == pytest.approx(out.max(), abs=1e-7)
    if lo is None:
        assert out.min() == 0.0  # relu's own floor, not saturation
    elif not text.startswith("quantized_hswish"):  # hswish never dips to the grid's bottom
        assert lo == pytest.approx(out.min(), abs=1e-7)


@pytest.mark.parametrize(
    "text", ["quantized_bits(4,0,1,alpha='auto_po2')", "quantized_po2(4)", "binary()", "ternary()"]
)
def test_quantizer_bounds_unknown_where_meaningless(text):
    assert quantizer_bounds(q.quantizers.get_quantizer(text)) is None


def test_digits_data():
    images = digits()
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert digits((64,)).shape == (1797, 64)
    stream = batches("digits", (8, 8, 1), batch_size=500)
    assert stream.total == 1797 and [len(b) for b in stream] == [500, 500, 500, 297]


# --------------------------------------------------------------------------- weight report


def _fixed_tensor(layer, name, raw, fmt, scale, scale_axis=None):
    scale = np.asarray(scale, np.float32)
    bscale = scale if scale_axis is None else scale.reshape([-1 if i == scale_axis else 1 for i in range(raw.ndim)])
    codes = np.clip(np.round(raw / bscale), fmt.code_min, fmt.code_max).astype(np.int32)
    values = (codes * bscale).astype(np.float32)
    return QuantizedTensor(layer, "QDense", name, raw, values, fmt, codes, scale, scale_axis,
                           quantizer_str=f"q({fmt})")  # fmt: skip


@pytest.fixture(scope="module")
def extraction():
    rng = np.random.default_rng(5)
    k_raw = rng.normal(0, 0.6, (6, 3)).astype(np.float32)  # some beyond +-1: clipped
    k = _fixed_tensor("d", "kernel", k_raw, FixedPoint(bits=4, integer=0, is_signed=True, symmetric=True), 0.125)
    c_raw = rng.normal(0, 1, (2, 2, 1, 3)).astype(np.float32)
    c = _fixed_tensor("c", "kernel", c_raw, FixedPoint(bits=3, integer=0), [0.25, 0.5, 0.125], scale_axis=3)
    b_raw = rng.normal(0, 1, (3,)).astype(np.float32)
    b = QuantizedTensor("d", "QDense", "bias", b_raw, b_raw)
    p_raw = np.array([0.3, -0.9, 0.0, 5.0], np.float32)
    p_codes = np.array([-2, 0, -4, 1])
    p_signs = np.array([1, -1, 0, 1])
    pfmt = PowerOfTwo(bits=3, exponent_min=-4, exponent_max=1, negative=True)
    p_vals = (p_signs * np.ldexp(1.0, p_codes)).astype(np.float32)
    p = QuantizedTensor("bn", "QBatchNormalization", "gamma", p_raw, p_vals, pfmt, p_codes, signs=p_signs)
    return Extraction((
        LayerRecord("c", "QConv2D", "conv", {"kernel": c}),
        LayerRecord("d", "QDense", "dense", {"kernel": k, "bias": b}),
        LayerRecord("bn", "QBatchNormalization", "bn", {"gamma": p}),
    ))  # fmt: skip


def test_weight_report_matches_numpy(extraction):
    df = weight_report(extraction)
    assert list(zip(df["layer"], df["tensor"])) == [("c", "kernel"), ("d", "kernel"), ("d", "bias"), ("bn", "gamma")]
    for (_, row), t in zip(df.iterrows(), extraction.tensors()):
        raw, val = t.raw.astype(np.float64), t.values.astype(np.float64)
        e = val - raw
        assert row["shape"] == str(t.shape)
        assert (row["raw_min"], row["raw_max"]) == (pytest.approx(raw.min()), pytest.approx(raw.max()))
        assert (row["eff_min"], row["eff_max"]) == (pytest.approx(val.min()), pytest.approx(val.max()))
        assert row["frac_zero"] == pytest.approx(np.mean(val == 0))
        assert row["max_abs_err"] == pytest.approx(np.abs(e).max())
        assert row["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)))
        if np.any(e):
            assert row["snr_db"] == pytest.approx(10 * np.log10(np.sum(raw**2) / np.sum(e**2)))
        else:
            assert row["snr_db"] == math.inf
    c, k, b, p = (row for _, row in df.iterrows())
    # Per-channel 3-bit codes [-4, 3] times (0.25, 0.5, 0.125) along the last axis.
    craw = extraction["c"]["kernel"].raw
    scale = np.array([0.25, 0.5, 0.125])
    assert c["frac_clipped"] == pytest.approx(np.mean((craw < -4 * scale) | (craw > 3 * scale)))
    assert (c["codes_used"], c["codes_available"], c["bits"]) == (len(np.unique(extraction["c"]["kernel"].codes)), 8, 3)
    # Symmetric 4-bit codes [-7, 7] times 0.125.
    kraw = extraction["d"]["kernel"].raw
    assert k["frac_clipped"] == pytest.approx(np.mean(np.abs(kraw) > 7 * 0.125))
    assert k["frac_clipped"] > 0
    assert (k["codes_available"], k["quantizer"]) == (15, "q(fixed<4,0,sym>)")
    # The unquantized bias: no bits, no code count, no error.
    assert pd.isna(b["bits"]) and pd.isna(b["codes_available"]) and b["frac_clipped"] == 0.0
    assert b["codes_used"] == 3 and b["snr_db"] == math.inf
    # Power of two: |raw| above 2**1 is clipped; exponents -4..1, each with both signs.
    assert p["frac_clipped"] == pytest.approx(0.25)
    assert (p["codes_used"], p["codes_available"]) == (4, 12)
    assert str(df["bits"].dtype) == "Int64" and str(df["codes_available"].dtype) == "Int64"


def test_weight_report_of_nothing_has_the_columns():
    df = weight_report(Extraction(()))
    assert len(df) == 0 and {"layer", "tensor", "codes_used", "frac_clipped", "snr_db"} <= set(df.columns)


# --------------------------------------------------------------------------- plot


def test_plot_writes_a_png(propagated, isolated, tmp_path):
    from qextract.analysis.plot import plot_report

    one = plot_report(propagated, tmp_path / "one.png")
    both = plot_report({"propagated": propagated, "isolated": isolated}, tmp_path / "both.png", title="t")
    for path in (one, both):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(QExtractError, match="different layers"):
        plot_report({"a": propagated, "b": propagated.iloc[:3]}, tmp_path / "bad.png")
