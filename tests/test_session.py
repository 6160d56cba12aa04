"""qextract in the user's own Python session: any import order, models built in place, no code run from files.

Each import-order case runs in a fresh interpreter, since which Keras ``tf.keras``
is can be decided only once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract.cli import main
from qextract.errors import KerasEnvironmentError, UntrustedCodeError

EXAMPLES = Path(qextract.__file__).parent / "examples"
H5 = zoo.EXAMPLE  # the bundled model as the installed stack reads it

# Build a QKeras model in the session, then extract, export, verify and report it;
# tf_keras's constraints.serialize() chatter from qextract's own calls is a failure.
WORKFLOW = """
import tempfile, warnings
import numpy as np
import qextract
from qkeras import QActivation, QConv2D, QDense
import tensorflow as tf
inp = tf.keras.Input((6, 6, 2))
x = QConv2D(3, 3, kernel_quantizer="quantized_bits(6,0,1)", bias_quantizer="quantized_bits(8,2)", name="c")(inp)
x = QActivation("quantized_relu(4,2)", name="a")(x)
x = tf.keras.layers.Flatten(name="f")(x)
model = tf.keras.Model(inp, QDense(4, kernel_quantizer="quantized_bits(4,0,1)", name="d")(x))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ex = qextract.extract(model)
    out = tempfile.mkdtemp() + "/e"
    qextract.export(ex, out, formats=["npz", "mem"])
    table = qextract.verify(out, model)
    report = qextract.error_report(model, np.random.default_rng(0).random((8, 6, 6, 2), dtype=np.float32), quiet=True)
