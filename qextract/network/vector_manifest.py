"""``vectors.json`` as typed data: what a golden-vectors folder holds, file by file.

:func:`qextract.network.vectors.write_vectors` builds a
:class:`VectorsManifest` and writes its :meth:`~VectorsManifest.to_json`;
:func:`~qextract.network.vectors.read_vectors` reads it back with
:meth:`~VectorsManifest.from_json`, which checks every field's type and the
cross references (each tensor's files are listed, each file names tensors
that exist) before anything is read, so a damaged manifest is one
VerificationError naming the field, not a KeyError deep in a reader.

Every tensor is one side (``input`` or ``output``) of one layer, keyed
``<layer>/<side>``, with shape ``(N, ...)``: samples first, then the layer's
own axes channels last (NC, NLC, NHWC, NDHWC: see :data:`AXES`).
``exact_integer`` is false for a side that is not on a grid (float values,
written as float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._folder import FolderKind
from ..errors import VerificationError
from ..numformat import NumberFormat, from_description

MANIFEST = "vectors.json"
KIND = "vectors"
"""The ``kind`` every vectors.json carries, so that it is never mistaken for an export's manifest."""
VECTORS = FolderKind(
    manifest=MANIFEST,
    tag=KIND,
    suffixes=(".npz", ".mem", ".dat", ".json"),  # what write_vectors names its files
    what="vectors folder",
    folder="vectors folder",
    argument="out",
    reader="read_vectors",
    since="writing",
    again="write the vectors again",
    read_fix=f"Fix: give the folder write_vectors wrote (its out; it holds {MANIFEST}).",
)
"""What read_vectors and write_vectors trust a vectors folder by (the rules of an export folder)."""
LAYOUT = "NHWC"
"""Samples first, then the layer's axes in Keras's channels-last order."""
AXES = {1: "N", 2: "NC", 3: "NLC", 4: "NHWC", 5: "NDHWC"}
"""Axis letters of a tensor by its rank (N samples, L steps, D/H/W space, C channels)."""
SIDES = ("input", "output")
FILE_KINDS = ("npz", "mem", "tb_input", "tb_output")
"""What a listed file is: the npz of every tensor, one tensor's .mem, hls4ml's testbench input or output."""


def read_manifest(root: Path) -> VectorsManifest:
    """The manifest of the vectors folder ``root``.

    NotAnExportError unless qextract wrote ``root``'s vectors.json for
    vectors; VerificationError naming the field when it breaks the format
    (it was changed after it was written).
    """
    document = VECTORS.read_document(root)
    try:
        return VectorsManifest.from_json(document)
    except VerificationError as e:
        raise VerificationError(f"{root / MANIFEST}: {e}; the manifest was changed after it was written") from None


def axes_of(ndim: int) -> str:
    """Axis letters of a rank-``ndim`` tensor; ``N`` then ``X`` for ranks with no name."""
    return AXES.get(ndim, "N" + "X" * (ndim - 1))


@dataclass(frozen=True)
class VectorTensor:
    """One side of one layer for every sample, and where it is stored.

    ``scale`` holds one value (``scale_axis`` None) or one per channel along
    ``scale_axis`` (the last axis). ``npz`` names the arrays of
    ``vectors.npz``: ``values`` (float32, always), ``codes``, ``scale`` and
    ``signs`` (None where the side has none).
    """

    layer: str
    side: str
    shape: tuple[int, ...]
    format: NumberFormat
    scale: tuple[float, ...]
    scale_axis: int | None
    npz: Mapping[str, str | None]
    files: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.side}"

    @property
    def exact_integer(self) -> bool:
        return self.format.quantized

    @property
    def scale_array(self) -> np.ndarray:
        """The scale as a float64 array of shape ``()`` or ``(C,)``."""
        a = np.asarray(self.scale, np.float64)
        return a.reshape(()) if self.scale_axis is None else a

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "layer": self.layer,
            "side": self.side,
            "shape": list(self.shape),
            "axes": axes_of(len(self.shape)),
            "exact_integer": self.exact_integer,
            "format": self.format.describe(),
            "value_rule": self.format.value_rule("scale[channel]" if self.scale_axis is not None else "scale"),
            "ap_type": self.format.ap_type(self.scale_array) if self.exact_integer else None,
            "code_dtype": str(self.format.code_dtype) if self.exact_integer else None,
            "scale": {"values": list(self.scale), "axis": self.scale_axis},
            "npz": dict(self.npz),
            "files": list(self.files),
        }


