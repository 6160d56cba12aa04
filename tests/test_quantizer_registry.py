"""The quantizer registry: every entry's bounds, float twin, rounding and requantization, against QKeras.

Driven by the registry: every ``QUANTIZERS`` entry needs a :class:`Case` here
(an entry without one fails), and each case says what the entry must give,
checked against QKeras's own output or plain NumPy, never against qextract:

- bounds: equal to the lowest / highest value the quantizer outputs on a sweep;
- float twin: the activation QKeras's straight-through estimator passes on
  (the cases moved here from ``test_twin.py``);
- rounding: on inputs lying exactly on ties, QKeras's output equals a NumPy
  reference of the quantizer using the declared mode, and another mode would
  give a different answer (the inputs really are ties);
- requantization: integer accumulator codes at a power-of-two scale give the
  codes whose values QKeras outputs for ``acc * scale``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import zoo

from qextract import QExtractWarning
from qextract._keras import qkeras, tf
from qextract.analysis.twin import activation_label
from qextract.errors import UnsupportedError
from qextract.quantizers import (
    QUANTIZERS,
    GraphCache,
    QuantizerEntry,
    Rounding,
    apply,
    entry_for,
    float_twin,
    graph_cache,
    output_bounds,
    register,
    twin_names,
)
from qextract.quantizers.rounding import shift_codes
from qextract.tensor import along

tf()
Qz = qkeras().quantizers

Reference = Callable[[np.ndarray, Rounding], np.ndarray]


@dataclass(frozen=True)
class Tie:
    """Inputs on ties for one configuration, and a NumPy reference of its output under a rounding mode."""

    spec: str
    x: np.ndarray
    reference: Reference
    atol: float = 0.0


@dataclass(frozen=True)
class Case:
    """What one registry entry must do, by configuration (QKeras's own spelling).

    ``codes``: configurations whose codes x scale must reproduce QKeras's output
    (``test_quantizers.py``), ``graph_safe`` those of them that run as a traced
    graph on large tensors (exact in any evaluation order); ``specs``: configurations whose bounds are swept
    (``unbounded``: bounds None); ``ties``: rounding checks; ``twins``: float twin
    labels (empty: it has none); ``requantize``: checked against QKeras (empty:
    not implemented).
    """

    codes: tuple[str, ...]
    specs: tuple[str, ...]
    ties: tuple[Tie, ...]
    graph_safe: tuple[str, ...] = ()
    twins: tuple[tuple[str, str], ...] = ()
    unbounded: tuple[str, ...] = ()
    requantize: tuple[str, ...] = ()


def make(spec: str):
    """The QKeras quantizer a spec names (QKeras's own classes only: the cases test those)."""
    return eval(spec, {"np": np, **{k: getattr(Qz, k) for k in QUANTIZERS if hasattr(Qz, k)}})


def run(q, x: np.ndarray) -> np.ndarray:
    return np.asarray(q(tf().constant(np.asarray(x, np.float32))), np.float64)


# --------------------------------------------------------------------------- NumPy references


def halves(step: float, lo: int, hi: int) -> np.ndarray:
    """Every tie ``(k + 1/2) * step`` for k in [lo, hi): both parities, so half-even and half-away differ."""
    return (np.arange(lo, hi) + 0.5) * step


def fixed_ref(bits: int, integer: int, symmetric: int = 0, keep_negative: int = 1, alpha: float = 1.0) -> Reference:
    """``quantized_bits``: ``alpha * m_i * clip(round(x m / m_i), keep_negative (symmetric - m), m - 1) / m``."""
    m, m_i = 2.0 ** (bits - keep_negative), 2.0**integer

    def ref(x: np.ndarray, r: Rounding) -> np.ndarray:
        return alpha * m_i * np.clip(r.round(x * m / m_i), keep_negative * (symmetric - m), m - 1) / m

    return ref


def auto_ref(step: float, top: int) -> Reference:
    """``alpha="auto"`` with the data's scale ``step``: ``step * clip(round(x / step), -top, top)``."""
    return lambda x, r: step * np.clip(r.round(x / step), -top, top)


def sign_ref(lo: float, hi: float) -> Reference:
    """A two-level sign with its tie at 0: ``lo`` or ``hi`` as ``round(1/2 + x/w)`` is 0 or 1 (w > 2 max|x|)."""

    def ref(x: np.ndarray, r: Rounding) -> np.ndarray:
        w = 4.0 * float(np.abs(x).max()) + 1.0
        return np.where(np.clip(r.round(0.5 + x / w), 0, 1) == 1, hi, lo)

    return ref


def relu_ref(bits: int, integer: int, slope: float = 0.0) -> Reference:
    """``quantized_relu``: ``m_i/m * (clip(round(p), 0, m-1) + clip(round(p s), -s m, 0))`` with ``p = x m / m_i``."""
    m, m_i = 2.0 ** (bits - (slope != 0)), 2.0**integer

    def ref(x: np.ndarray, r: Rounding) -> np.ndarray:
        p = x * m / m_i
        neg = np.clip(r.round(p * slope), -slope * m, 0) if slope else 0.0
        return m_i / m * (np.clip(r.round(p), 0, m - 1) + neg)

    return ref


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    """QKeras's default internal sigmoid (not Keras's hard_sigmoid)."""
    return np.clip(0.5 * x + 0.5, 0.0, 1.0)


def relu_sigmoid_ref(bits: int, integer: int) -> Reference:
    """``quantized_relu(use_sigmoid=1)``: ``m_i * clip(2 round(m sigmoid(x/m_i)) / m - 1, 0, 1 - 1/m)``."""
    m, m_i = 2.0**bits, 2.0**integer
    return lambda x, r: m_i * np.clip(2.0 * r.round(hard_sigmoid(x / m_i) * m) / m - 1.0, 0.0, 1.0 - 1.0 / m)


def tanh_ref(bits: int, symmetric: int = 0) -> Reference:
    """``quantized_tanh``: ``clip(round(m (2 sigmoid(x) - 1)) / m, -1 + symmetric/m, 1 - 1/m)``."""
    m = 2.0 ** (bits - 1)
    return lambda x, r: np.clip(r.round((2.0 * hard_sigmoid(x) - 1.0) * m) / m, -1.0 + symmetric / m, 1.0 - 1.0 / m)


def sigmoid_ref(bits: int) -> Reference:
    """``quantized_sigmoid``: ``clip(round(m sigmoid(x)) / m, 0, 1 - 1/m)``, ``m = 2**bits``."""
    m = 2.0**bits
    return lambda x, r: np.clip(r.round(hard_sigmoid(x) * m) / m, 0.0, 1.0 - 1.0 / m)


def ulaw_ref(bits: int, integer: int, u: float = 255.0) -> Reference:
    """``quantized_ulaw``: mu-law of ``2 round(m sigmoid(x/m_i)) / m - 1``, clipped, times ``m_i``."""
    m, m_i = 2.0 ** (bits - 1), 2.0**integer

    def ref(x: np.ndarray, r: Rounding) -> np.ndarray:
        rp = 2.0 * r.round(hard_sigmoid(x / m_i) * m) / m - 1.0
        law = np.sign(rp) * np.log1p(u * np.abs(rp)) / np.log1p(u)
        return m_i * np.clip(law, -1.0, 1.0 - 1.0 / m)

    return ref


def po2_ref(spec: str) -> Reference:
    """``quantized_po2``: ``sign(x) 2**clip(round(log2 |x|), min_exp, max_exp)`` (QKeras's own exponent range)."""
    q = make(spec)
    return lambda x, r: np.sign(x) * 2.0 ** np.clip(r.round(np.log2(np.abs(x))), q._min_exp, q._max_exp)


def near_po2_midpoints(lo: int, hi: int, signs: tuple[int, ...] = (1, -1)) -> np.ndarray:
    """Just below and above ``2**(k + 1/2)``: no float makes log2 an exact tie, so round and floor part here."""
    mid = 2.0 ** (np.arange(lo, hi) + 0.5)
    return np.concatenate([s * mid * f for s in signs for f in (1 - 2**-10, 1 + 2**-10)])


def ternary_ref(threshold: float, alpha: float) -> Reference:
    """``ternary`` with a fixed threshold t: ``alpha * clip(round(x / 2t), -1, 1)`` (ties at |x| = t)."""
    return lambda x, r: alpha * np.clip(r.round(x / (2 * threshold)), -1, 1)


def ternary_auto_po2_ref(x: np.ndarray, r: Rounding) -> np.ndarray:
    """``ternary(alpha="auto_po2")`` on one channel: QKeras's five unrolled scale / threshold iterations."""
    po2 = lambda s: 2.0 ** np.rint(np.log2(s + 1e-7))  # noqa: E731 - QKeras rounds the scale with tf.round
    scale = po2(2.0 * np.abs(x).max() / 3.0)
    for _ in range(5):
        v = scale * r.round(x / scale)
        q = (np.abs(v) >= scale / 2.0) * np.sign(x)
        scale = po2(np.mean(x * q) / (np.mean(q * q) + 1e-7))
    return scale * q


# --------------------------------------------------------------------------- the cases

AUTO_X = np.concatenate([[127 / 8], halves(1 / 8, -20, 20)]).reshape(-1, 1)  # max 127/8: scale 2**-3
SIGN_X = np.array([0.0, -0.0, 0.5, -0.25])
TERNARY_X = np.array([0.25, -0.25, 0.5, -0.75, 0.125, 1.0])

CASES: dict[str, Case] = {
    "quantized_bits": Case(
        codes=("quantized_bits(8,0,1)", "quantized_bits(4,2,0)", "quantized_bits(6,3,1,keep_negative=0)",
               "quantized_bits(5,5,0)", "quantized_bits(8,0,alpha='auto')", "quantized_bits(8,0,alpha='auto_po2')",
               "quantized_bits(4,0,1,alpha=0.37)", "quantized_bits(4,1,alpha=1)",
               "quantized_bits(4,0,alpha=np.linspace(0.5,2,8).astype(np.float32))", "quantized_bits(1,0,1)",
               "quantized_bits(1,0,keep_negative=0)", "quantized_bits(16,4,1)",
               "quantized_bits(8,3,keep_negative=0,alpha='auto_po2')"),
        graph_safe=("quantized_bits(8,0,1)", "quantized_bits(4,2,0)", "quantized_bits(6,3,1,keep_negative=0)",
                    "quantized_bits(5,5,0)", "quantized_bits(8,0,alpha='auto_po2')", "quantized_bits(4,1,alpha=1)",
                    "quantized_bits(1,0,1)", "quantized_bits(1,0,keep_negative=0)", "quantized_bits(16,4,1)",
                    "quantized_bits(8,3,keep_negative=0,alpha='auto_po2')"),
        specs=("quantized_bits(4,0,1)", "quantized_bits(6,2,0)", "quantized_bits(5,1,0,keep_negative=False)",
               "quantized_bits(4,1,1,alpha=0.5)", "quantized_bits(1,0)", "quantized_bits(8,0,alpha='auto_po2')"),
        unbounded=("quantized_bits(8,0,alpha='auto_po2')",),
        ties=(
            Tie("quantized_bits(4,2,1)", halves(0.5, -8, 8), fixed_ref(4, 2, 1)),
            Tie("quantized_bits(6,1,0,keep_negative=False)", halves(2**-5, 0, 70), fixed_ref(6, 1, 0, 0)),
            Tie("quantized_bits(4,0,1,alpha=0.5)", halves(2**-3, -9, 9), fixed_ref(4, 0, 1, alpha=0.5)),
            Tie("quantized_bits(8,0,alpha='auto')", AUTO_X, auto_ref(2**-3, 127)),
            Tie("quantized_bits(8,0,alpha='auto_po2')", AUTO_X, auto_ref(2**-3, 127)),
            Tie("quantized_bits(1,0,1)", SIGN_X, sign_ref(-1.0, 1.0)),
        ),
        twins=(("quantized_bits(8,2,1)", "linear"),),
        requantize=("quantized_bits(8,3,1)", "quantized_bits(6,2,0,keep_negative=False)", "quantized_bits(5,1,0)",
                    "quantized_bits(4,0,1,alpha=0.37)", "quantized_bits(1,0,1,alpha=0.5)",
                    "quantized_bits(4,0,alpha=np.array([0.5,1.0,2.0],np.float32))"),
    ),
    "quantized_hswish": Case(
        codes=("quantized_hswish(8,3)", "quantized_hswish(6,2,alpha='auto_po2')"),
        specs=("quantized_hswish(8,3)", "quantized_hswish(6,2,alpha='auto_po2')"),
        unbounded=("quantized_hswish(6,2,alpha='auto_po2')",),
        ties=(Tie("quantized_hswish(8,3)", 3.0 + halves(2**-4, 0, 70), fixed_ref(8, 3)),),  # hswish(x) = x from 3 on
        twins=(("quantized_hswish(8,3)", "hard_swish"),),
    ),
    "quantized_relu": Case(
        codes=("quantized_relu(4,2)", "quantized_relu(6,0,negative_slope=0.25)", "quantized_relu(4,1,use_sigmoid=1)",
               "quantized_relu(8)"),
        specs=("quantized_relu(4,1)", "quantized_relu(3,0,negative_slope=0.25)", "quantized_relu(8)",
               "quantized_relu(4,2,relu_upper_bound=3.0,is_quantized_clip=False)"),
        ties=(
            Tie("quantized_relu(4,2)", halves(0.25, -3, 18), relu_ref(4, 2)),
            # ties of round(p) at x = (k + 1/2) / 2, of round(p / 4) at odd negative x
            Tie("quantized_relu(4,2,negative_slope=0.25)",
                np.concatenate([halves(0.5, -2, 10), -(2.0 * np.arange(6) + 1)]), relu_ref(4, 2, 0.25)),
            Tie("quantized_relu(4,1,use_sigmoid=1)", halves(0.25, 4, 24) - 2.0, relu_sigmoid_ref(4, 1)),
        ),
        twins=(
            ("quantized_relu(4,0)", "relu"),
            ("quantized_relu(4,2,relu_upper_bound=3.0)", "ReLU(max_value=3.0)"),
            ("quantized_relu(4,2,negative_slope=0.25)", "ReLU(negative_slope=0.25)"),
        ),
        requantize=("quantized_relu(4,2)", "quantized_relu(8)", "quantized_relu(6,1,negative_slope=0.25)",
                    "quantized_relu(5,2,negative_slope=0.5)",
                    "quantized_relu(4,2,relu_upper_bound=3.0,is_quantized_clip=False)"),
    ),
    "quantized_tanh": Case(
        codes=("quantized_tanh(4)", "quantized_tanh(5,symmetric=1)", "quantized_tanh(6,use_real_tanh=True)"),
        specs=("quantized_tanh(4)", "quantized_tanh(5,symmetric=True)", "quantized_tanh(6,use_real_tanh=True)"),
        ties=(Tie("quantized_tanh(4)", halves(2**-3, -9, 9), tanh_ref(4)),
              Tie("quantized_tanh(5,symmetric=True)", halves(2**-4, -17, 17), tanh_ref(5, 1))),
        twins=(("quantized_tanh(4)", "hard_tanh"), ("quantized_tanh(4,use_real_tanh=True)", "tanh")),
    ),
    "quantized_sigmoid": Case(
        codes=("quantized_sigmoid(4)", "quantized_sigmoid(6,use_real_sigmoid=True)"),
        specs=("quantized_sigmoid(4)", "quantized_sigmoid(6,use_real_sigmoid=True)"),
        ties=(Tie("quantized_sigmoid(4)", 2 * halves(2**-4, -1, 17) - 1, sigmoid_ref(4)),),
        twins=(("quantized_sigmoid(4)", "hard_sigmoid"), ("quantized_sigmoid(4,use_real_sigmoid=True)", "sigmoid")),
    ),
    "quantized_ulaw": Case(
        codes=("quantized_ulaw(6,0)", "quantized_ulaw(8,1)"),
        specs=("quantized_ulaw(6,0)", "quantized_ulaw(8,1)"),
        ties=(Tie("quantized_ulaw(6,0)", 2 * halves(2**-5, -1, 33) - 1, ulaw_ref(6, 0), atol=1e-6),),
    ),
    "quantized_po2": Case(
        codes=("quantized_po2(4)", "quantized_po2(8,1)", "quantized_po2(5,quadratic_approximation=True)",
               "quantized_po2(6,4)"),
        specs=("quantized_po2(4)", "quantized_po2(5,1)"),
        unbounded=("quantized_po2(4)", "quantized_po2(5,1)"),
        ties=(Tie("quantized_po2(5)", near_po2_midpoints(-4, 4), po2_ref("quantized_po2(5)")),
              Tie("quantized_po2(5,log2_rounding='floor')", near_po2_midpoints(-4, 4),
                  po2_ref("quantized_po2(5,log2_rounding='floor')"))),
        twins=(("quantized_po2(4)", "linear"),),
    ),
    "quantized_relu_po2": Case(
        codes=("quantized_relu_po2(4)", "quantized_relu_po2(8,4,negative_slope=0.25)", "quantized_relu_po2(5,1)"),
        specs=("quantized_relu_po2(4)", "quantized_relu_po2(5,1)"),
        unbounded=("quantized_relu_po2(4)", "quantized_relu_po2(5,1)"),
        ties=(Tie("quantized_relu_po2(5)", near_po2_midpoints(-4, 4, (1,)), po2_ref("quantized_relu_po2(5)")),),
        twins=(("quantized_relu_po2(4,2)", "ReLU(max_value=2.0)"),),
    ),
    "binary": Case(
        codes=("binary()", "binary(alpha='auto')", "binary(alpha='auto_po2')", "binary(use_01=True)",
               "binary(alpha=0.5)"),
        specs=("binary()", "binary(alpha=0.5)"),
        unbounded=("binary()", "binary(alpha=0.5)"),
        ties=(Tie("binary()", np.array([0.0, -0.0]), sign_ref(-1.0, 1.0)),
              Tie("binary(alpha=0.5)", SIGN_X, sign_ref(-0.5, 0.5)),
              Tie("binary(use_01=True,alpha=1.0)", SIGN_X, sign_ref(0.0, 1.0))),
        twins=(("binary()", "tanh"), ("binary(alpha=1.0)", "linear")),
        requantize=("binary(alpha=0.5)", "binary(use_01=True,alpha=2.0)"),
    ),
    "stochastic_binary": Case(
        codes=("stochastic_binary()", "stochastic_binary(alpha='auto_po2')"),
        specs=("stochastic_binary()",),
        unbounded=("stochastic_binary()",),
        ties=(Tie("stochastic_binary(alpha=0.5)", SIGN_X, sign_ref(-0.5, 0.5)),),
        twins=(("stochastic_binary()", "tanh"),),
        requantize=("stochastic_binary(alpha=0.5)",),
    ),
    "ternary": Case(
        codes=("ternary()", "ternary(alpha='auto')", "ternary(alpha='auto_po2')", "ternary(alpha=0.5,threshold=0.2)"),
        specs=("ternary()", "ternary(alpha=0.5,threshold=0.2)"),
        unbounded=("ternary()", "ternary(alpha=0.5,threshold=0.2)"),
        ties=(Tie("ternary(alpha=0.5,threshold=0.25)", TERNARY_X, ternary_ref(0.25, 0.5)),
              Tie("ternary(alpha='auto_po2')", np.array([1, 0.75, 0.5, 0.25, -0.25, -0.5, 0.125]).reshape(-1, 1),
                  ternary_auto_po2_ref)),
        twins=(("ternary()", "tanh"),),
        requantize=("ternary(alpha=0.5,threshold=0.25)", "ternary(alpha=1.0)"),
    ),
    "stochastic_ternary": Case(
        codes=("stochastic_ternary(alpha='auto')", "stochastic_ternary(alpha='auto_po2')"),
        specs=("stochastic_ternary()",),
        unbounded=("stochastic_ternary()",),
        ties=(Tie("stochastic_ternary(alpha=0.5,threshold=0.25)", TERNARY_X, ternary_ref(0.25, 0.5)),),
        twins=(("stochastic_ternary()", "tanh"),),
        requantize=("stochastic_ternary(alpha=0.5,threshold=0.25)",),
    ),
    "bernoulli": Case(
        codes=("bernoulli()", "bernoulli(alpha='auto_po2')"),
        specs=("bernoulli()",),
        unbounded=("bernoulli()",),
        ties=(Tie("bernoulli()", SIGN_X, sign_ref(0.0, 1.0)),),
        twins=(("bernoulli()", "linear"),),
        requantize=("bernoulli()",),
    ),
}  # fmt: skip


def by_name(kind: str) -> list:
    """Pytest parameters ``(name, item)`` of one kind over every case, ids naming the item."""
    return [
        zoo.quantizer_param(_item_id(item), name, item, id=_item_id(item))
        for name, case in CASES.items()
        for item in getattr(case, kind)
    ]


def _item_id(item) -> str:
    return str(item if isinstance(item, str) else item[0] if isinstance(item, tuple) else item.spec)


# --------------------------------------------------------------------------- the registry itself


def test_every_registry_entry_has_a_case():
    assert set(CASES) == set(QUANTIZERS)
    for name, case in CASES.items():
        assert case.codes and case.specs and case.ties and set(case.graph_safe) <= set(case.codes), name
        assert all(type(make(s)).__name__ == name for s in (*case.codes, *case.specs)), name


def test_every_entry_declares_a_rounding_mode():
    for case in CASES.values():
        for spec in (*case.specs, *(t.spec for t in case.ties)):
            q = make(spec)
            assert isinstance(entry_for(q).rounding(q), Rounding), spec


def test_register_refuses_a_second_entry_and_a_nameless_one():
    class Again(QuantizerEntry):
        name = "quantized_bits"

    class Nameless(QuantizerEntry):
        pass

    with pytest.raises(TypeError, match="registered twice"):
        register(Again)
    with pytest.raises(TypeError, match="no QKeras class name"):
        register(Nameless)
    assert type(QUANTIZERS["quantized_bits"]).__name__ == "QuantizedBits"


def test_unknown_quantizer_class_names_the_registry():
    class my_quantizer(Qz.quantized_bits):
        pass

    with pytest.raises(UnsupportedError, match="my_quantizer.*not supported.*register"):
        entry_for(my_quantizer(4), "layer 'l'")
    assert output_bounds(my_quantizer(4)) is None
    assert output_bounds(None) is None
    with pytest.raises(UnsupportedError, match=r"quantizer quantized_bits\(4,0,0\) has no float twin"):  # QKeras's str
        float_twin(my_quantizer(4))


# --------------------------------------------------------------------------- bounds


SWEEP = np.linspace(-300, 300, 120001)


@pytest.mark.parametrize("name, spec", by_name("specs"))
def test_bounds_are_the_values_qkeras_outputs(name, spec):
    q = make(spec)
    bounds = output_bounds(q)
    if spec in CASES[name].unbounded:
        assert bounds is None
        return
    lo, hi = bounds
    out = run(q, SWEEP)
    assert hi == pytest.approx(out.max(), abs=1e-7)
    if lo is None:
        assert out.min() == 0.0  # relu's own floor, not saturation
    elif name == "quantized_hswish":
        assert lo <= out.min()  # hard swish never dips to the grid's bottom
    else:
        assert lo == pytest.approx(out.min(), abs=1e-7)


# --------------------------------------------------------------------------- float twins (moved from test_twin.py)


def test_entries_with_a_twin_are_those_with_twin_cases():
    assert twin_names() == sorted(name for name, case in CASES.items() if case.twins)


@pytest.mark.parametrize("name, twin", by_name("twins"))
def test_float_twin(name, twin):
    from qextract.analysis.twin import float_activation

    spec, label = twin
    assert activation_label(float_activation(make(spec))) == label


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.twins])
def test_an_entry_without_twin_says_so(name):
    from qextract.analysis.twin import float_activation

    with pytest.raises(
        UnsupportedError, match=f"layer 'a': quantizer {name}.*has no float twin.*pass your own float model"
    ):
        float_activation(make(CASES[name].specs[0]), "layer 'a': ")


