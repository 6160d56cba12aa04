"""Registry: QKeras quantizer class -> number format, integer codes and scale.

Each codec knows one quantizer family. It answers two questions:

* ``number_format(q)``: the format of the codes, from the configuration
  alone (used for activations, whose data is not known);
* ``encode(q, values)``: the codes and scale that reproduce ``values`` (the
  quantizer's own output on a weight) after the quantizer has been called,
  so that data-dependent scales (``alpha="auto"``) are known.

Codecs never decide what the layer computes: :func:`apply` runs the
quantizer itself, on a copy, and the codecs only read its result.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import ExactnessError, QExtractError, QExtractWarning, UnsupportedError
from .numformat import Binary, FixedPoint, LookupTable, NumberFormat, PowerOfTwo, Ternary
from .tensor import along


@dataclass(frozen=True)
class Encoding:
    """Codes and scale for one tensor. ``scale`` is () or (C,) along ``scale_axis``.

    ``codes`` may still be integral floats; the caller range-checks and casts them.
    """

    format: NumberFormat
    codes: np.ndarray
    scale: np.ndarray
    scale_axis: int | None = None
    signs: np.ndarray | None = None


# ---------------------------------------------------------------- helpers


def _int(value: Any) -> int:
    """A QKeras integer attribute, which may be a tf.Variable or a 1-element array."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.size != 1:
        raise UnsupportedError(f"per-element integer bits {arr.tolist()} are not supported")
    return int(arr.reshape(()))


def _float(value: Any) -> float:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(np.asarray(value).reshape(()))


def describe(q: Any) -> str:
    """``str(q)``, or an equivalent built from its config where QKeras's ``__str__`` fails.

    QKeras 0.9.0's ``quantized_hswish.__str__`` always fails an assertion, and
    ``quantized_bits.__str__`` fails for array alphas.
    """
    try:
        return str(q)
    except Exception:  # noqa: BLE001 - QKeras raises AssertionError / ValueError here
        config = q.get_config() if hasattr(q, "get_config") else {}
        args = ",".join(f"{k}={_short(v)}" for k, v in config.items())
        return f"{type(q).__name__}({args})"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return repr(value)


def _check_qnoise(q: Any) -> None:
    qnf = getattr(q, "qnoise_factor", 1.0)
    qnf = _float(qnf) if qnf is not None else 1.0
    if qnf != 1.0:
        raise ExactnessError(
            f"{describe(q)} has qnoise_factor={qnf:g} < 1: its output mixes float and quantized values, "
            "which lie on no integer grid. Fix: set qnoise_factor=1.0 (the value after "
            "quantization-aware training has finished) before extracting."
        )


