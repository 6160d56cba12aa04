"""Both QKeras generations: the installed one is detected and guarded, and computes what QKeras 0.9 computed.

The fixtures (``tests/fixtures/qkeras09.*``, written under QKeras 0.9 by
``tests/fixtures/make_generation_fixtures.py``) hold, for every zoo case, the
bundled example and every quantizer configuration of the registry's tests,
what QKeras 0.9 and qextract computed there: raw weights, inputs, outputs,
values, codes, scales, formats, activation formats and geometry.

Under qkeras-v3 each case is rebuilt with the fixture's raw weights and must
give the same bits, except where :data:`EXPECTED_V3` lists a difference with
its reason (each listed difference must really occur, so the list stays true).
Under QKeras 0.9 the same tests check that the fixtures are current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from typing import Any

import numpy as np
import pytest
import zoo
from fixtures import make_generation_fixtures as fx

import qextract
from qextract import _keras
from qextract.errors import KerasEnvironmentError
from qextract.generation import KERAS3, LEGACY, installed


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(fx.NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(fx.JSON.read_text())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _array_differences(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], prefix: str) -> list[str]:
    keys = sorted({k for k in (*expected, *got) if k.startswith(prefix + "/")})
    out = []
    for k in keys:
        if k not in got or k not in expected:
            out.append(f"{k}: {'missing' if k not in got else 'not in the fixture'}")
        elif not _same(expected[k], got[k]):
            a, b = expected[k], got[k]
            detail = f"{a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            if a.shape == b.shape and a.dtype.kind == b.dtype.kind:
                detail += f", {int(np.sum(a != b))} element(s) differ"
            out.append(f"{k}: {detail}")
    return out


def _meta_differences(expected: Any, got: Any, where: str) -> list[str]:
    got = json.loads(json.dumps(got))  # tuples as lists, as the fixture holds them
    if isinstance(expected, dict) and isinstance(got, dict):
        return [
            d for k in sorted({*expected, *got}) for d in _meta_differences(expected.get(k), got.get(k), f"{where}/{k}")
        ]
    return [] if expected == got else [f"{where}: {expected!r} vs {got!r}"]


def _check(differences: list[str]) -> None:
    """Every difference expected (under qkeras-v3, by :data:`EXPECTED_V3`); none at all under QKeras 0.9."""
    expected = {} if zoo.LEGACY else EXPECTED_V3
    unexplained = [d for d in differences if not any(d.startswith(k) for k in expected)]
    assert not unexplained, "differs from the QKeras 0.9 fixture:\n" + "\n".join(unexplained[:30])


def _raw(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    prefix = f"case/{name}/raw/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", [*zoo.CASES, *zoo.ACTIVATION_CASES])
def test_zoo_case_computes_what_qkeras_09_computed(fixture, name):
    arrays, meta = fixture
    # QKeras 0.9 makes its seeded weights again (the fixture must be current); qkeras-v3 gets the fixture's own
    got, got_meta = fx.observe_case(name, None if zoo.LEGACY else _raw(arrays, name))
    _check(
        _array_differences(arrays, got, f"case/{name}")
        + _meta_differences(meta["cases"][name], got_meta, f"case/{name}:meta")
    )


def test_the_bundled_example_computes_what_qkeras_09_computed(fixture):
    arrays, meta = fixture
    got, got_meta = fx.observe_example()
    _check(_array_differences(arrays, got, "example") + _meta_differences(meta["example"], got_meta, "example:meta"))


QUANTIZER_SPECS = list(fx.quantizer_specs())


def _quantizer(spec: str) -> str:
    return f"quantizer/{QUANTIZER_SPECS.index(spec)}"


_POOLING = (
    "the layer's output only: qkeras-v3 multiplies the input by the pool area before Keras averages it (a global "
    "pool: sums it), QKeras 0.9 averages first and multiplies after, so the float32 window sums round apart in "
    "the last bit; the average multiplier's codes and scale are the same"
)
_FOLDING = (
    "the folded raw weights only: folding the batch norm, qkeras-v3 computes 1 / sqrt(variance + epsilon), QKeras "
    "0.9 rsqrt(variance + epsilon), which differ in the last float32 bit; the codes, scales and outputs are the same "
    "here, but a raw weight that close to a rounding boundary would get the neighbouring code"
)
_HSWISH = "qkeras-v3's quantized_hswish has a post_training_scale parameter (None here), which its description lists"
_ARRAY_ALPHA = zoo.V3_CANNOT_RUN["array alpha"] + "; QKeras 0.9 runs it (where the alpha fits the tensor)"

EXPECTED_V3: dict[str, str] = {
    "example/convbn4/kernel/raw": _FOLDING,
    "example/convbn4/bias/raw": _FOLDING,
    "case/avg_pool/y": _POOLING,
    "case/global_avg_pool/y": _POOLING,
    "case/qactivation_hswish:meta/q/activations": _HSWISH,
    _quantizer("quantized_hswish(8,3)") + ":meta/quantizer": _HSWISH,
    _quantizer("quantized_hswish(6,2,alpha='auto_po2')") + ":meta/quantizer": _HSWISH,
    _quantizer("quantized_bits(4,0,alpha=np.linspace(0.5,2,8).astype(np.float32))"): _ARRAY_ALPHA,
    _quantizer("quantized_bits(4,0,alpha=np.array([0.5,1.0,2.0],np.float32))"): _ARRAY_ALPHA,
}
"""Where qkeras-v3 1.2.1 computes or records something else than QKeras 0.9 did: key prefix -> why.
Everything else (every code, scale, format, value and output) is the same, bit for bit."""


@pytest.mark.parametrize("index", range(len(QUANTIZER_SPECS)), ids=QUANTIZER_SPECS)
def test_quantizer_computes_what_qkeras_09_computed(fixture, index):
    arrays, meta = fixture
    assert meta["quantizers"][index]["spec"] == QUANTIZER_SPECS[index], "the fixture is stale: make it again"
    got, got_meta = fx.observe_quantizer(index, QUANTIZER_SPECS[index])
    _check(
        _array_differences(arrays, got, f"quantizer/{index}")
        + _meta_differences(meta["quantizers"][index], got_meta, f"quantizer/{index}:meta")
    )


def test_every_expected_difference_occurs(fixture):
    """:data:`EXPECTED_V3` lists only what really differs (under qkeras-v3; empty under QKeras 0.9)."""
    if zoo.LEGACY:
        return
    arrays, meta = fixture
    seen: list[str] = []
    for name in [*zoo.CASES, *zoo.ACTIVATION_CASES]:
        got, got_meta = fx.observe_case(name, _raw(arrays, name))
        seen += _array_differences(arrays, got, f"case/{name}")
        seen += _meta_differences(meta["cases"][name], got_meta, f"case/{name}:meta")
    got, got_meta = fx.observe_example()
    seen += _array_differences(arrays, got, "example") + _meta_differences(meta["example"], got_meta, "example:meta")
    for index, spec in enumerate(QUANTIZER_SPECS):
        got, got_meta = fx.observe_quantizer(index, spec)
        seen += _array_differences(arrays, got, f"quantizer/{index}")
        seen += _meta_differences(meta["quantizers"][index], got_meta, f"quantizer/{index}:meta")
    unused = [k for k in EXPECTED_V3 if not any(d.startswith(k) for d in seen)]
    assert not unused, f"listed as differing but equal now: {unused}"


# --- which generation, and the guard --------------------------------------------------------------------------------


def test_the_generation_is_the_installed_distribution():
    dists = {d.metadata["Name"].lower() for d in metadata.distributions()}
    assert installed() is (KERAS3 if "qkeras-v3" in dists else LEGACY)
    gen = _keras.generation()
    assert gen is installed() and gen.distribution.lower() in dists
    qkeras = _keras.qkeras()
    assert issubclass(qkeras.QDense, _keras.keras().layers.Layer)  # the accessor is the Keras QKeras runs on
    assert _keras.keras().layers.Layer.__module__.split(".")[0] == gen.keras


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**base, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        timeout=300,
    )


def test_importing_qextract_selects_legacy_keras_only_for_qkeras_09():
    r = _python("import os, sys, qextract\nprint(os.environ.get('TF_USE_LEGACY_KERAS'), 'tensorflow' in sys.modules)")
    assert r.stdout.split() == (["1", "False"] if zoo.LEGACY else ["None", "False"]), r.stderr[-2000:]


@pytest.mark.skipif(zoo.LEGACY, reason="qkeras-v3 only: QKeras 0.9 needs the variable (test_session.py)")
def test_under_qkeras_v3_the_legacy_variable_changes_nothing():
    """A user's TF_USE_LEGACY_KERAS=1 makes tf.keras tf-keras; qextract still reads qkeras-v3 models (Keras 3)."""
    code = (
        "import qextract, keras, qkeras\nfrom qextract._keras import keras as k\nassert k() is keras\n"
        "inp = keras.Input((4,))\n"
        "m = keras.Model(inp, qkeras.QDense(2, kernel_quantizer='quantized_bits(4,0,1)')(inp))\n"
        "print(sum(1 for _ in qextract.extract(m).tensors()))"
    )
    r = _python(code, TF_USE_LEGACY_KERAS="1")
    assert r.returncode == 0 and r.stdout.strip().endswith("2"), r.stderr[-2000:]


