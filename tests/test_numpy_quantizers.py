"""The quantizers' NumPy forms against QKeras itself: bit for bit, or refused; never a different answer.

Driven by the registry: every example configuration of ``tests/test_quantizer_registry.py``
and random configurations and tensors (hypothesis). The reference is QKeras's own
call (:func:`qextract.quantizers.apply`), its own parser (``safe_eval``), its own
constructor and ``str``, never the NumPy forms.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_quantizer_registry import CASES

from qextract import _keras
from qextract._keras import qkeras, tf
from qextract.errors import NeedsQKeras
from qextract.quantizers import QUANTIZERS, apply, entry_for
from qextract.quantizers.emulation import log2_rounded, numpy_apply, po2_scale
from qextract.quantizers.parse import ActivationFunction, QuantizerCall, parse_quantizer
from qextract.quantizers.standin import StoredQuantizer, build

tf()
Qz = qkeras().quantizers
GEN = _keras.generation()
"""The installed generation: its QKeras is the reference, and quantizers are built with its constructors."""
KNOWN = frozenset(QUANTIZERS)
WITH_NUMPY = sorted(name for name, entry in QUANTIZERS.items() if entry.params is not None)
SHAPES = [(3, 3, 4, 5), (7,), (20, 6), (2, 9, 3)]


def compare(q_numpy: StoredQuantizer, q_keras, x: np.ndarray) -> str:
    """ "same" where the NumPy form equals QKeras bit for bit (output, codes, scale), "refused" where it refuses."""
    try:
        out, used = numpy_apply(q_numpy, x)
    except NeedsQKeras:
        return "refused"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, called = apply(q_keras, x)
    assert out.dtype == ref.dtype and out.tobytes() == ref.tobytes(), (str(q_keras), x.shape, np.sum(out != ref))
    mine, theirs = entry_for(used).encode(used, out), entry_for(called).encode(called, ref)
    for field in ("codes", "scale", "signs"):
        a, b = getattr(mine, field), getattr(theirs, field)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b, equal_nan=True)), (str(q_keras), field)
    assert mine.format == theirs.format and mine.scale_axis == theirs.scale_axis
    return "same"


def from_spec(spec: str) -> StoredQuantizer:
    parsed = parse_quantizer(spec, KNOWN, GEN)
    assert isinstance(parsed, QuantizerCall)
    return build(parsed, generation=GEN)


# --- every registry example -------------------------------------------------------------------------------------

EXAMPLES = [(name, spec) for name, case in CASES.items() for spec in case.codes]


@pytest.mark.parametrize(("name", "spec"), EXAMPLES, ids=[s for _, s in EXAMPLES])
def test_every_registry_example_is_qkeras_bit_for_bit_or_refused(name, spec):
    rng = np.random.default_rng(len(spec))
    try:
        q = from_spec(spec)
    except NeedsQKeras:
        assert QUANTIZERS[name].params is None or "np." in spec  # no NumPy form, or an array QKeras cannot parse
        return
    assert str(q) == str(eval(spec, {"np": np, **vars(Qz)}))
    results = []
    for shape in SHAPES:
        for spread in (0.05, 0.6, 3.0):
            x = (rng.standard_normal(shape) * spread).astype(np.float32)
            results.append(compare(q, eval(spec, {"np": np, **vars(Qz)}), x))
    # refused: a sigmoid first (and alpha='auto' of binary and ternary beyond 1-D: a float32 mean used as the scale)
    assert ("same" in results) == (spec != "quantized_relu(4,1,use_sigmoid=1)"), results


def test_the_numpy_forms_cover_the_common_quantizers():
    assert WITH_NUMPY == ["binary", "quantized_bits", "quantized_po2", "quantized_relu", "ternary"]


@pytest.mark.parametrize("name", WITH_NUMPY)
def test_constructors_are_qkeras_constructors(name):
    params = inspect.signature(getattr(Qz, name).__init__).parameters
    expected = [(p.name, p.default) for p in params.values() if p.name != "self"]
    assert list(GEN.quantizer_arguments.get(name, QUANTIZERS[name].params)) == expected
    # get_config lists QKeras 0.9's keys, and (qkeras-v3) arguments reproduced only at their default
    listed = list(getattr(Qz, name)().get_config())
    assert [k for k in listed if k not in GEN.default_only_arguments.get(name, ())] == list(
        QUANTIZERS[name].config_keys
    )


@pytest.mark.skipif(GEN.legacy_keras, reason="qkeras-v3's added arguments: the Keras 3 stack")
@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        ("quantized_bits(8,0,alpha='auto_po2',post_training_scale=0.5)", "post_training_scale"),
        ("quantized_bits(8,0,scale_axis=0,elements_per_scale=2)", "elements_per_scale"),
        ("quantized_bits(8,0,alpha='auto_po2',min_po2_exponent=-3)", "min_po2_exponent"),
        ("binary(training=True)", "training"),
        ("binary(alpha='auto_po2',max_po2_exponent=2)", "max_po2_exponent"),
    ],
)
def test_a_qkeras_v3_argument_away_from_its_default_is_refused_by_name(spec, argument):
    with pytest.raises(NeedsQKeras, match=f"argument {argument}="):
        from_spec(spec)
    default = from_spec(spec.split(",")[0] + ")" if "," in spec else spec.split("(")[0])
    assert getattr(default, argument) is None or getattr(default, argument) is False


# --- QKeras's parser, constructor defaults and the layer's own defaulting --------------------------------------

STRINGS = [
    "quantized_bits(8,0,1,alpha='auto_po2')",
    "quantized_bits(4, 2, 1)",
    "quantized_bits(6,2,keep_negative=False)",
    "quantized_bits(4,0,alpha=None)",  # QKeras reads an unquoted None as the string 'on'
    "quantized_bits(5,1,alpha = 0.5)",
    "quantized_bits(8,3,symmetric=True,use_stochastic_rounding=True)",
    "quantized_bits",
    "quantized_relu(6,2)",
    "quantized_relu(4, 1, negative_slope=0.25)",
    "quantized_relu(8,3,relu_upper_bound=6.0,is_quantized_clip=False)",
    "quantized_po2(5,1)",
    "quantized_po2(4,quadratic_approximation=True,log2_rounding='floor')",
    "binary(alpha='auto_po2')",
    "binary(use_01=1)",
    "ternary(alpha=0.5,threshold=0.2)",
    "ternary(number_of_unrolls=3,alpha='auto')",
]


@pytest.mark.parametrize("text", STRINGS)
def test_strings_build_what_qkeras_builds(text):
    theirs = Qz.get_quantizer(text)
    mine = from_spec(text)
    assert type(mine).__name__ == type(theirs).__name__
    for key, value in vars(theirs).items():
        if key.startswith("_self") or key in ("built", "_scope_name"):
            continue
        assert getattr(mine, key) == value and type(getattr(mine, key)) is type(value), key
    assert str(mine) == str(theirs)


def test_dicts_and_float_functions():
    stored = {"class_name": "quantized_bits", "config": Qz.quantized_bits(6, 2, alpha="auto").get_config()}
    assert str(build(parse_quantizer(stored, KNOWN, GEN), generation=GEN)) == "quantized_bits(6,2,1,alpha='auto')"
    assert parse_quantizer("relu", KNOWN) == ActivationFunction("relu")
    # as each Keras names the function (tf-keras: swish; Keras 3: silu), checked against the installed one
    keras_name = _keras.keras().activations.get("silu").__name__
    assert parse_quantizer("silu", KNOWN, GEN) == parse_quantizer("swish", KNOWN, GEN) == ActivationFunction(keras_name)
    assert parse_quantizer("binary_tanh", KNOWN) == ActivationFunction("binary_tanh")
    assert parse_quantizer(None, KNOWN) is None
    for refused in ("my_activation", "quantized_bits(4,0,alpha=np.array(1))", "quantized_bits(4,alpha=1,0)"):
        with pytest.raises(NeedsQKeras):
            parse_quantizer(refused, KNOWN)
    with pytest.raises(NeedsQKeras, match="rejects"):
        build(parse_quantizer("quantized_bits(4,nope=1)", KNOWN))


@pytest.mark.parametrize(
    ("layer", "text"),
    [
        ("QDense", "quantized_bits(4,0,1)"),
        ("QDense", "binary()"),
        ("QDense", "ternary()"),
        ("QDense", "quantized_po2(4)"),
        ("QConv2D", "quantized_relu(4,2)"),
    ],
)
def test_a_layer_optimizes_its_kernel_quantizer_as_qkeras_does(layer, text):
    kwargs = {"filters": 2, "kernel_size": 1} if layer == "QConv2D" else {"units": 2}
    theirs = getattr(qkeras(), layer)(kernel_quantizer=text, **kwargs).kernel_quantizer_internal
    mine = build(parse_quantizer(text, KNOWN, GEN), optimized=True, generation=GEN)
    assert str(mine) == str(theirs)
    assert {k: v for k, v in vars(theirs).items() if k in vars(mine)} == {
        k: v for k, v in vars(mine).items() if k in vars(theirs)
    }


# --- where float32 evaluation order could decide: refused, never guessed --------------------------------------


def test_a_log2_within_rounding_distance_of_a_tie_is_refused():
    assert log2_rounded(np.array([2.0**-3.4]), 0.0).tolist() == [-3.0]
    with pytest.raises(NeedsQKeras, match="rounding boundary"):
        log2_rounded(np.array([2.0**-3.5]), 0.0)
    with pytest.raises(NeedsQKeras):  # floor: a power of two lies on the boundary
        log2_rounded(np.array([0.25]), 0.0, floor=True)
    # a mean of many products is known only to within (n + 1) * 2**-24: a wider margin
    assert log2_rounded(np.array([2.0**-3.5 * (1 + 1e-4)]), 0.0).tolist() == [-3.0]
    with pytest.raises(NeedsQKeras):
        log2_rounded(np.array([2.0**-3.5 * (1 + 1e-4)]), 1e-3)


def test_an_auto_po2_search_landing_near_a_tie_is_refused_and_qkeras_agrees_elsewhere():
    x = np.full((40, 1), np.float32(2.0**-2.5), np.float32)  # mean(x q) / mean(q q) = 2**-2.5: log2 on a tie
    with pytest.raises(NeedsQKeras, match="rounding boundary"):
        po2_scale(x, np.ones_like(x), (0,))
    q = from_spec("quantized_bits(8,0,alpha='auto_po2')")
    with pytest.raises(NeedsQKeras):
        numpy_apply(q, np.array([[127 * 2.0**-3.5]] * 3, np.float32))  # the first scale's log2 on a tie
    assert compare(q, Qz.quantized_bits(8, 0, alpha="auto_po2"), np.array([[127 * 2.0**-3.4]] * 3, np.float32))


def test_subnormal_weights_are_refused():
    q = from_spec("quantized_bits(8,0,1)")
    with pytest.raises(NeedsQKeras, match="subnormal"):
        numpy_apply(q, np.array([1e-40, 0.5], np.float32))


# --- random configurations and tensors --------------------------------------------------------------------------

tensors = st.tuples(
    st.sampled_from(SHAPES), st.sampled_from([0.003, 0.05, 0.5, 2.0, 40.0]), st.integers(0, 2**31 - 1)
).map(lambda a: (np.random.default_rng(a[2]).standard_normal(a[0]) * a[1]).astype(np.float32))

configs = st.one_of(
    st.builds(
        lambda b, i, s, k, a: ("quantized_bits", dict(bits=b, integer=i, symmetric=s, keep_negative=k, alpha=a)),
        st.integers(1, 12),
        st.integers(0, 4),
        st.sampled_from([0, 1]),
        st.booleans(),
        st.sampled_from([None, 1, 0.5, 0.37, "auto", "auto_po2"]),
    ),
    st.builds(
        lambda b, m, qa, r: ("quantized_po2", {"bits": b, "max_value": m, "quadratic_approximation": qa,
                                                "log2_rounding": r}),
        st.integers(2, 8),
        st.sampled_from([None, 1, 4]),
        st.booleans(),
        st.sampled_from(["rnd", "floor"]),
    ),
    st.builds(
        lambda b, i, s, u, c: ("quantized_relu", {"bits": b, "integer": i, "negative_slope": s,
                                                 "relu_upper_bound": u, "is_quantized_clip": c}),
        st.integers(2, 10),
        st.integers(0, 4),
        st.sampled_from([0.0, 0.25, 0.5]),
        st.sampled_from([None, 3.0]),
        st.booleans(),
    ),
    st.builds(
        lambda u, a: ("binary", {"use_01": u, "alpha": a}),
        st.booleans(),
        st.sampled_from([None, 0.5, "auto", "auto_po2"]),
    ),
    st.builds(
        lambda a, t, n: ("ternary", {"alpha": a, "threshold": None if isinstance(a, str) else t,
                                     "number_of_unrolls": n}),
        st.sampled_from([None, 0.5, "auto", "auto_po2"]),
        st.sampled_from([None, 0.2]),
        st.integers(1, 6),
    ),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, x=tensors)
def test_random_configurations_and_tensors_are_qkeras_bit_for_bit_or_refused(config, x):
    name, kwargs = config
    mine = build(QuantizerCall(name, (), tuple(kwargs.items()), name), generation=GEN)
    assert str(mine) == str(getattr(Qz, name)(**kwargs))
    compare(mine, getattr(Qz, name)(**kwargs), x)


def test_random_cases_are_mostly_computed_not_refused():
    rng = np.random.default_rng(7)
    outcomes = []
    for spec in ("quantized_bits(8,0,alpha='auto_po2')", "quantized_bits(6,2,1)", "quantized_po2(5,1)",
                 "quantized_relu(6,2)", "ternary(alpha='auto_po2')", "binary(alpha='auto_po2')"):  # fmt: skip
        for _ in range(10):
            x = (rng.standard_normal((3, 3, 8, 4)) * 0.3).astype(np.float32)
            outcomes.append(compare(from_spec(spec), eval(spec, vars(Qz)), x))
    assert outcomes.count("same") >= 0.95 * len(outcomes)
