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

from .. import __version__
from .._atomic import atomic_dir, check_folder_target
from ..errors import ExportError, LayoutError, QExtractError, UsageError
from ..kinds import Kind
from ..layouts import ExportedTensor, Layout, lay_out
from ..manifest.building import FileEntry, LayerEntry, Manifest, TensorEntry, layer_entry, tensor_entry
from ..manifest.folder import EXPORT
from ..reading.extraction import extract
from ..reading.nested import selected
from ..tensor import Extraction, LayerRecord
from ..writers import FORMATS, check_names, write_all
from ..writers._text import file_stems

__all__ = ["DEFAULT_FORMATS", "MAX_WORD_BITS", "WORD_FORMATS", "ExportResult", "check_output", "export"]

DEFAULT_FORMATS = ("npz", "header", "mem")
PER_TENSOR_FORMATS = frozenset(name for name, f in FORMATS.items() if f.per_tensor)
"""The formats that write one file per tensor (the others write one file holding every tensor)."""
WORD_FORMATS = tuple(name for name, f in FORMATS.items() if f.words)
"""The formats that store memory words, and so the only ones ``word_bits`` changes."""
MAX_WORD_BITS = 64


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds: ``manifest`` is what ``manifest.json`` says (its ``to_json()``)."""

    out_dir: Path
    manifest: Manifest
    files: tuple[Path, ...]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ExportResult('{self.out_dir}': {len(m.tensors)} tensors, layout {m.layout}, "
            f"formats {','.join(m.formats)}, {len(self.files)} files)"
        )


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
    protect: Iterable[str | os.PathLike[str]] = (),
    engine: str = "auto",
    weights: str | os.PathLike[str] | None = None,
    trusted: bool = False,
) -> ExportResult:
    """Write the quantized tensors of ``source`` (a model, a model file or an :class:`Extraction`) into ``out_dir``.

    ``layout`` is ``hwio`` (Keras), ``ohwi`` (TFLite) or ``oihw`` (PyTorch/ONNX/Caffe).
    ``dense_as_conv`` writes a Dense layer fed by Flatten in its convolution
    form ``(H,W,C,O)`` (and the matching OHWI / OIHW forms).
    An existing non-empty ``out_dir`` is refused unless ``force``; even with
    ``force`` only a previous qextract export (its ``manifest.json`` and the
    files it lists, nothing else) is replaced, and never a folder that is,
    holds or is linked to from one of ``protect`` (give the model and weights
    files, so an export can never delete its own input).

    A model file is extracted by ``engine`` with ``weights`` and ``trusted`` as
    :func:`qextract.extract` does (``"numpy"``: without TensorFlow); it and its
    weights file are protected like ``protect``.

    >>> qextract.export(model, "out", layout="ohwi", formats=["npz", "mem"])  # doctest: +SKIP
    >>> qextract.export("model.h5", "out", engine="numpy")  # doctest: +SKIP
    """
    lay = Layout.parse(layout)
    formats = check_names(formats)
    _check_word_bits(word_bits, formats)
    protect = [protect] if isinstance(protect, (str, os.PathLike)) else [p for p in protect if p is not None]
    if isinstance(source, (str, os.PathLike)):
        protect += [p for p in (source, weights) if p is not None]
    check_output(out_dir, force=force, protect=protect)  # refuse before the (possibly long) extraction, not after
    if isinstance(source, Extraction):
        ex, records = source, _records_of(source, layers)
    else:  # extract selects: a nested model's name also selects a layer it shares with another, extracted there
        ex = extract(source, layers=layers, engine=engine, weights=weights, trusted=trusted)
        records = list(ex)
    laid = [(r, _lay_out_layer(r, lay, dense_as_conv)) for r in records]
    tensors = [t for _, (ts, _) in laid for t in ts]
    if not tensors:
        raise _nothing_to_export(source, ex, records, layers)
    with atomic_dir(out_dir, force=force, protect=protect, replaceable=EXPORT.check_replaceable) as tmp:
        try:
            written = write_all(tensors, tmp, formats, word_bits=word_bits, model_name=ex.model_name)
        except OSError as e:
            raise ExportError(
                f"{out_dir}: writing failed ({e.strerror or e}); nothing was left behind. "
                "Fix: free space or choose another out_dir.",
                arguments=("out_dir",),
            ) from None
        files, per_tensor = _describe_files(tmp, written, tensors)
        manifest = Manifest(
            qextract_version=__version__,
            model=ex.model_name,
            layout=lay,
            formats=tuple(formats),
            word_bits=word_bits,
            dense_as_conv=dense_as_conv,
            # verify requires exactly these layers; None: every layer of the model (see _selected_layers)
            selected_layers=_selected_layers(source, layers, records),
            files=tuple(files),
            layers=tuple(_layer_entry(r, ts, flatten, per_tensor) for r, (ts, flatten) in laid),
        )
        document = manifest.to_json()  # checked against the schema
        try:
            (tmp / "manifest.json").write_text(json.dumps(document, indent=1) + "\n")
        except OSError as e:
            raise ExportError(f"{Path(out_dir) / 'manifest.json'}: cannot write ({e.strerror})") from None
    out = Path(out_dir)
    return ExportResult(out, manifest, (*(out / f.path for f in files), out / "manifest.json"))


def _selected_layers(source: Any, layers: list[str] | None, records: list[LayerRecord]) -> tuple[str, ...] | None:
    """The layers the export was restricted to, or None when it holds every layer of the model.

    An :class:`Extraction` may itself cover only some layers (``extract(model, layers=...)``),
    which export cannot tell: its layers are then recorded as the selection.
    """
    if layers is None and not isinstance(source, Extraction):
        return None
    return tuple(r.name for r in records)


def _check_word_bits(word_bits: Any, formats: list[str]) -> None:
    """``word_bits`` is a width from 1 to 64 and only meaningful with a format that stores memory words."""
    if word_bits is None:
        return
    if isinstance(word_bits, bool) or not isinstance(word_bits, int) or not 1 <= word_bits <= MAX_WORD_BITS:
        raise UsageError(f"word_bits must be a whole number of bits from 1 to {MAX_WORD_BITS}, not {word_bits!r}")
    if not set(formats) & set(WORD_FORMATS):
        raise UsageError(
            f"word_bits={word_bits} changes only the formats that store memory words ({', '.join(WORD_FORMATS)}); "
            f"the formats asked for ({', '.join(formats)}) would ignore it. "
            "Fix: add one of them, or leave word_bits unset."
        )


def _records_of(ex: Extraction, layers: list[str] | None) -> list[LayerRecord]:
    """The records of ``layers`` (all when None); a name the extraction lacks is a UsageError listing the valid ones."""
    if layers is None:
        return list(ex)
    names = [r.name for r in ex]
    missing = [n for n in layers if not any(selected(key, [n]) for key in names)]
    if missing:
        raise UsageError(
            f"extraction of model '{ex.model_name}' has no layer named {', '.join(map(repr, missing))}; "
            f"its layers are: {', '.join(names)}"
        )
    return [r for r in ex if selected(r.name, layers)]  # a nested model's name selects what is inside


def _nothing_to_export(source: Any, ex: Extraction, records: list[LayerRecord], layers: list[str] | None) -> UsageError:
    """Why an export would hold no tensor, naming the layers and those that do have weights.

    A UsageError (exit 2), not an ExportError: nothing failed to be written;
    the request itself selects no weight, and the fix is another selection.
    """
    if layers is not None and not isinstance(source, Extraction):
        try:  # only on this error path: the whole model, to name the layers that do have weights
            ex = extract(source)
        except QExtractError:
            pass
    weighted = [r.name for r in ex if len(r)]
    if layers is None:
        what = f"model '{ex.model_name}' has no layer with weight tensors"
    else:
        what = (
            f"layer(s) {', '.join(repr(r.name) for r in records)} hold no weight tensors (only activations or nothing)"
        )
    fix = (
        f"Fix: choose layers that have weights: {', '.join(weighted)}"
        if weighted
        else "Fix: export a model with weights"
    )
    return UsageError(f"{what}; an export of zero tensors would prove nothing. {fix}.")


def check_output(
    out_dir: str | os.PathLike[str], *, force: bool = False, protect: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Raise the ExportError :func:`export` would raise for ``out_dir``, before any work is done.

    Refused: the current folder (or one holding it), a file, a folder that
    is, holds or is linked to from one of ``protect``, a non-empty folder
    without ``force``, and with ``force`` anything but a previous export.
    """
    target = check_folder_target(out_dir, force=force, protect=[p for p in protect if p is not None])
    if target.is_dir() and any(target.iterdir()):
        EXPORT.check_replaceable(Path(out_dir))