# --------------------------------------------------------------------------- rounding on ties


@pytest.mark.parametrize("name, tie", by_name("ties"))
def test_declared_rounding_is_what_qkeras_does_on_ties(name, tie):
    q = make(tie.spec)
    declared = entry_for(q).rounding(q)
    x = np.asarray(tie.x, np.float32).astype(np.float64)
    if name == "bernoulli":  # its QKeras call draws at random: its deterministic branch is what runs
        with pytest.warns(QExtractWarning, match="deterministic inference value"):
            out = apply(q, x.astype(np.float32), "t")[0].astype(np.float64)
    else:
        out = run(q, x)
    expected = tie.reference(x, declared)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tie.atol)
    others = [r for r in Rounding if r is not declared]
    assert any(not np.allclose(tie.reference(x, r), expected, rtol=0, atol=tie.atol) for r in others)


def test_rounding_modes_against_known_values():
    # The table QONNX's own tests use for its rounding modes.
    x = np.array([5.5, 2.5, 1.6, 1.1, 1.0, -1.0, -1.1, -1.5, -2.5, -5.5])
    assert Rounding.HALF_EVEN.round(x).tolist() == [6, 2, 2, 1, 1, -1, -1, -2, -2, -6]
    assert Rounding.HALF_AWAY.round(x).tolist() == [6, 3, 2, 1, 1, -1, -1, -2, -3, -6]
    assert Rounding.FLOOR.round(x).tolist() == [5, 2, 1, 1, 1, -1, -2, -2, -3, -6]
    assert Rounding.HALF_POSITIVE.round(x).tolist() == [6, 3, 2, 1, 1, -1, -1, -1, -2, -5]
    assert [r.qonnx for r in Rounding] == ["ROUND", "HALF_UP", None, "FLOOR"]
    assert Rounding("half_even") is Rounding.HALF_EVEN


