"""``manifest.json`` as typed data: :class:`Manifest` and its entries, with their JSON form and its JSON Schema.

Export builds a :class:`Manifest` (:mod:`qextract.manifest.building` makes the entries
from an extraction); verification and import read one back. The JSON form is
checked against the schema (``qextract/manifest/schema.json``, shipped with the
package) both ways: :meth:`Manifest.to_json` validates what it is about to
hand out, :meth:`Manifest.from_json` validates before it converts, so a
Manifest object always describes a manifest that follows the schema.

The dataclasses hold tuples where the JSON has arrays; ``to_json`` turns them
back into lists, and ``Manifest.from_json(m.to_json()) == m``. Keys that are
optional in the schema are None when absent and left out again by ``to_json``.

>>> m = Manifest.from_json(json.loads(Path("out/manifest.json").read_text()))  # doctest: +SKIP
>>> m.layers[0].tensors[0].scale.values, m.layers[0].geometry.input_shape  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import VerificationError
from ..layouts import Layout

SCHEMA_VERSION = 1
SCHEMA_FILE = "schema.json"

JSON = dict[str, Any]
"""A JSON object as ``json.loads`` returns it."""


@cache
def schema() -> JSON:
    """The manifest's JSON Schema (shipped with the package)."""
    return json.loads(resources.files("qextract.manifest").joinpath(SCHEMA_FILE).read_text())


