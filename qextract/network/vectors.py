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
requires them all to hold the same codes. Both trust the folder by the
rules of an export folder (:mod:`qextract._folder`, here
:data:`~qextract.network.vector_manifest.VECTORS`); what one layer's vectors
are is :class:`~qextract.network.layer_vectors.LayerVectors`.

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
from ..writers import FORMATS, Codes, Entry, _words
from ..writers.memory import _mem_frame  # the .mem syntax of the weight files (words framed one per line)
from . import testbench
from .layer_vectors import LayerVectors
from .vector_manifest import (
    LAYOUT,
    MANIFEST,
    SIDES,
    VECTORS,
    VectorFile,
    VectorsManifest,
    VectorTensor,
    axes_of,
    read_manifest,
)

__all__ = ["LayerVectors", "VectorsResult", "read_vectors", "write_vectors"]

NPZ = "vectors.npz"
TB_INPUT = "tb_data/tb_input_features.dat"
TB_OUTPUT = "tb_data/tb_output_predictions.dat"


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
    replaceable = VECTORS.check_replaceable
    with atomic_dir(out, force=force, protect=protect, replaceable=replaceable, argument=VECTORS.argument) as tmp:
        try:
            tensors, files = _write(tmp, layers, stems, n, model_name)
        except OSError as e:
            raise ExportError(
                f"{out}: writing failed ({e.strerror or e}); nothing was left behind. "
                "Fix: free space or choose another out.",
                arguments=("out",),
            ) from None
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
    manifest = read_manifest(root)
    for i, f in enumerate(manifest.files):
        VECTORS.verified(root, f.path, f.sha256, f"files[{i}].path")
    VECTORS.check_listed(root, [f.path for f in manifest.files])
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