@pytest.mark.parametrize("rounding", list(Rounding))
def test_integer_shift_equals_float_rounding(rounding):
    rng = np.random.default_rng(3)
    acc = rng.integers(-(2**40), 2**40, 4000)
    acc[:64] = (2 * np.arange(-32, 32) + 1) << 5  # exact ties at a shift of -6
    shift = rng.integers(-20, 21, 4000)
    shift[:64] = -6
    expected = np.clip(rounding.round(acc * 2.0**shift), -(2**45), 2**45 - 1)
    got = shift_codes(acc, shift, rounding, -(2**45), 2**45 - 1)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    # large left shifts saturate instead of overflowing
    big = shift_codes(np.array([2**40, -(2**40), 3]), 40, rounding, -128, 127)
    assert big.tolist() == [127, -128, 127]


def test_integer_shift_refuses_what_int64_cannot_hold():
    with pytest.raises(UnsupportedError, match="beyond 2\\*\\*62"):
        shift_codes(np.array([1]), 63, Rounding.FLOOR, -8, 7)
    with pytest.raises(UnsupportedError, match="too wide"):
        shift_codes(np.array([1]), 0, Rounding.FLOOR, -(2**63), 2**63 - 1)
    with pytest.raises(TypeError, match="integers"):
        shift_codes(np.array([1.5]), 0, Rounding.FLOOR, -8, 7)