@dataclass(frozen=True)
class VectorFile:
    """One file of the folder: its path (relative, posix), what it is, its hash and the tensors it holds."""

    path: str
    kind: str
    sha256: str
    bytes: int
    tensors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "tensors": list(self.tensors),
        }


@dataclass(frozen=True)
class VectorsManifest:
    """Everything ``vectors.json`` says; ``from_json(m.to_json()) == m``."""

    qextract_version: str
    model: str
    samples: int
    layers: tuple[str, ...]
    tensors: tuple[VectorTensor, ...]
    files: tuple[VectorFile, ...]
    testbench: Mapping[str, str]

    def tensor(self, key: str) -> VectorTensor:
        return next(t for t in self.tensors if t.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "qextract_version": self.qextract_version,
            "kind": KIND,
            "model": self.model,
            "layout": LAYOUT,
            "samples": self.samples,
            "layers": list(self.layers),
            "testbench": {
                **self.testbench,
                "reads": "hls4ml myproject_test.cpp: one sample per line, values separated by spaces, "
                "each read with atof into a float; samples flattened in C order (channels last)",
            },
            "tensors": [t.to_json() for t in self.tensors],
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VectorsManifest:
        """The manifest ``d`` describes; VerificationError naming the first field that is missing or wrong."""
        if d.get("kind") != KIND or d.get("layout") != LAYOUT:
            raise VerificationError(f"kind must be {KIND!r} and layout {LAYOUT!r}")
        samples = _get(d, "samples", int, "$")
        if samples < 1:
            raise VerificationError(f"field $.samples: {samples} is not a positive sample count")
        layers = tuple(_strings(_get(d, "layers", list, "$"), "$.layers"))
        files = tuple(_file(f, f"$.files[{i}]") for i, f in enumerate(_get(d, "files", list, "$")))
        tensors = tuple(_tensor(t, f"$.tensors[{i}]", samples) for i, t in enumerate(_get(d, "tensors", list, "$")))
        bench = _get(d, "testbench", dict, "$")
        testbench = {k: _get(bench, k, str, "$.testbench") for k in SIDES}
        m = cls(
            _get(d, "qextract_version", str, "$"),
            _get(d, "model", str, "$"),
            samples,
            layers,
            tensors,
            files,
            testbench,
        )
        _check_references(m)
        return m


def _check_references(m: VectorsManifest) -> None:
    """Layers, tensors and files name each other consistently (and each only once)."""
    keys = [t.key for t in m.tensors]
    expected = [f"{layer}/{side}" for layer in m.layers for side in SIDES]
    if keys != expected or len(set(keys)) != len(keys):
        raise VerificationError(f"field $.tensors: keys {keys[:6]} are not the input and output of each of $.layers")
    paths = [f.path for f in m.files]
    if len(set(paths)) != len(paths):
        raise VerificationError("field $.files: a path is listed twice")
    by_path = {f.path: f for f in m.files}
    for t in m.tensors:
        kinds = sorted(by_path[p].kind for p in t.files if p in by_path)
        if len(kinds) != len(t.files) or kinds != ["mem", "npz"]:
            raise VerificationError(
                f"tensor {t.key!r}: files {list(t.files)} are not one listed npz and one listed mem"
            )
        if any(t.key not in by_path[p].tensors for p in t.files):
            raise VerificationError(f"tensor {t.key!r}: a file it names does not list it among its tensors")
    for f in m.files:
        unknown = [k for k in f.tensors if k not in keys]
        if unknown:
            raise VerificationError(f"file {f.path!r} holds tensor(s) {unknown[:3]} that $.tensors does not list")
    bench = {"tb_input": m.testbench["input"], "tb_output": m.testbench["output"]}
    for kind, key in bench.items():
        listed = [f for f in m.files if f.kind == kind]
        if len(listed) != 1 or listed[0].tensors != (key,):
            raise VerificationError(f"field $.files: expected one {kind} file holding {key!r}")
    if m.layers and (bench["tb_input"] != f"{m.layers[0]}/input" or bench["tb_output"] != f"{m.layers[-1]}/output"):
        raise VerificationError("field $.testbench: not the first layer's input and the last layer's output")


def _get(d: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = d.get(name) if isinstance(d, Mapping) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VerificationError(f"field {where}.{name}: expected {kind.__name__}, found {type(value).__name__}")
    return value


def _strings(items: list[Any], where: str) -> list[str]:
    if not all(isinstance(s, str) and s for s in items):
        raise VerificationError(f"field {where}: expected non-empty strings")
    return items


def _file(d: Any, where: str) -> VectorFile:
    kind = _get(d, "kind", str, where)
    if kind not in FILE_KINDS:
        raise VerificationError(f"field {where}.kind: {kind!r} is not one of {', '.join(FILE_KINDS)}")
    digest = _get(d, "sha256", str, where)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise VerificationError(f"field {where}.sha256: not a sha256 hex digest")
    tensors = tuple(_strings(_get(d, "tensors", list, where), f"{where}.tensors"))
    return VectorFile(_get(d, "path", str, where), kind, digest, _get(d, "bytes", int, where), tensors)


def _tensor(d: Any, where: str, samples: int) -> VectorTensor:
    side = _get(d, "side", str, where)
    if side not in SIDES:
        raise VerificationError(f"field {where}.side: {side!r} is not input or output")
    shape = tuple(_get(d, "shape", list, where))
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise VerificationError(f"field {where}.shape: {list(shape)} is not a list of positive sizes")
    if shape[0] != samples:
        raise VerificationError(f"field {where}.shape: {shape[0]} samples, $.samples says {samples}")
    try:
        fmt = from_description(_get(d, "format", dict, where))
    except (ValueError, TypeError) as e:
        raise VerificationError(f"field {where}.format: {e}") from None
    scale_d = _get(d, "scale", dict, where)
    values = _get(scale_d, "values", list, f"{where}.scale")
    axis = scale_d.get("axis")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in values):
        raise VerificationError(f"field {where}.scale.values: expected positive finite numbers")
    if not (axis is None and len(values) == 1) and not (axis == len(shape) - 1 and len(values) == shape[-1]):
        raise VerificationError(
            f"field {where}.scale: {len(values)} value(s) along axis {axis}; expected one (axis null) "
            f"or {shape[-1]} along the last axis {len(shape) - 1}"
        )
    npz = _get(d, "npz", dict, where)
    names = {k: npz.get(k) for k in ("values", "codes", "scale", "signs")}
    if not all(v is None or isinstance(v, str) for v in names.values()) or names["values"] is None:
        raise VerificationError(f"field {where}.npz: expected array names (values required)")
    if (names["codes"] is None) == fmt.quantized or (names["signs"] is None) == fmt.has_signs:
        raise VerificationError(f"field {where}.npz: the arrays named do not fit format {fmt}")
    files = tuple(_strings(_get(d, "files", list, where), f"{where}.files"))
    tensor = VectorTensor(_get(d, "layer", str, where), side, shape, fmt, tuple(map(float, values)), axis, names, files)
    if d.get("key") != tensor.key:
        raise VerificationError(f"field {where}.key: {d.get('key')!r} is not {tensor.key!r}")
    return tensor