def validate(manifest: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``manifest`` (the JSON form) does not follow the schema.

    The error's message starts with the offending field's JSON path (e.g.
    ``$.layers[0].geometry.epsilon``), so that a message's first line names it.
    """
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    error = jsonschema.exceptions.best_match(cls(schema()).iter_errors(manifest))
    if error is not None:
        raise jsonschema.ValidationError(f"field {error.json_path}: {_short(error.message)}")


def _short(message: str, limit: int = 200) -> str:
    """A schema message quotes the offending value, which a hostile manifest can make enormous."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _tuple(value: Any) -> Any:
    """A JSON array as a tuple (nested ones too); anything else as it is."""
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def _list(value: Any) -> Any:
    """The inverse of :func:`_tuple`."""
    return [_list(v) for v in value] if isinstance(value, tuple) else value


def _optional(out: JSON, **values: Any) -> JSON:
    """``out`` with every value that is not None added (as JSON)."""
    out.update({k: _list(v) for k, v in values.items() if v is not None})
    return out


@dataclass(frozen=True)
class FileEntry:
    """One exported file: its path inside the export folder, format, sha256, size and the tensors it holds."""

    path: str
    format: str
    sha256: str
    bytes: int
    tensors: tuple[str, ...] | None = None  # tensor keys; None in manifests that did not record them

    def to_json(self) -> JSON:
        return _optional(
            {"path": self.path, "format": self.format, "sha256": self.sha256, "bytes": self.bytes}, tensors=self.tensors
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileEntry:
        return cls(d["path"], d["format"], d["sha256"], d["bytes"], _tuple(d.get("tensors")))


@dataclass(frozen=True)
class ScaleEntry:
    """A quantized tensor's scale: one number (``axis`` None) or one per index of ``axis`` of the laid-out tensor."""

    values: float | tuple[float, ...]
    axis: int | None
    per_channel: bool
    power_of_two: bool

    @property
    def array(self) -> np.ndarray:
        """The values as float32, shape ``()`` or ``(N,)``: exactly the exported scale."""
        return np.asarray(self.values, np.float32)

    def to_json(self) -> JSON:
        return {
            "values": _list(self.values),
            "axis": self.axis,
            "per_channel": self.per_channel,
            "power_of_two": self.power_of_two,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ScaleEntry:
        return cls(_tuple(d["values"]), d["axis"], d["per_channel"], d["power_of_two"])


@dataclass(frozen=True)
class TensorEntry:
    """One exported tensor: where it is, how it is laid out, its number format and, when quantized, its scale.

    ``format`` is the number format's description (``NumberFormat.describe()``,
    read back by :func:`qextract.writers.number_format`). ``code_dtype`` to
    ``ste_rounded`` are set for a quantized tensor only.
    """

    name: str
    key: str
    layout: Layout
    axes: str
    axis_meaning: dict[str, str]
    shape: tuple[int, ...]
    quantized: bool
    quantizer: str | None
    format: dict[str, Any]
    files: tuple[str, ...]
    notes: tuple[str, ...] | None = ()
    native_shape: tuple[int, ...] | None = None
    dtype: str = "float32"
    code_dtype: str | None = None
    c_type: str | None = None
    scale: ScaleEntry | None = None
    ap_type: str | None = None
    decode: str | None = None
    ste_rounded: int | None = None

    def to_json(self) -> JSON:
        out: JSON = {
            "name": self.name, "key": self.key, "layout": str(self.layout), "axes": self.axes,
            "axis_meaning": dict(self.axis_meaning), "shape": list(self.shape),
        }  # fmt: skip
        _optional(out, native_shape=self.native_shape)
        out.update(
            {"dtype": self.dtype, "quantized": self.quantized, "quantizer": self.quantizer, "format": dict(self.format)}
        )
        out["files"] = list(self.files)
        _optional(out, notes=self.notes, code_dtype=self.code_dtype, c_type=self.c_type)
        if self.scale is not None:  # a quantized tensor's ap_type is recorded even when it has none (null)
            out.update({"scale": self.scale.to_json(), "ap_type": self.ap_type})
        return _optional(out, decode=self.decode, ste_rounded=self.ste_rounded)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorEntry:
        scale = d.get("scale")
        return cls(
            name=d["name"], key=d["key"], layout=Layout.parse(d["layout"]), axes=d["axes"],
            axis_meaning=dict(d["axis_meaning"]), shape=_tuple(d["shape"]), quantized=d["quantized"],
            quantizer=d["quantizer"], format=dict(d["format"]), files=_tuple(d["files"]), notes=_tuple(d.get("notes")),
            native_shape=_tuple(d.get("native_shape")), dtype=d["dtype"], code_dtype=d.get("code_dtype"),
            c_type=d.get("c_type"), scale=None if scale is None else ScaleEntry.from_json(scale),
            ap_type=d.get("ap_type"), decode=d.get("decode"), ste_rounded=d.get("ste_rounded"),
        )  # fmt: skip


@dataclass(frozen=True)
class ActivationEntry:
    """A quantized activation of a layer: its quantizer and number format."""

    name: str
    quantizer: str
    format: dict[str, Any]
    notes: tuple[str, ...] | None = ()

    def to_json(self) -> JSON:
        return _optional(
            {"name": self.name, "quantizer": self.quantizer, "format": dict(self.format)}, notes=self.notes
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActivationEntry:
        return cls(d["name"], d["quantizer"], dict(d["format"]), _tuple(d.get("notes")))


@dataclass(frozen=True)
class Geometry:
    """What a layer's computation needs besides its weights: shapes, strides, padding (explicit too), groups...

    Every field is None when the layer has no such setting. ``explicit_padding``
    maps ``top``/``bottom``/``left``/``right`` (1-D: ``left``/``right``) to pads;
    ``extra`` keeps any key the schema allows that qextract does not write.
    """

    input_shape: tuple[int | None, ...] | None = None
    output_shape: tuple[int | None, ...] | None = None
    strides: tuple[int, ...] | None = None
    dilation_rate: tuple[int, ...] | None = None
    kernel_size: tuple[int, ...] | None = None
    depth_multiplier: int | None = None
    padding: str | None = None
    epsilon: float | None = None
    reset_after: bool | None = None
    pool_size: tuple[int, ...] | None = None
    data_format: str | None = None
    groups: int | None = None
    axis: int | tuple[int, ...] | None = None
    transpose_crop: tuple[dict[str, int], ...] | None = None
    explicit_padding: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def require(self, name: str) -> Any:
        """The value of field ``name``; KeyError naming it when the manifest does not record it."""
        value = getattr(self, name)
        if value is None:
            raise KeyError(name)
        return value

    def to_json(self) -> JSON:
        out = _optional({}, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Geometry:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: _tuple(v) for k, v in d.items() if k in known}
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})


@dataclass(frozen=True)
class LayerEntry:
    """One exported layer: its class and kind, geometry, quantized activations and tensors.

    ``flatten_shape`` (a Dense fed by Flatten) is the shape Flatten received,
    channels last; ``flatten_order`` the order of the flat inputs its exported
    kernel expects (``"HWC"``: Keras/TFLite, ``"CHW"``: PyTorch/ONNX).
    """

    name: str
    class_name: str
    kind: str
    geometry: Geometry
    activations: tuple[ActivationEntry, ...]
    tensors: tuple[TensorEntry, ...]
    flatten_shape: tuple[int, ...] | None = None
    flatten_order: str | None = None

    def to_json(self) -> JSON:
        out = {
            "name": self.name, "class": self.class_name, "kind": self.kind, "geometry": self.geometry.to_json(),
            "activations": [a.to_json() for a in self.activations], "tensors": [t.to_json() for t in self.tensors],
        }  # fmt: skip
        return _optional(out, flatten_shape=self.flatten_shape, flatten_order=self.flatten_order)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerEntry:
        return cls(
            name=d["name"], class_name=d["class"], kind=d["kind"], geometry=Geometry.from_json(d["geometry"]),
            activations=tuple(ActivationEntry.from_json(a) for a in d["activations"]),
            tensors=tuple(TensorEntry.from_json(t) for t in d["tensors"]),
            flatten_shape=_tuple(d.get("flatten_shape")), flatten_order=d.get("flatten_order"),
        )  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """A whole export: its layout, formats, files and layers.

    ``selected_layers`` is None when the export holds every layer of the
    model; otherwise it was restricted to exactly these layers.
    """

    qextract_version: str
    model: str
    layout: Layout
    formats: tuple[str, ...]
    files: tuple[FileEntry, ...]
    layers: tuple[LayerEntry, ...]
    word_bits: int | None = None
    dense_as_conv: bool = False
    selected_layers: tuple[str, ...] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def tensors(self) -> tuple[TensorEntry, ...]:
        """Every tensor of every layer, in export order."""
        return tuple(t for layer in self.layers for t in layer.tensors)

    def to_json(self) -> JSON:
        """The JSON form ``manifest.json`` holds, checked against the schema (a failure is a bug in qextract)."""
        out = {
            "schema_version": self.schema_version, "qextract_version": self.qextract_version, "model": self.model,
            "layout": str(self.layout), "formats": list(self.formats), "word_bits": self.word_bits,
            "dense_as_conv": self.dense_as_conv, "selected_layers": _list(self.selected_layers),
            "files": [f.to_json() for f in self.files], "layers": [layer.to_json() for layer in self.layers],
        }  # fmt: skip
        validate(out)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Manifest:
        """The Manifest of ``d`` (``json.loads`` of a manifest.json), which must follow the schema.

        Raises VerificationError ``does not follow the manifest schema (field $.path: ...)``
        naming the first offending field otherwise.
        """
        try:
            validate(d)
        except Exception as e:
            raise VerificationError(f"does not follow the manifest schema ({str(e).splitlines()[0]})") from None
        return cls(
            qextract_version=d["qextract_version"], model=d["model"], layout=Layout.parse(d["layout"]),
            formats=_tuple(d["formats"]), files=tuple(FileEntry.from_json(f) for f in d["files"]),
            layers=tuple(LayerEntry.from_json(layer) for layer in d["layers"]), word_bits=d.get("word_bits"),
            dense_as_conv=d.get("dense_as_conv", False), selected_layers=_tuple(d.get("selected_layers")),
            schema_version=d["schema_version"],
        )  # fmt: skip