# --------------------------------------------------------------------------- integer requantization


def accumulators(channels: int, seed: int = 0) -> np.ndarray:
    """Integer codes: random, plus every tie of a shift by up to 2**-6, both signs, and zero."""
    rng = np.random.default_rng(seed)
    ties = np.concatenate([(2 * np.arange(-40, 40) + 1) << (k - 1) for k in range(1, 7)])
    acc = np.concatenate([[0], ties, rng.integers(-5000, 5000, 400)])
    return np.tile(acc[:, None], (1, channels)) + np.arange(channels)


@pytest.mark.parametrize("name, spec", by_name("requantize"))
@pytest.mark.parametrize("exponent", [-6, -3, 0, 2])
def test_requantize_gives_what_qkeras_outputs(name, spec, exponent):
    q = make(spec)
    acc = accumulators(3)
    scale = np.float32(2.0**exponent)
    x = (acc * 2.0**exponent).astype(np.float32)
    assert np.array_equal(x.astype(np.float64), acc * 2.0**exponent)  # exact: QKeras sees acc * scale itself
    enc = entry_for(q).requantize(q, acc, scale)
    assert enc.codes.dtype == np.int64 and enc.codes.shape == acc.shape
    assert enc.format.code_min <= enc.codes.min() and enc.codes.max() <= enc.format.code_max
    values = enc.codes.astype(np.float32) * along(np.asarray(enc.scale, np.float32), enc.scale_axis, acc.ndim)
    if name == "bernoulli":  # random in QKeras: its deterministic inference value is scale * (x >= 0)
        np.testing.assert_array_equal(values, (x >= 0).astype(np.float32))
        return
    out = np.asarray(q(tf().constant(x)), np.float32)
    ste = x + (values - x)  # QKeras's straight-through form may round a far-off value in float32
    assert np.all((out == values) | (out == ste))


