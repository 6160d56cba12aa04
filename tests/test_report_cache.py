"""The warm error report: traced tap models reused between calls, and never stale.

Every number is checked against an independent oracle: the float outputs
computed in NumPy from the model's raw weights as they are *now*, the
quantized outputs from the QKeras layers' own forward pass (a sub-model built
in the test) and, for the pre-activation row, NumPy with the layer's own
quantizer applied to its current weights; the metrics from whole arrays in
NumPy.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import qextract  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from qextract._keras import qkeras, tf
from qextract.analysis import taps
from qextract.analysis.report import error_report
from qextract.analysis.tap_cache import TapCache, fingerprint, tap_cache

tf()
q = qkeras()
keras = tf().keras

N = 64


def _model(seed: int = 0, name: str = "pair"):
    inp = keras.Input((6,), name="x")
    h = q.QDense(5, kernel_quantizer="quantized_bits(4,0,1)", bias_quantizer="quantized_bits(4,0,1)",
                 activation="quantized_relu(4,1)", name="d1")(inp)  # fmt: skip
    out = q.QDense(3, kernel_quantizer="quantized_bits(5,1,1)", bias_quantizer="quantized_bits(5,1,1)", name="d2")(h)
    model = keras.Model(inp, out, name=name)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in model.weights])
    return model


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).uniform(-1, 1, (N, 6)).astype(np.float32)


@pytest.fixture(autouse=True)
def empty_cache():
    tap_cache.clear()
    yield
    tap_cache.clear()


def oracle(model, x, float_weights=None):
    """Per report row (layer, stage): rmse, max_abs_err, float_mean, quant_max, from NumPy and QKeras's own layers."""
    d1, d2 = model.get_layer("d1"), model.get_layer("d2")
    w1, b1, w2, b2 = float_weights or [w.numpy().astype(np.float64) for w in (d1.kernel, d1.bias, d2.kernel, d2.bias)]
    f_pre = x @ w1 + b1
    f_out1 = np.maximum(f_pre, 0)  # quantized_relu's float counterpart
    f_out2 = f_out1 @ w2 + b2
    qk = d1.kernel_quantizer_internal(d1.kernel).numpy().astype(np.float64)
    qb = d1.bias_quantizer_internal(d1.bias).numpy().astype(np.float64)
    q_pre = x @ qk + qb
    q_out1 = keras.Model(model.input, d1.output)(x, training=False).numpy()
    q_out2 = model(x, training=False).numpy()
    out = {}
    for row, f, qv in (
        (("d1", "pre_activation"), f_pre, q_pre),
        (("d1", "output"), f_out1, q_out1),
        (("d2", "output"), f_out2, q_out2),
    ):
        f, qv = np.asarray(f, np.float64), np.asarray(qv, np.float64)
        e = qv - f
        out[row] = {
            "rmse": np.sqrt(np.mean(e**2)),
            "max_abs_err": np.abs(e).max(),
            "float_mean": f.mean(),
            "quant_max": qv.max(),
        }
    return out


def assert_matches(frame, expected):
    got = {(r.layer, r.stage): r for r in frame.itertuples()}
    assert set(got) == set(expected)
    for row, metrics in expected.items():
        for key, value in metrics.items():
            assert getattr(got[row], key) == pytest.approx(value, rel=1e-4, abs=1e-5), (row, key)


def count_runners(monkeypatch):
    built = []
    original = taps.Runner.__init__

    def counting(self, model):
        built.append(model.name)
        original(self, model)

    monkeypatch.setattr(taps.Runner, "__init__", counting)
    return built


def test_a_second_report_traces_nothing_and_gives_the_same_numbers(x, monkeypatch):
    model = _model()
    built = count_runners(monkeypatch)
    first = error_report(model, x, batch_size=16, quiet=True)
    assert len(built) == 2 and len(tap_cache) == 1
    built.clear()
    second = error_report(model, x, batch_size=16, quiet=True)
    third = error_report(model, x, batch_size=50, quiet=True)  # the runners take any batch size
    assert built == []
    numeric = first.select_dtypes("number").columns
    assert first[numeric].equals(second[numeric])
    assert np.allclose(first[numeric].to_numpy(), third[numeric].to_numpy(), rtol=1e-9, equal_nan=True)
    assert_matches(second, oracle(model, x))


@pytest.mark.parametrize("how", ["assign", "set_weights"])
def test_a_weight_changed_between_calls_gives_the_new_numbers(x, how, monkeypatch):
    model = _model()
    before = error_report(model, x, quiet=True)
    assert_matches(before, oracle(model, x))
    d1 = model.get_layer("d1")
    if how == "assign":
        d1.kernel.assign(d1.kernel.numpy() * -1.5)
    else:
        weights = model.get_weights()
        weights[2] = weights[2] + 0.75  # d2's kernel
        model.set_weights(weights)
    built = count_runners(monkeypatch)
    after = error_report(model, x, quiet=True)
    assert len(built) == 2  # rebuilt and traced: the float twin held the old raw weights
    assert_matches(after, oracle(model, x))
    assert not np.allclose(before["rmse"], after["rmse"])
    assert len(tap_cache) == 1  # the entry of the old weights is dropped, not kept beside


def test_a_weight_changed_back_gives_the_old_numbers_again(x):
    model = _model()
    before = error_report(model, x, quiet=True)
    kernel = model.get_layer("d2").kernel
    saved = kernel.numpy()
    kernel.assign(saved + 1)
    error_report(model, x, quiet=True)
    kernel.assign(saved)
    again = error_report(model, x, quiet=True)
    numeric = before.select_dtypes("number").columns
    assert np.allclose(before[numeric].to_numpy(), again[numeric].to_numpy(), rtol=1e-9, equal_nan=True)