def _squeeze_scale(scale: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """QKeras keeps per-channel scales with keepdims; return () or (C,) and the axis."""
    if hasattr(scale, "numpy"):
        scale = scale.numpy()
    s = np.asarray(scale, dtype=np.float32)
    if s.size == 1:
        return s.reshape(()), None
    if s.ndim == 1 and len(shape) >= 1 and s.shape[0] == shape[-1]:
        return s, len(shape) - 1
    axes = [i for i, n in enumerate(s.shape) if n != 1]
    if len(axes) == 1 and s.ndim == len(shape) and s.shape[axes[0]] == shape[axes[0]]:
        return s.reshape(-1), axes[0]
    raise UnsupportedError(f"a scale of shape {s.shape} for a tensor of shape {shape} is not per-channel")


def _codes_on_grid(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Integer codes of ``values`` on a broadcast grid ``scale``, as integral float64 (0 where the scale is 0).

    Computed in float64, where no rounding hides a code of any width QKeras
    offers (a float32 quotient cannot even hold every 25-bit integer). With a
    power-of-two scale ``values / scale`` is exact: the code is the one integer
    whose product with the scale *is* the value. With any other scale the
    layer's value is ``float32(code * scale)`` and the quotient lies within
    ``|code| * 2**-24`` of the code; where its nearest integer misses, the
    neighbour whose float32 product is the value is taken. The caller checks
    the range exactly and refuses a code another code would give too.
    """
    v = np.asarray(values, np.float32)
    s = np.asarray(scale, np.float32)
    if s.size and np.all(np.frexp(s)[0] == 0.5):
        # Every scale a nonzero power of two (the common case): the float32 quotient is exact already,
        # so the code is its rint, with no float64 copy and no product check (the caller checks anyway).
        with np.errstate(over="ignore", invalid="ignore"):
            return np.rint(v / s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        codes = np.where(s == 0, 0.0, np.rint(v.astype(np.float64) / s.astype(np.float64)))
        miss = _product(codes, s) != v
        for step in (-1.0, 1.0):
            if not miss.any():
                break
            hit = miss & (_product(codes + step, s) == v)
            codes = np.where(hit, codes + step, codes)
            miss &= ~hit
    return codes


def _product(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``float32(code) * scale`` in float32: what a layer computes with, and how every reader decodes."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(codes).astype(np.float32) * np.asarray(scale, np.float32)


def _fixed(fmt: NumberFormat, values: np.ndarray, scale: Any, axis: int | None = None) -> Encoding:
    s, axis = _squeeze_scale(scale, values.shape) if axis is None else (np.asarray(scale, np.float32), axis)
    codes = _codes_on_grid(values, along(s, axis, values.ndim))
    return Encoding(fmt, codes, s, axis)


# ---------------------------------------------------------------- codecs


@dataclass(frozen=True)
class Codec:
    """How one quantizer family maps to codes. Subclasses fill the two methods."""

    stochastic_note: str | None = None

    def number_format(self, q: Any) -> NumberFormat:
        raise NotImplementedError

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        raise NotImplementedError

    def inference(self, q: Any, x: Any) -> Any:
        """What the quantizer computes at inference (``x`` is a tf tensor)."""
        _check_qnoise(q)
        return q(x)

    def graph_safe(self, q: Any) -> bool:
        """True where a traced graph gives the same bits as eager calls, whatever order it computes in."""
        return False


class QuantizedBitsCodec(Codec):
    """``quantized_bits`` and ``quantized_hswish`` (which quantizes hswish(x) with it).

    alpha None/1/float/array: value = alpha * 2**(integer-(bits-keep_negative)) * code.
    alpha "auto"/"auto_po2": value = quantizer.scale * 2**integer / 2**(bits-kn) * code,
    codes symmetric signed whatever keep_negative says (QKeras's auto path ignores it).
    bits - keep_negative == 0 (1-bit signed) is QKeras's sign quantizer: codes -1/+1.
    """

    def number_format(self, q: Any) -> NumberFormat:
        bits, integer, kn = int(q.bits), _int(q.integer), int(bool(q.keep_negative))
        if isinstance(q.alpha, str):
            return FixedPoint(bits=bits, integer=integer, is_signed=True, symmetric=True)
        if bits - kn <= 0:
            return Binary()
        return FixedPoint(bits=bits, integer=integer, is_signed=bool(kn), symmetric=bool(q.symmetric) and bool(kn))

    def graph_safe(self, q: Any) -> bool:
        # Only scaling by powers of two, rounding and clipping: exact in any evaluation order.
        # A float alpha or alpha="auto" rounds differently once Grappler reorders the products.
        if type(q).__name__ != "quantized_bits" or qkeras_variables(q):
            return False
        alpha = q.alpha
        if alpha is None or (isinstance(alpha, str) and alpha == "auto_po2"):
            return True
        return isinstance(alpha, (int, float)) and alpha > 0 and math.frexp(alpha)[0] == 0.5

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        bits, integer, kn = int(q.bits), _int(q.integer), int(bool(q.keep_negative))
        step = np.float32(2.0 ** (integer - (bits - kn)))
        if isinstance(q.alpha, str):
            # q.scale = (least-squares scale) * 2**(bits-kn); the grid is q.scale * m_i / m.
            return _fixed(fmt, values, np.asarray(q.scale, np.float32) * step)
        alpha = np.float32(1.0) if q.alpha is None else np.asarray(q.alpha, np.float32)
        if isinstance(fmt, Binary):
            return _fixed(fmt, values, alpha)
        return _fixed(fmt, values, alpha * step)


class ReluCodec(Codec):
    """``quantized_relu``: unsigned grid 2**(integer-bits), signed with a negative slope."""

    def number_format(self, q: Any) -> NumberFormat:
        return FixedPoint(bits=int(q.bits), integer=_int(q.integer), is_signed=q.negative_slope != 0)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return _fixed(fmt, values, np.float32(fmt.step))  # type: ignore[attr-defined]


class TanhCodec(Codec):
    """``quantized_tanh``: signed codes on a 2**-(bits-1) grid in [-1, 1)."""

    def number_format(self, q: Any) -> NumberFormat:
        return FixedPoint(bits=int(q.bits), integer=0, is_signed=True, symmetric=bool(q.symmetric))

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return _fixed(fmt, values, np.float32(fmt.step))  # type: ignore[attr-defined]


class SigmoidCodec(Codec):
    """``quantized_sigmoid``: unsigned codes on a 2**-bits grid in [0, 1)."""

    def number_format(self, q: Any) -> NumberFormat:
        return FixedPoint(bits=int(q.bits), integer=0, is_signed=False)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        return _fixed(fmt, values, np.float32(fmt.step))  # type: ignore[attr-defined]


class UlawCodec(Codec):
    """``quantized_ulaw``: a non-uniform table; codes index the table of every level.

    The table is computed with TensorFlow by the very formula QKeras uses, so
    that each level is bit-identical to what the quantizer outputs.
    """

    def number_format(self, q: Any) -> NumberFormat:
        from ._keras import tf

        t = tf()
        m = 2 ** (int(q.bits) - 1)
        m_i = 2 ** int(q.integer)
        k = t.constant(np.arange(0, m + 1, dtype=np.float32))
        rp = 2.0 * (k / m) - 1.0
        u_law = t.sign(rp) * t.keras.backend.log(1 + q.u * t.abs(rp)) / t.keras.backend.log(1 + q.u)
        levels = m_i * t.keras.backend.clip(u_law, -1.0 + (1.0 * q.symmetric) / m, 1.0 - 1.0 / m)
        table = tuple(float(v) for v in np.unique(levels.numpy().astype(np.float32)))
        return LookupTable(bits=int(q.bits), table=table)

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        table = np.asarray(fmt.table, np.float32)  # type: ignore[attr-defined]
        codes = np.searchsorted(table, values).clip(0, len(table) - 1)
        return Encoding(fmt, codes.astype(np.int64), np.ones((), np.float32))


class Po2Codec(Codec):
    """``quantized_po2`` / ``quantized_relu_po2``: exponent codes and sign codes."""

    def number_format(self, q: Any) -> NumberFormat:
        factor = 2 if q.quadratic_approximation else 1
        negative = getattr(q, "negative_slope", -1) != 0
        return PowerOfTwo(
            bits=int(q.bits),
            exponent_min=factor * int(q._min_exp),
            exponent_max=factor * int(q._max_exp),
            negative=negative,
        )

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        fmt = self.number_format(q)
        mantissa, exponent = np.frexp(values)
        signs = np.sign(values).astype(np.int8)
        # frexp gives |m| in [0.5, 1): a power of two has |m| == 0.5 and exponent e+1.
        codes = np.where(signs == 0, fmt.code_min, exponent - 1).astype(np.int64)
        off_grid = (signs != 0) & (np.abs(mantissa) != 0.5)
        if off_grid.any():
            codes = np.where(off_grid, np.iinfo(np.int32).min, codes)  # caught by the range check
        return Encoding(fmt, codes, np.ones((), np.float32), signs=signs)


class BinaryCodec(Codec):
    """``binary`` (and ``stochastic_binary`` at inference): codes -1/+1 (0/1) times alpha."""

    def number_format(self, q: Any) -> NumberFormat:
        return Binary(use_01=bool(getattr(q, "use_01", False)))

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        enc = _fixed(self.number_format(q), values, q.scale)
        if enc.format.use_01:  # type: ignore[attr-defined]
            return enc
        # A scale of 0 (alpha="auto" on an all-zero channel) makes every code 0 and the grid says 0, which
        # binary has not: the code is +1, what QKeras's own sign gives a zero weight (every weight there is 0).
        zero_scale = np.broadcast_to(along(enc.scale, enc.scale_axis, values.ndim) == 0, values.shape)
        return replace(enc, codes=np.where(zero_scale & (enc.codes == 0), 1.0, enc.codes))


class TernaryCodec(Codec):
    """``ternary`` (and ``stochastic_ternary`` at inference): codes -1/0/+1 times alpha."""

    def number_format(self, q: Any) -> NumberFormat:
        return Ternary()

    def encode(self, q: Any, values: np.ndarray) -> Encoding:
        return _fixed(self.number_format(q), values, q.scale)


class BernoulliCodec(BinaryCodec):
    """``bernoulli`` samples at random on every call, training or not.

    Its deterministic inference value, used here, is the quantizer's own
    non-stochastic branch: ``scale * (x >= 0)``, codes 0/1.
    """

    def number_format(self, q: Any) -> NumberFormat:
        return Binary(use_01=True)

    def inference(self, q: Any, x: Any) -> Any:
        from qkeras.quantizers import _get_scale

        from ._keras import tf

        t = tf()
        sign = t.sign(x)
        sign += 1.0 - t.abs(sign)
        q01 = (sign + 1.0) / 2.0
        scale = _get_scale(q.alpha, x, q01)
        q.scale = scale
        return scale * q01


_STOCHASTIC = (
    "{name} draws random values during training; qextract uses its deterministic inference "
    "value ({rule})."
)

QUANTIZERS: dict[str, Codec] = {
    "quantized_bits": QuantizedBitsCodec(),
    "quantized_hswish": QuantizedBitsCodec(),
    "quantized_relu": ReluCodec(),
    "quantized_tanh": TanhCodec(),
    "quantized_sigmoid": SigmoidCodec(),
    "quantized_ulaw": UlawCodec(),
    "quantized_po2": Po2Codec(),
    "quantized_relu_po2": Po2Codec(),
    "binary": BinaryCodec(),
    "ternary": TernaryCodec(),
    "stochastic_binary": BinaryCodec(
        stochastic_note=_STOCHASTIC.format(name="stochastic_binary", rule="binary's sign, as at inference")
    ),
    "stochastic_ternary": TernaryCodec(
        stochastic_note=_STOCHASTIC.format(name="stochastic_ternary", rule="ternary's threshold, as at inference")
    ),
    "bernoulli": BernoulliCodec(
        stochastic_note=_STOCHASTIC.format(name="bernoulli", rule="scale * (x >= 0), codes 0/1")
    ),
}
"""Every supported quantizer class name -> its codec. Add a family here."""


def codec_for(q: Any, where: str = "") -> Codec:
    """The codec of quantizer ``q``; an UnsupportedError naming it and ``where`` otherwise."""
    name = type(q).__name__
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise UnsupportedError(
            f"{where + ': ' if where else ''}quantizer {name} ({describe(q)}) is not supported; "
            f"supported: {', '.join(sorted(QUANTIZERS))}. Fix: use one of these, or add a codec "
            "to qextract.quantizers.QUANTIZERS."
        ) from None


def is_quantizer(obj: Any) -> bool:
    """True for any QKeras quantizer object, registered or not."""
    from ._keras import qkeras

    return isinstance(obj, qkeras().quantizers.BaseQuantizer)


def apply(q: Any, raw: np.ndarray, where: str = "") -> tuple[np.ndarray, Any]:
    """Run quantizer ``q`` on ``raw`` exactly as the layer does, without touching ``q``.

    The quantizer is shallow-copied first: calling a QKeras quantizer stores
    its scale on itself, and extraction must not change the model's objects.
    Returns the output as float32 NumPy and the copy (holding ``.scale``).
    """
    from ._keras import tf

    codec = codec_for(q, where)
    if codec.stochastic_note:
        warnings.warn(f"{where}: {codec.stochastic_note}", QExtractWarning, stacklevel=3)
    qc = copy.copy(q)
    try:
        out = _run(codec, qc, tf().constant(raw, dtype=tf().float32))
    except QExtractError:
        raise
    except Exception as e:  # noqa: BLE001 - QKeras fails with anything from AssertionError to TF errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UnsupportedError(
            f"{where}: QKeras's own {describe(q)} fails on this tensor ({type(e).__name__}: {first}). "
            "Fix: correct the quantizer configuration; the layer cannot run with it either."
        ) from None
    return np.asarray(out, dtype=np.float32), qc


# Tensors at least this large run the quantizer as a traced graph (as the layer does inside
# model.predict): about 35 % faster than op-by-op eager execution, but each new quantizer
# configuration costs one trace, which only large tensors repay. Only configurations whose
# arithmetic is exact in any order take this path (Codec.graph_safe): for those the graph
# gives the same bits as QKeras's eager call, which tests check.
GRAPH_MIN_SIZE = 1 << 18


def qkeras_variables(q: Any) -> bool:
    """True where the quantizer holds tf.Variables (``use_variables``, adaptive integer bits)."""
    return bool(getattr(q, "use_variables", False)) or any(hasattr(v, "assign") for v in vars(q).values())


def _run(codec: Codec, qc: Any, x: Any) -> Any:
    """``codec.inference(qc, x)``; as a cached graph for large tensors where that is bit-identical."""
    key = _graph_key(qc, x) if codec.graph_safe(qc) else None
    if key is None:
        return codec.inference(qc, x)
    fn = _GRAPHS.get(key)
    if fn is None:
        fn = _GRAPHS[key] = _trace(codec, copy.copy(qc), x.shape.rank)
    out, scale = fn(x)
    qc.scale = scale.numpy()
    return out


_GRAPHS: dict[tuple, Any] = {}


def _trace(codec: Codec, template: Any, rank: int) -> Any:
    from ._keras import tf

    t = tf()

    def run(x: Any) -> tuple[Any, Any]:
        q = copy.copy(template)
        out = codec.inference(q, x)
        scale = 1.0 if getattr(q, "scale", None) is None else q.scale
        return out, t.cast(t.convert_to_tensor(scale), t.float32)

    return t.function(run, input_signature=[t.TensorSpec([None] * rank, t.float32)])


def _graph_key(q: Any, x: Any) -> tuple | None:
    """A hashable snapshot of everything the quantizer's call reads, or None (run eagerly)."""
    if x.shape.num_elements() is None or x.shape.num_elements() < GRAPH_MIN_SIZE:
        return None
    items: list[tuple[str, Any]] = [("class", type(q)), ("rank", x.shape.rank)]
    for name, value in sorted(vars(q).items()):
        if name == "scale" or name.startswith("_self_"):  # _self_*: TF object tracking, not maths
            continue
        if hasattr(value, "numpy"):
            value = value.numpy()
        if isinstance(value, np.ndarray):
            value = (value.dtype.str, value.shape, value.tobytes())
        try:
            hash(value)
        except TypeError:
            return None
        items.append((name, value))
    return tuple(items)


def number_format(q: Any, where: str = "") -> NumberFormat:
    """The number format ``q`` produces, from its configuration alone."""
    return codec_for(q, where).number_format(q)


def ste_explains(raw: np.ndarray, grid: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Where QKeras's straight-through form ``x + (xq - x)`` turned ``grid`` into ``out``.

    In float32 that sum is not always ``xq`` again when ``xq`` lies far from
    ``x`` (clipped weights with a non-power-of-two scale): the layer then
    computes with a value off the grid by rounding. Returns a boolean mask.
    """
    x = raw.astype(np.float32)
    ste = (x + (grid.astype(np.float32) - x)).astype(np.float32)
    return ste == out