def test_requantize_per_channel_input_scales():
    q = make("quantized_bits(6,2,1)")
    acc = accumulators(3, seed=1)
    scale = np.array([2.0**-7, 2.0**-3, 2.0**1], np.float32)
    x = (acc * scale.astype(np.float64)).astype(np.float32)
    enc = entry_for(q).requantize(q, acc, scale)
    np.testing.assert_array_equal(enc.codes.astype(np.float32) * enc.scale, run(q, x).astype(np.float32))


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.requantize])
def test_requantize_not_implemented_says_so(name):
    q = make(CASES[name].specs[0])
    with pytest.raises(NotImplementedError, match=name):
        entry_for(q).requantize(q, np.arange(4), 1.0)


@pytest.mark.parametrize(
    "spec",
    [
        "quantized_relu(4,1,use_sigmoid=1)",
        "quantized_relu(4,1,negative_slope=2.0)",
        "quantized_relu(4,2,relu_upper_bound=3.1,is_quantized_clip=False)",
    ],
)
def test_requantize_not_implemented_configurations(spec):
    q = make(spec)
    with pytest.raises(NotImplementedError):
        entry_for(q).requantize(q, np.arange(4), 1.0)


@pytest.mark.parametrize(
    "spec", ["quantized_bits(8,0,alpha='auto_po2')", "binary(alpha='auto')", "ternary(alpha='auto_po2')"]
)
def test_requantize_refuses_a_scale_from_the_data(spec):
    q = make(spec)
    with pytest.raises(UnsupportedError, match="scale from the data"):
        entry_for(q).requantize(q, np.arange(4), 1.0)