def test_a_quantizer_changed_in_place_gives_the_new_numbers(x):
    model = _model()
    error_report(model, x, quiet=True)
    model.get_layer("d1").kernel_quantizer_internal.bits = 2  # read when the layer runs: the trace would be stale
    after = error_report(model, x, quiet=True)
    assert_matches(after, oracle(model, x))


def test_a_given_float_model_is_part_of_the_key(x):
    from qextract.analysis.twin import float_model

    model = _model()
    twin = float_model(model)
    own = error_report(model, x, float_model=twin, quiet=True)
    assert_matches(own, oracle(model, x))
    # The same float model with a changed weight: its new values count.
    d1f = twin.get_layer("d1")
    d1f.kernel.assign(d1f.kernel.numpy() + 0.5)
    changed = error_report(model, x, float_model=twin, quiet=True)
    w = [v.numpy().astype(np.float64) for v in (d1f.kernel, d1f.bias, twin.get_layer("d2").kernel)]
    assert_matches(changed, oracle(model, x, [w[0], w[1], w[2], twin.get_layer("d2").bias.numpy()]))
    # Another float model, and none (the twin built from the model): each its own numbers.
    other = float_model(_model(seed=5))
    w_other = [other.get_layer(n).weights[i].numpy().astype(np.float64) for n in ("d1", "d2") for i in (0, 1)]
    assert_matches(error_report(model, x, float_model=other, quiet=True), oracle(model, x, w_other))
    assert_matches(error_report(model, x, quiet=True), oracle(model, x))


def test_each_mode_gives_its_own_numbers(x):
    model = _model()
    propagated = error_report(model, x, quiet=True)
    isolated = error_report(model, x, mode="isolated", quiet=True)
    again = error_report(model, x, quiet=True)
    tap_cache.clear()
    fresh_isolated = error_report(model, x, mode="isolated", quiet=True)
    numeric = propagated.select_dtypes("number").columns
    assert propagated[numeric].equals(again[numeric])
    assert np.allclose(isolated[numeric].to_numpy(), fresh_isolated[numeric].to_numpy(), rtol=1e-9, equal_nan=True)
    # d2 fed the float output of d1 has less error than d2 fed the quantized one
    assert isolated["rmse"].iloc[2] < propagated["rmse"].iloc[2]


def test_the_cache_is_bounded_and_cleared():
    cache = TapCache(maxsize=2)
    models = [_model(seed=i, name=f"m{i}") for i in range(3)]
    built = []

    def build(model, float_model):
        built.append(model.name)
        return object()

    for m in models:
        cache.get(m, None, build)
    assert len(cache) == 2 and built == ["m0", "m1", "m2"]
    cache.get(models[2], None, build)  # still held
    cache.get(models[0], None, build)  # dropped as the least recently used: built again
    assert built == ["m0", "m1", "m2", "m0"] and len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    off = TapCache(maxsize=0)
    off.get(models[0], None, build)
    off.get(models[0], None, build)
    assert len(off) == 0 and built[-2:] == ["m0", "m0"]


def test_the_cache_keeps_no_model_alive(x):
    model, twin_model = _model(name="gone"), _model(seed=3, name="gone_float")
    error_report(model, x, quiet=True)
    error_report(model, x, float_model=twin_model, quiet=True)
    assert len(tap_cache) == 2
    refs = [weakref.ref(model), weakref.ref(twin_model)]
    del model, twin_model
    # Keras 3 models sit in reference cycles: the first collection frees the quantized model, whose finalizer drops
    # its cache entries, and only then is the float model (itself in a cycle) unreachable, for the next collection
    gc.collect()
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert len(tap_cache) == 0


def test_the_fingerprint_follows_every_weight_and_the_configuration():
    model = _model()
    base = fingerprint(model)
    assert fingerprint(model) == base
    bias = model.get_layer("d2").bias
    bias.assign(bias.numpy() + np.float32(1e-7))  # the smallest change still counts
    assert fingerprint(model) != base
    assert fingerprint(_model()) != base  # same values, other variables


def test_statistics_are_added_beside_the_forward_passes_in_batch_order(x, monkeypatch):
    """A worker thread adds each batch's statistics while the next batch runs, one at a time and in order;
    an error there is the report's error."""
    import threading

    from qextract.analysis.statistics import ErrorStats
    from qextract.errors import QExtractError

    model = _model()
    seen = []
    original = ErrorStats.update

    def recording(self, f, q):
        seen.append((threading.current_thread().name, f.shape[0]))
        original(self, f, q)

    monkeypatch.setattr(ErrorStats, "update", recording)
    frame = error_report(model, x, batch_size=20, quiet=True)
    per_row = len(frame)
    assert [n for _, n in seen[::per_row]] == [20, 20, 20, 4]  # N = 64
    assert all(name.startswith("qextract-stats") for name, _ in seen)
    assert_matches(frame, oracle(model, x))

    def failing(self, f, q):
        if f.shape[0] == 4:
            raise QExtractError("the last batch failed")
        original(self, f, q)

    monkeypatch.setattr(ErrorStats, "update", failing)
    with pytest.raises(QExtractError, match="the last batch failed"):
        error_report(model, x, batch_size=20, quiet=True)