@pytest.mark.skipif(zoo.LEGACY, reason="qkeras-v3 only: under QKeras 0.9 a Keras 3 model is refused (test_session)")
def test_under_qkeras_v3_a_tf_keras_model_and_another_backend_are_refused_by_name():
    import tf_keras

    inp = tf_keras.Input((4,))
    with pytest.raises(KerasEnvironmentError, match=r"a tf-keras \(Keras 2\) model .* installed QKeras is qkeras-v3"):
        qextract.extract(tf_keras.Model(inp, tf_keras.layers.Dense(2)(inp)))
    r = _python(
        "import qextract\nfrom qextract._keras import keras\ntry:\n    keras()\n"
        "except qextract.QExtractError as e:\n    print(type(e).__name__, e)",
        KERAS_BACKEND="numpy",
    )
    assert r.stdout.startswith("KerasEnvironmentError Keras 3 runs on the 'numpy' backend"), r.stdout + r.stderr[-2000:]
    assert "Fix: set KERAS_BACKEND=tensorflow" in r.stdout


def test_both_qkeras_distributions_installed_is_refused_by_name(monkeypatch):
    from qextract import generation as g

    monkeypatch.setattr(g, "_version", lambda dist: {"QKeras": "0.9.0", "qkeras-v3": "1.2.1"}.get(dist))
    with pytest.raises(g.AmbiguousInstall, match="both QKeras 0.9.0 .* and qkeras-v3 1.2.1 are installed"):
        g.installed()
    _keras.generation.cache_clear()
    try:
        with pytest.raises(KerasEnvironmentError, match="pip uninstall -y QKeras qkeras-v3"):
            _keras.generation()
    finally:
        monkeypatch.undo()
        _keras.generation.cache_clear()
    assert _keras.generation() is installed()


