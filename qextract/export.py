"""Export an extraction: lay every tensor out, write the formats, describe them in a manifest.

Everything is written into a temporary folder beside the target, which is
renamed into place only when every file and the manifest are complete: an
export that fails or is interrupted leaves no partial output behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from ._atomic import atomic_dir
from .errors import ExportError, LayoutError
from .extract import extract
from .layouts import ExportedTensor, Layout, lay_out
from .manifest import SCHEMA_VERSION, layer_entry, tensor_entry, validate
from .tensor import Extraction, LayerRecord
from .writers import FORMATS, write_all
from .writers._text import file_stems

__all__ = ["export", "ExportResult", "DEFAULT_FORMATS"]

DEFAULT_FORMATS = ("npz", "header", "mem")
PER_TENSOR_FORMATS = {"mem", "coe", "mif"}


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds."""

    out_dir: Path
    manifest: dict[str, Any]
    files: tuple[Path, ...]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"


def export(
    source: Any,
    out_dir: str | os.PathLike[str],
    *,
    layout: str = "hwio",
    formats: Iterable[str] = DEFAULT_FORMATS,
    layers: list[str] | None = None,
    word_bits: int | None = None,
    dense_as_conv: bool = False,
    force: bool = False,
) -> ExportResult:
    """Write the quantized tensors of ``source`` (a model or an :class:`Extraction`) into ``out_dir``.

    ``layout`` is ``hwio`` (Keras), ``ohwi`` (TFLite) or ``oihw`` (PyTorch/ONNX/Caffe).
    ``dense_as_conv`` writes a Dense layer fed by Flatten in its convolution
    form ``(H,W,C,O)`` (and the matching OHWI / OIHW forms).
    An existing non-empty ``out_dir`` is refused unless ``force``.

    >>> qextract.export(model, "out", layout="ohwi", formats=["npz", "mem"])  # doctest: +SKIP
    """
    lay = Layout.parse(layout)
    formats = _check_formats(formats)
    if word_bits is not None and word_bits < 1:
        raise ExportError(f"--word-bits must be a positive number of bits, not {word_bits}")
    ex = source if isinstance(source, Extraction) else extract(source, layers=layers)
    records = [r for r in ex if layers is None or r.name in layers]
    laid = [(r, _lay_out_layer(r, lay, dense_as_conv)) for r in records]
    tensors = [t for _, (ts, _) in laid for t in ts]
    with atomic_dir(out_dir, force=force) as tmp:
        try:
            written = write_all(tensors, tmp, formats, word_bits=word_bits, model_name=ex.model_name)
        except OSError as e:
            raise ExportError(
                f"{out_dir}: writing failed ({e.strerror or e}); nothing was left behind. "
                "Fix: free space or choose another --out."
            ) from None
        files, per_tensor = _describe_files(tmp, written, tensors)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "qextract_version": __version__,
            "model": ex.model_name,
            "layout": str(lay),
            "formats": formats,
            "word_bits": word_bits,
            "dense_as_conv": dense_as_conv,
            "files": files,
            "layers": [
                layer_entry(r, [_tensor_entry(r, t, per_tensor) for t in ts], flatten, _flatten_order(ts))
                for r, (ts, flatten) in laid
            ],
        }
        validate(manifest)
        try:
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        except OSError as e:
            raise ExportError(f"{Path(out_dir) / 'manifest.json'}: cannot write ({e.strerror})") from None
    out = Path(out_dir)
    return ExportResult(out, manifest, tuple(out / f["path"] for f in files) + (out / "manifest.json",))


def _check_formats(formats: Iterable[str]) -> list[str]:
    names = [formats] if isinstance(formats, str) else list(dict.fromkeys(formats))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown format(s) {', '.join(map(repr, unknown)) or '(none)'}; choose from {', '.join(FORMATS)}")
    return names


def _lay_out_layer(record: LayerRecord, lay: Layout, dense_as_conv: bool) -> tuple[list[ExportedTensor], list[int] | None]:
    """The layer's tensors in ``lay``, and the shape its Flatten received when a Flatten feeds it (a Dense).

    A Dense kernel fed by Flatten is always laid out knowing that shape, so
    that its inputs follow the layout's flatten order (oihw: PyTorch's C,H,W),
    with or without ``dense_as_conv`` (which only adds the convolution shape).
    """
    flatten = record.config.get("flatten_input_shape") if record.kind == "dense" else None
    out = []
    for t in record:
        shape = tuple(flatten) if flatten is not None and t.name == "kernel" else None
        laid = lay_out(t, record.kind, lay, flatten_shape=shape, dense_as_conv=dense_as_conv)  # names the layer on error
        if not lay.native and "X" in laid.axes:
            raise LayoutError(
                f"layer '{record.name}' ({record.class_name}), tensor '{t.name}' {t.shape}: qextract has no {lay} "
                f"layout rule for {record.class_name} layers. Fix: export with --layout hwio, or leave the layer "
                "out with --layers."
            )
        out.append(laid)
    return out, flatten


def _flatten_order(tensors: list[ExportedTensor]) -> str | None:
    return next((t.flatten_order for t in tensors if t.flatten_order is not None), None)


def _tensor_entry(record: LayerRecord, t: ExportedTensor, per_tensor: dict[str, list[str]]) -> dict[str, Any]:
    source = record.tensors[t.name]
    return tensor_entry(t, per_tensor.get(t.key, []), source.ste_rounded, source.notes)


def _describe_files(
    root: Path, written: dict[str, list[Path]], tensors: Sequence[ExportedTensor]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """File records for the manifest, and the files holding each tensor.

    Per-tensor formats name their files by the tensor's stem (empty tensors
    have no file); the others hold every tensor.
    """
    stems = dict(zip(file_stems(tensors), (t.key for t in tensors)))
    files, per_tensor = [], {t.key: [] for t in tensors}
    for fmt, paths in written.items():
        for path in paths:
            path = Path(path)
            rel = path.relative_to(root).as_posix()
            if fmt in PER_TENSOR_FORMATS:
                keys = [stems[path.name[: -len(path.suffix)]]]
            else:
                keys = [t.key for t in tensors]
            data = path.read_bytes()
            files.append({"path": rel, "format": fmt, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "tensors": keys})
            for k in keys:
                per_tensor[k].append(rel)
    return files, per_tensor