def _lay_out_layer(
    record: LayerRecord, lay: Layout, dense_as_conv: bool
) -> tuple[list[ExportedTensor], list[int] | None]:
    """The layer's tensors in ``lay``, and the shape its Flatten received when a Flatten feeds it (a Dense).

    A Dense kernel fed by Flatten is always laid out knowing that shape, so
    that its inputs follow the layout's flatten order (oihw: PyTorch's C,H,W),
    with or without ``dense_as_conv`` (which only adds the convolution shape).
    """
    flatten = record.config.get("flatten_input_shape") if record.kind == Kind.DENSE else None
    out = []
    for t in record:
        shape = tuple(flatten) if flatten is not None and t.name == "kernel" else None
        laid = lay_out(
            t, record.kind, lay, flatten_shape=shape, dense_as_conv=dense_as_conv
        )  # names the layer on error
        if not lay.native and "X" in laid.axes:
            raise LayoutError(
                f"layer '{record.name}' ({record.class_name}), tensor '{t.name}' {t.shape}: qextract has no {lay} "
                f"layout rule for {record.class_name} layers. Fix: export with layout='hwio', or leave the layer "
                "out with layers=[...].",
                arguments=("layout", "layers"),
            )
        out.append(laid)
    return out, flatten


def _layer_entry(
    record: LayerRecord, tensors: list[ExportedTensor], flatten: list[int] | None, per_tensor: dict[str, list[str]]
) -> LayerEntry:
    order = next((t.flatten_order for t in tensors if t.flatten_order is not None), None)
    return layer_entry(record, [_tensor_entry(record, t, per_tensor) for t in tensors], flatten, order)