@pytest.mark.skipif(zoo.LEGACY, reason="qkeras-v3 only")
def test_under_qkeras_v3_a_qkeras_09_file_is_refused_by_name():
    examples = zoo.EXAMPLES
    message = r"saved by Keras 2\.\d+\.\d+ \(QKeras 0\.9 on tf-keras\); the installed qkeras-v3 .* Fix: migrate it"
    with pytest.raises(qextract.errors.ModelLoadError, match=message):
        qextract.load_model(examples / "digits_qcnn.h5")
    with pytest.raises(qextract.errors.ModelLoadError, match=message):
        qextract.load_model(examples / "digits_qcnn.json", weights=examples / "digits_qcnn_weights.h5")


@pytest.mark.skipif(zoo.LEGACY, reason="qkeras-v3 only")
def test_under_qkeras_v3_a_kernel_mask_is_refused_and_an_unserialisable_layer_named():
    keras, q = _keras.keras(), _keras.qkeras()
    inp = keras.Input((6, 6, 2))
    mask = np.ones((3, 3), np.float32)
    masked = keras.Model(inp, q.QConv2D(2, 3, kernel_quantizer="quantized_bits(4,0,1)", mask=mask, name="m")(inp))
    with pytest.raises(qextract.errors.UnsupportedError, match=r"layer 'm' \(QConv2D\) has a kernel mask"):
        qextract.extract(masked)
    with pytest.raises(qextract.errors.UnsupportedError, match=r"layer 'm' \(QConv2D\) has a kernel mask"):
        qextract.float_model(masked)
    inp = keras.Input((4,))
    adaptive = keras.Model(inp, q.QAdaptiveActivation("quantized_relu", total_bits=6, name="ad")(inp))
    assert len(qextract.extract(adaptive)["ad"].activations) == 1  # extraction needs no configuration
    with pytest.raises(qextract.errors.UnsupportedError, match=r"layer 'ad' \(QAdaptiveActivation\) cannot write"):
        qextract.float_model(adaptive)