def test_requantize_refuses_a_scale_not_a_power_of_two():
    q = make("quantized_bits(8,3,1)")
    with pytest.raises(UnsupportedError, match="power of two"):
        entry_for(q).requantize(q, np.arange(4), 0.3)


# --------------------------------------------------------------------------- the traced-graph cache


def test_graph_cache_is_bounded_least_recently_used_first():
    cache = GraphCache(maxsize=2, min_size=1)
    fns = {k: (lambda x, k=k: (k, x)) for k in "abc"}
    cache.put("a", fns["a"])
    cache.put("b", fns["b"])
    assert cache.get("a") is fns["a"]  # a is now the most recently used
    cache.put("c", fns["c"])
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") is fns["a"]
    cache.clear()
    assert len(cache) == 0


def test_graph_cache_in_extraction_is_bounded_and_clearable(monkeypatch):
    monkeypatch.setattr(graph_cache, "min_size", 1)
    monkeypatch.setattr(graph_cache, "maxsize", 1)
    graph_cache.clear()
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QExtractWarning)
        for spec in ("quantized_bits(8,0,1)", "quantized_bits(6,2,1)"):
            out, _ = apply(make(spec), x, "t")
            np.testing.assert_array_equal(out, run(make(spec), x).astype(np.float32))
            assert len(graph_cache) == 1
    graph_cache.clear()
    assert len(graph_cache) == 0


def test_benchmarks_clear_the_cache_through_the_public_hook(monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from benchmarks import bench_extraction

    monkeypatch.setattr(graph_cache, "min_size", 1)
    apply(make("quantized_bits(8,0,1)"), np.ones((2, 2), np.float32), "t")
    assert len(graph_cache) >= 1
    bench_extraction._empty_graph_cache()
    assert len(graph_cache) == 0
    assert "benchmarks.bench_extraction" in sys.modules
