"""Golden test vectors: each chosen layer's input and output codes for N samples, in the files a testbench reads.

:func:`write_vectors` writes, into a folder built beside its target and
renamed into place only when complete (as an export is):

- ``vectors.npz``: per tensor ``<layer>/<side>`` (side ``input`` or
  ``output``) its decoded float32 values, and for a side on a grid
  ``:codes`` (the format's smallest integer dtype), ``:scale`` (float64)
  and for powers of two ``:signs``;
- ``<layer>.<side>.mem``: one code per line in ``$readmemh`` hex, with the
  same storage words as the weight ``.mem`` files (two's complement at the
  format's bits, po2 flag words, float32 bits of a float), samples one after
  another, each in C order (channels last);
- ``tb_data/tb_input_features.dat`` and ``tb_data/tb_output_predictions.dat``:
  hls4ml's testbench files (the first layer's input, the last layer's
  output; see :mod:`qextract.network.testbench`);
- ``vectors.json``: what every file holds (:mod:`qextract.network.vector_manifest`).

:func:`read_vectors` reads every file back, each with its own reader, and
requires them all to hold the same codes.

>>> d1 = LayerVectors("d1", x_codes, FixedPoint(8, 0), 2**-7, y_codes, FixedPoint(6, 2), 2**-3)  # doctest: +SKIP
>>> write_vectors([d1], "vectors", samples=100)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._atomic import atomic_dir
from ..errors import ExportError, UsageError, VerificationError
from ..numformat import NumberFormat
from ..writers import FORMATS, Codes, Entry, _words
from ..writers.memory import _mem_frame  # the .mem syntax of the weight files (words framed one per line)
from . import testbench
from .vector_folder import check_listed, previous_vectors, read_manifest, verified_path
from .vector_manifest import LAYOUT, SIDES, VectorFile, VectorsManifest, VectorTensor, axes_of

__all__ = ["LayerVectors", "VectorsResult", "read_vectors", "write_vectors"]

MANIFEST = "vectors.json"
NPZ = "vectors.npz"
TB_INPUT = "tb_data/tb_input_features.dat"
TB_OUTPUT = "tb_data/tb_output_predictions.dat"


@dataclass(frozen=True, eq=False)
class LayerVectors:
    """One layer's input and output for N samples, as integer codes on a grid (or float values off it).

    ``*_codes``: int64, shape ``(N, ...)`` channels last; ``*_scale``: one
    number, or one per channel (the last axis); ``value = decode(code) *
    scale`` as the format says. A side not on a grid has format
    :data:`~qextract.numformat.FLOAT32`, codes None and float ``*_values``
    (written as float32, flagged ``exact_integer: false``). Powers of two
    carry ``*_signs`` (-1/0/+1) beside their exponent codes. Everything is
    checked on construction (UsageError naming the layer and side).
    """

    name: str
    input_codes: np.ndarray | None
    input_format: NumberFormat
    input_scale: np.ndarray | float
    output_codes: np.ndarray | None
    output_format: NumberFormat
    output_scale: np.ndarray | float
    input_values: np.ndarray | None = None
    output_values: np.ndarray | None = None
    input_signs: np.ndarray | None = None
    output_signs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"a layer's vectors need its name, not {self.name!r}")
        for side in SIDES:
            for attr, value in zip(("codes", "scale", "values", "signs"), _checked(self, side)):
                object.__setattr__(self, f"{side}_{attr}", value)
        n_in, n_out = self.shape("input")[0], self.shape("output")[0]
        if n_in != n_out:
            raise UsageError(f"layer '{self.name}': {n_in} input samples but {n_out} output samples")

    @property
    def samples(self) -> int:
        return self.shape("input")[0]

    def shape(self, side: str) -> tuple[int, ...]:
        array = getattr(self, f"{side}_codes")
        return tuple((array if array is not None else getattr(self, f"{side}_values")).shape)

    def values(self, side: str) -> np.ndarray:
        """The real values of ``side``, float32, as the layer computes with them (the format's decode)."""
        fmt: NumberFormat = getattr(self, f"{side}_format")
        codes = getattr(self, f"{side}_codes")
        if codes is None:
            return np.asarray(getattr(self, f"{side}_values"), np.float32)
        return fmt.decode(codes, getattr(self, f"{side}_scale"), getattr(self, f"{side}_signs"))

    def stored(self, side: str, samples: int | None = None) -> Codes:
        """What the files hold for ``side`` (codes in the format's dtype, or float32 values), first ``samples``."""
        fmt: NumberFormat = getattr(self, f"{side}_format")
        cut = slice(None, samples)
        codes, signs = getattr(self, f"{side}_codes"), getattr(self, f"{side}_signs")
        if codes is None:
            return Codes(np.asarray(getattr(self, f"{side}_values"), np.float32)[cut])
        return Codes(codes[cut].astype(fmt.code_dtype), None if signs is None else signs[cut].astype(np.int8))

    def __repr__(self) -> str:
        sides = ", ".join(f"{s} {self.shape(s)} {getattr(self, f'{s}_format')}" for s in SIDES)
        return f"LayerVectors('{self.name}': {sides})"


def _checked(lv: LayerVectors, side: str) -> tuple[Any, ...]:
    """``side``'s (codes int64, scale float64, values float32, signs int8), checked against its format."""
    where = f"layer '{lv.name}' {side}"
    fmt = getattr(lv, f"{side}_format")
    codes, scale, values, signs = (getattr(lv, f"{side}_{a}") for a in ("codes", "scale", "values", "signs"))
    if not isinstance(fmt, NumberFormat):
        raise UsageError(f"{where}: format must be a NumberFormat, not {type(fmt).__name__}")
    if not fmt.quantized:
        if codes is not None or values is None:
            raise UsageError(f"{where}: format {fmt} is not on a grid; give its float values, not codes")
        v = np.asarray(values)
        if v.ndim < 1 or not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
            raise UsageError(
                f"{where}: values must be a finite float array of shape (N, ...), found {v.dtype}{list(v.shape)}"
            )
        return None, np.ones((), np.float64), v.astype(np.float32), None
    if codes is None or values is not None:
        raise UsageError(
            f"{where}: format {fmt} is on a grid; give its codes and no values (they follow from the codes)"
        )
    c = np.asarray(codes)
    if c.ndim < 1 or not (np.issubdtype(c.dtype, np.integer) or c.dtype == bool):
        raise UsageError(f"{where}: codes must be an integer array of shape (N, ...), found {c.dtype}{list(c.shape)}")
    if fmt.has_signs != (signs is not None):
        raise UsageError(f"{where}: format {fmt} {'needs' if fmt.has_signs else 'takes no'} signs")
    s = None if signs is None else np.asarray(signs)
    if s is not None and s.shape != c.shape:
        raise UsageError(f"{where}: signs {list(s.shape)} do not match codes {list(c.shape)}")
    try:
        fmt.check(c.astype(np.int64), s)
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    sc = np.asarray(scale, np.float64)
    if sc.ndim == 1 and sc.size == 1:
        sc = sc.reshape(())
    if not (sc.ndim == 0 or (sc.ndim == 1 and sc.size == c.shape[-1] and c.ndim > 1)):
        raise UsageError(f"{where}: scale {list(sc.shape)} is neither one number nor one per channel ({c.shape[-1]})")
    if not (np.isfinite(sc).all() and (sc > 0).all()):
        raise UsageError(f"{where}: scale must be positive and finite")
    return c.astype(np.int64), sc, None, None if s is None else s.astype(np.int8)


@dataclass(frozen=True)
class VectorsResult:
    """Where the vectors went and what ``vectors.json`` says."""

    out_dir: Path
    manifest: VectorsManifest
    files: tuple[Path, ...]

    def __repr__(self) -> str:
        m = self.manifest
        return f"VectorsResult('{self.out_dir}': {len(m.layers)} layers, {m.samples} samples, {len(self.files)} files)"


def write_vectors(
    layers: Sequence[LayerVectors],
    out: str | os.PathLike[str],
    *,
    samples: int | None = None,
    force: bool = False,
    model_name: str = "model",
    protect: Iterable[str | os.PathLike[str]] = (),
) -> VectorsResult:
    """Write the first ``samples`` (default all) samples of each of ``layers`` into the folder ``out``.

    ``layers`` are in network order: the testbench files hold the first
    layer's input and the last layer's output. An existing non-empty ``out``
    is refused unless ``force``, and even then only a previous vectors folder
    (its ``vectors.json`` and the files it lists) is replaced, never a folder
    that is, holds or is linked to from one of ``protect`` (the model and
    data files). Nothing is left behind on failure.
    """
    layers = list(layers)
    n = _check_layers(layers, samples)
    protect = [protect] if isinstance(protect, (str, os.PathLike)) else [p for p in protect if p is not None]
    stems = _stems([lv.name for lv in layers])
    with atomic_dir(out, force=force, protect=protect, replaceable=previous_vectors) as tmp:
        try:
            tensors, files = _write(tmp, layers, stems, n, model_name)
        except OSError as e:
            raise ExportError(f"{out}: writing failed ({e.strerror or e}); nothing was left behind") from None
        manifest = VectorsManifest(
            __version__,
            model_name,
            n,
            tuple(lv.name for lv in layers),
            tuple(tensors),
            tuple(files),
            {"input": f"{layers[0].name}/input", "output": f"{layers[-1].name}/output"},
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n", encoding="utf-8")
    root = Path(out)
    return VectorsResult(root, manifest, (*(root / f.path for f in files), root / MANIFEST))


def _check_layers(layers: list[LayerVectors], samples: int | None) -> int:
    """The sample count to write; UsageError for no layers, repeated names, differing counts or a bad ``samples``."""
    if not layers or not all(isinstance(lv, LayerVectors) for lv in layers):
        raise UsageError("write_vectors needs a non-empty sequence of LayerVectors")
    names = [lv.name for lv in layers]
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated:
        raise UsageError(f"layer(s) {', '.join(map(repr, repeated))} given more than once")
    counts = {lv.name: lv.samples for lv in layers}
    if len(set(counts.values())) != 1:
        raise UsageError(f"the layers hold different sample counts: {counts}")
    available = layers[0].samples
    if samples is None:
        samples = available
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= available:
        raise UsageError(f"samples must be a whole number from 1 to {available} (the samples held), not {samples!r}")
    for lv in layers:
        for side in SIDES:
            if int(np.prod(lv.shape(side)[1:], dtype=np.int64)) == 0:
                raise UsageError(f"layer '{lv.name}' {side} has no elements per sample {lv.shape(side)}")
    return int(samples)


def _stems(names: list[str]) -> list[str]:
    """Each layer name safe as a file name, unique case-insensitively (as the weight files' stems are)."""
    out: list[str] = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "_"
        candidate, k = stem, 1
        while candidate.lower() in {s.lower() for s in out}:
            k += 1
            candidate = f"{stem}_{k}"
        out.append(candidate)
    return out


def _write(
    root: Path, layers: list[LayerVectors], stems: list[str], n: int, model: str
) -> tuple[list[VectorTensor], list[VectorFile]]:
    arrays: dict[str, np.ndarray] = {}
    tensors: list[VectorTensor] = []
    written: list[tuple[str, str, tuple[str, ...]]] = []  # path, kind, tensors
    for lv, stem in zip(layers, stems):
        for side in SIDES:
            key, fmt, stored = f"{lv.name}/{side}", getattr(lv, f"{side}_format"), lv.stored(side, n)
            scale = getattr(lv, f"{side}_scale")
            names = {"values": key, "codes": None, "scale": None, "signs": None}
            arrays[key] = lv.values(side)[:n].astype(np.float32)
            if fmt.quantized:
                names.update(codes=f"{key}:codes", scale=f"{key}:scale")
                arrays[f"{key}:codes"], arrays[f"{key}:scale"] = stored.codes, scale
            if stored.signs is not None:
                names["signs"] = f"{key}:signs"
                arrays[f"{key}:signs"] = stored.signs
            mem = f"{stem}.{side}.mem"
            axis = None if scale.ndim == 0 else len(stored.codes.shape) - 1
            tensor = VectorTensor(
                lv.name, side, stored.codes.shape, fmt, tuple(np.atleast_1d(scale).tolist()), axis, names, (NPZ, mem)
            )
            (root / mem).write_bytes(_mem_bytes(tensor, stored, model))
            tensors.append(tensor)
            written.append((mem, "mem", (key,)))
    with open(root / NPZ, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy types a keyword as allow_pickle
    written.insert(0, (NPZ, "npz", tuple(t.key for t in tensors)))
    (root / "tb_data").mkdir()
    for path, kind, lv, side in (
        (TB_INPUT, "tb_input", layers[0], "input"),
        (TB_OUTPUT, "tb_output", layers[-1], "output"),
    ):
        (root / path).write_bytes(testbench.render(lv.values(side)[:n]))
        written.append((path, kind, (f"{lv.name}/{side}",)))
    files = []
    for path, kind, keys in written:
        data = (root / path).read_bytes()
        files.append(VectorFile(path, kind, hashlib.sha256(data).hexdigest(), len(data), keys))
    return tensors, files


def _mem_bytes(t: VectorTensor, stored: Codes, model: str) -> bytes:
    """The tensor's ``.mem``: a comment saying what it holds, then one storage word per line (weight-file rules)."""
    fmt = t.format
    try:
        words = fmt.to_storage(stored.codes, stored.signs)
    except ValueError as e:
        raise ExportError(f"{t.key}: {e}") from None
    memory = _words.pack(words, fmt.storage_bits, fmt.storage_bits)
    scale = t.scale_array
    scale_text = (
        f"{float(scale)!r}" if scale.ndim == 0 else f"per channel (last axis), {scale.size} values in {MANIFEST}"
    )
    shape = "x".join(map(str, t.shape))
    comment = [
        f"qextract {model} vectors: {t.key}",
        f"layout {LAYOUT}: axes {axes_of(len(t.shape))}, shape {shape}, sample after sample, each in C order",
        f"format {fmt}{'' if t.exact_integer else ' (not on a grid: exact_integer false)'}; "
        f"{fmt.value_rule('scale' if scale.ndim == 0 else 'scale[channel]')}; scale {scale_text}",
        f"code: {fmt.storage_rule()}",
        f"memory: {memory.describe()}",
    ]
    text = "".join(f"// {_printable(line)}\n" for line in comment)
    return text.encode() + _mem_frame(memory)


def _printable(text: str) -> str:
    """One comment line: a layer name's control characters would end the comment early."""
    return "".join(c if c.isprintable() else "?" for c in text)


def read_vectors(path: str | os.PathLike[str]) -> dict[str, LayerVectors]:
    """Every layer's vectors from a folder :func:`write_vectors` wrote, by layer name, in order.

    Every file is read with its own reader and must hold the same codes: the
    npz codes (and its values equal their decode), each ``.mem`` (the weight
    files' reader), and the testbench files (their values equal the decode,
    as a float). Each listed path must stay inside the folder (no absolute
    paths, ``..`` or symlinks out) and match its sha256; an unlisted file is
    refused. NotAnExportError when ``path`` holds no vectors.json written by
    qextract; VerificationError naming the file otherwise.
    """
    root = Path(path)
    manifest = read_manifest(root, MANIFEST)
    for f in manifest.files:
        verified_path(root, MANIFEST, f.path, f.sha256)
    check_listed(root, MANIFEST, [f.path for f in manifest.files])
    npz = next(f.path for f in manifest.files if f.kind == "npz")
    stored = {t.key: _read_npz(root / npz, t) for t in manifest.tensors}
    for t in manifest.tensors:
        mem = next(p for p in t.files if p != npz)
        entry = Entry(t.key, t.layer, t.side, t.shape, t.format)
        _agree(root / mem, t, stored[t.key], FORMATS["mem"].read(root / mem, entry), npz)
    for f in manifest.files:
        if f.kind.startswith("tb_"):
            t = manifest.tensor(f.tensors[0])
            _check_testbench(root / f.path, t, _decode(t, stored[t.key]))
    out: dict[str, LayerVectors] = {}
    for layer in manifest.layers:
        sides = {s: (manifest.tensor(f"{layer}/{s}"), stored[f"{layer}/{s}"]) for s in SIDES}
        kwargs: dict[str, Any] = {}
        for s, (t, c) in sides.items():
            exact = t.exact_integer
            kwargs.update(
                {
                    f"{s}_codes": c.codes.astype(np.int64) if exact else None,
                    f"{s}_format": t.format,
                    f"{s}_scale": t.scale_array,
                    f"{s}_values": None if exact else c.codes,
                    f"{s}_signs": c.signs,
                }
            )
        out[layer] = LayerVectors(layer, **kwargs)
    return out


def _read_npz(path: Path, t: VectorTensor) -> Codes:
    """``t``'s codes (float32 values for a float side) from the npz, whose stored values must equal their decode."""
    fmt = t.format
    try:
        with np.load(path, allow_pickle=False) as z:
            values = _array(z, t.npz["values"], np.dtype(np.float32), t.shape)
            if not t.exact_integer:
                return Codes(values)
            codes = _array(z, t.npz["codes"], fmt.code_dtype, t.shape)
            signs = _array(z, t.npz["signs"], np.dtype(np.int8), t.shape) if fmt.has_signs else None
            scale = _array(z, t.npz["scale"], np.dtype(np.float64), t.scale_array.shape)
        checked = Codes(*fmt.check(codes, signs))
    except (OSError, ValueError, EOFError) as e:
        raise VerificationError(
            f"{path}: {t.key}: {e}; the file does not hold these vectors as qextract wrote them"
        ) from None
    if not np.array_equal(scale, t.scale_array):
        raise VerificationError(f"{path}: {t.key}: its scale differs from the one {MANIFEST} records")
    _agree(path, t, Codes(_decode(t, checked)), Codes(values), f"the decode of its own codes ({t.npz['codes']})", True)
    return checked


def _array(z: Any, name: str | None, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if name is None or name not in z.files:
        raise ValueError(f"no array {name!r}")
    a = z[name]
    if a.dtype != dtype or a.shape != shape:
        raise ValueError(f"{name!r} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")
    return a


def _decode(t: VectorTensor, c: Codes) -> np.ndarray:
    return t.format.decode(c.codes, t.scale_array, c.signs) if t.exact_integer else c.codes


def _agree(path: Path, t: VectorTensor, ours: Codes, theirs: Codes, first: str, values: bool = False) -> None:
    """VerificationError at the first element where ``path`` (``theirs``) differs from ``first`` (``ours``).

    ``values``: the arrays are decoded values (float32, compared by their bits), not codes.
    """
    differ = ours.first_difference(theirs)
    if differ is not None:
        index, what, a, b = differ
        what = "value" if values or not t.exact_integer else what
        at = tuple(int(i) for i in np.unravel_index(index, t.shape))
        raise VerificationError(
            f"{path}: {t.key} holds {what} {b} at index {index} {at} (sample {at[0]}), but {first} holds {a}; "
            "the vector files disagree (write them again, or find what changed this file)"
        )


def _check_testbench(path: Path, t: VectorTensor, expected: np.ndarray) -> None:
    try:
        values = testbench.parse(path.read_bytes(), t.shape)
    except (OSError, ValueError) as e:
        raise VerificationError(f"{path}: {t.key}: {e}; not the testbench file qextract wrote") from None
    _agree(path, t, Codes(np.asarray(expected, np.float32)), Codes(values), f"the decode of {NPZ}", True)