assert bool(table["passed"].all()), table
noise = [str(w.message)[:120] for w in caught if "serialize()" in str(w.message)]
assert not noise, noise
print("OK", len(ex["c"]), len(report))
"""

ORDERS = {
    "qextract first": ("", False),
    "QKeras first, variable set": ("import qkeras", True),
    "TensorFlow first, variable set": ("import tensorflow", True),
    "tf_keras imported explicitly, variable set": ("import tf_keras", True),
    "the variable set in the process, then TensorFlow": (
        "import os\nos.environ['TF_USE_LEGACY_KERAS'] = '1'\nimport tensorflow",
        False,
    ),
}
if not zoo.LEGACY:  # qkeras-v3 runs on Keras 3 (tf.keras without the variable): no order can pick another Keras
    ORDERS = {
        "qextract first": ("", False),
        "QKeras first": ("import qkeras", False),
        "TensorFlow first": ("import tensorflow", False),
        "Keras first": ("import keras", False),
        "tf_keras imported too": ("import tf_keras", False),
    }


def _run(code: str, legacy_variable: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy_variable:
        env["TF_USE_LEGACY_KERAS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("order", ORDERS)
def test_any_import_order_extracts_a_model_built_in_the_session(order):
    prelude, variable = ORDERS[order]
    r = _run(prelude + "\n" + WORKFLOW, variable)
    assert r.returncode == 0 and r.stdout.startswith("OK 2 "), r.stderr[-2000:]


@zoo.legacy_only
def test_keras3_really_in_use_is_a_clear_error():
    code = textwrap.dedent(
        f"""
        import tensorflow  # without TF_USE_LEGACY_KERAS: Keras 3 for this process
        import qextract
        try:
            qextract.load_model({str(H5)!r})
        except qextract.QExtractError as e:
            print(type(e).__name__, e.exit_code, e)
        """
    )
    r = _run(code, False)
    assert r.stdout.startswith("KerasEnvironmentError 10 tf.keras is Keras 3"), r.stdout + r.stderr[-2000:]
    assert "Fix: import qextract before tensorflow, qkeras and tf_keras, or set TF_USE_LEGACY_KERAS=1" in r.stdout


@zoo.legacy_only
@pytest.mark.parametrize("prelude", ["import tensorflow", "import tf_keras"])
def test_tensorflow_imported_first_without_the_variable_is_a_clear_error(prelude):
    # TensorFlow fixes at import where tensorflow.keras submodules resolve: too late to select tf-keras.
    code = prelude + "\n" + "import qextract, os\nassert 'TF_USE_LEGACY_KERAS' not in os.environ\n" + WORKFLOW
    r = _run(code, False)
    assert r.returncode == 1 and "KerasEnvironmentError: tf.keras is Keras 3" in r.stderr, r.stderr[-2000:]


@zoo.legacy_only
def test_qkeras_imported_under_keras3_is_a_clear_error():
    r = _run(
        "import qkeras, qextract\nfrom qextract._keras import qkeras as q\n"
        "try:\n    q()\nexcept Exception as e:\n    print(type(e).__name__, e)",
        False,
    )
    assert r.stdout.startswith("KerasEnvironmentError"), r.stdout + r.stderr[-2000:]


@zoo.legacy_only
def test_keras_is_checked_by_what_it_is_not_by_its_module_name():
    from qextract._keras import keras_in_use, tf

    t = tf()
    assert t.keras.__name__ == "tensorflow.keras" or t.keras.__name__.startswith("tf_keras")
    assert keras_in_use(t) == "tf_keras"


def test_something_that_is_not_a_model_is_named():
    keras = "tf-keras" if zoo.LEGACY else "keras"
    with pytest.raises(qextract.QExtractError, match=f"is a builtins.int, not a {keras} model") as info:
        qextract.extract(42)  # a str is a model file's path since extract reads files (qextract.engines)
    assert info.value.exit_code == 2


# ------------------------------------------------------------- no code from a model file


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    """Models whose Lambda writes a marker file when Keras rebuilds them: proof that code ran, or did not."""
    d = tmp_path_factory.mktemp("lambda")
    marker = d / "ran.txt"
    keras = zoo.keras
    inp = keras.Input((4,))
    code = f"lambda x: (open({str(marker)!r}, 'a').write('ran'), x)[1]"
    lam = keras.layers.Lambda(eval(code), name="evil")
    model = keras.Model(inp, lam(keras.layers.Dense(3, name="fc")(inp)))
    paths = {"h5": d / "m.h5", "keras": d / "m.keras", "savedmodel": d / "sm"}
    weights = d / ("w.h5" if zoo.LEGACY else "w.weights.h5")  # Keras 3 names a weights file .weights.h5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(paths["h5"])
        model.save(paths["keras"])
        if zoo.LEGACY:  # Keras 3 writes no SavedModel a Keras model can be loaded from (see test_model.py)
            model.save(paths["savedmodel"])
    (d / "arch.json").write_text(model.to_json())
    model.save_weights(weights)
    paths["json"] = d / "arch.json"
    marker.unlink(missing_ok=True)
    return paths, marker, weights


FORMS = ["h5", "keras", "json", pytest.param("savedmodel", marks=zoo.legacy_only)]


@pytest.mark.parametrize("form", FORMS)
def test_lambda_layers_are_refused_without_running_them(lambda_models, form):
    paths, marker, weights = lambda_models
    kwargs = {"weights": weights} if form == "json" else {}
    marker.unlink(missing_ok=True)
    with pytest.raises(UntrustedCodeError, match="layer 'evil' \\(Lambda\\) carries Python code") as info:
        qextract.load_model(paths[form], **kwargs)
    assert info.value.exit_code == 3 and str(paths[form]) in str(info.value)
    assert not marker.exists(), "the Lambda's code ran although the model was refused"


@pytest.mark.parametrize("form", ["h5", "json"])
def test_trusted_models_load_and_their_code_runs(lambda_models, form):
    paths, marker, weights = lambda_models
    kwargs = {"weights": weights} if form == "json" else {}
    marker.unlink(missing_ok=True)
    model = qextract.load_model(paths[form], trusted=True, **kwargs)
    assert [layer.name for layer in model.layers][-1] == "evil"
    assert marker.exists()  # the refusal above is a real one: this is what loading does
    assert "fc" in qextract.extract(model).names


def test_cli_refuses_lambda_and_names_the_flag(lambda_models, capsys, tmp_path):
    paths, marker, _ = lambda_models
    marker.unlink(missing_ok=True)
    code = main(["inspect", str(paths["h5"])])
    err = capsys.readouterr().err
    assert code == 3 and "layer 'evil' (Lambda)" in err and "--trust-model" in err
    assert not marker.exists()
    assert main(["inspect", str(paths["h5"]), "--trust-model"]) == 0
    assert marker.exists()


def test_nested_lambda_is_found(tmp_path):
    from qextract.reading.loading import _code_layers

    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {"name": "deep"}}]}},
        {"class_name": "Custom", "config": {"name": "c", "fn": {"function_type": "lambda", "name": "f"}}},
    ]}}  # fmt: skip
    assert _code_layers(config) == ["'deep' (Lambda)", "'f' (marshalled function)"]
    assert _code_layers({"class_name": "Functional", "config": {"layers": [{"class_name": "Dense"}]}}) == []


# ------------------------------------------------------------- quiet in-process use


def test_printing_results_gives_short_summaries(tmp_path):
    model = qextract.load_model(H5)
    ex = qextract.extract(model)
    result = qextract.export(ex, tmp_path / "e")
    kernel = ex["conv1"]["kernel"]
    n = sum(len(r) for r in ex)
    for obj in (ex, ex["conv1"], kernel, result):
        text = repr(obj)
        assert "array(" not in text and len(text) < 400, text
    assert repr(kernel) == (
        "QuantizedTensor('conv1/kernel', shape=(3, 3, 1, 8), fixed<8,0,sym>, scale=per-channel[8] axis 3, "
        "quantizer=quantized_bits(8,0,1,alpha='auto_po2'))"
    )
    assert repr(ex).startswith(f"Extraction(model 'digits_qcnn': {len(ex)} layers, {n} tensors")
    assert "conv1" in str(ex) and "fc5" in str(ex) and "array(" not in str(ex)
    assert repr(result).startswith(f"ExportResult('{tmp_path / 'e'}': {n} tensors, layout hwio")


def test_loading_and_extracting_is_quiet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qextract.extract(qextract.load_model(H5))
    noisy = [
        f"{w.category.__name__}: {str(w.message)[:100]}"
        for w in caught
        if not issubclass(w.category, qextract.QExtractWarning)
    ]
    assert not noisy, noisy


def test_extraction_still_holds_arrays():
    kernel = qextract.extract(qextract.load_model(H5))["conv1"]["kernel"]
    assert isinstance(kernel.codes, np.ndarray) and kernel.codes.shape == (3, 3, 1, 8)


def test_keras_environment_error_is_in_the_error_family():
    assert issubclass(KerasEnvironmentError, qextract.QExtractError) and KerasEnvironmentError.exit_code == 10