def _tensor_entry(record: LayerRecord, t: ExportedTensor, per_tensor: dict[str, list[str]]) -> TensorEntry:
    source = record.tensors[t.name]
    return tensor_entry(t, per_tensor.get(t.key, []), source.ste_rounded, source.notes)


def _describe_files(
    root: Path, written: dict[str, list[Path]], tensors: Sequence[ExportedTensor]
) -> tuple[list[FileEntry], dict[str, list[str]]]:
    """File records for the manifest, and the files holding each tensor.

    Per-tensor formats name their files by the tensor's stem (empty tensors
    have no file); the others hold every tensor.
    """
    stems = dict(zip(file_stems(tensors), (t.key for t in tensors)))
    files: list[FileEntry] = []
    per_tensor: dict[str, list[str]] = {t.key: [] for t in tensors}
    for fmt, paths in written.items():
        for path in paths:
            path = Path(path)
            rel = path.relative_to(root).as_posix()
            if fmt in PER_TENSOR_FORMATS:
                keys = [stems[path.name[: -len(path.suffix)]]]
            else:
                keys = [t.key for t in tensors]
            data = path.read_bytes()
            files.append(FileEntry(rel, fmt, hashlib.sha256(data).hexdigest(), len(data), tuple(keys)))
            for k in keys:
                per_tensor[k].append(rel)
    return files, per_tensor
