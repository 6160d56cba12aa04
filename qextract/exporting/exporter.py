"""Export an extraction: lay every tensor out, write the formats, describe them in a manifest.

The export streams: each layer is extracted, each of its tensors laid out and
handed to every format's sink (:mod:`qextract.writers._sink`), and dropped
before the next layer is extracted, so memory follows the largest layer, not
the model, and the files are the same bytes as writing everything at once.

Everything is written into a temporary folder beside the target, which is
renamed into place only when every file and the manifest are complete: an
export that fails or is interrupted leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .._atomic import atomic_dir, check_folder_target
from .._keras import require_keras_model
from ..errors import ExportError, LayoutError, QExtractError, UsageError
from ..kinds import Kind
from ..layouts import ExportedTensor, Layout, lay_out
from ..manifest import FileEntry, LayerEntry, Manifest, layer_entry, tensor_entry
from ..manifest.folder import EXPORT
from ..reading.extraction import check_in_memory, extract, extract_records
from ..reading.nested import selected
from ..tensor import Extraction, LayerRecord, QuantizedTensor
from ..writers import FORMATS, Sinks, check_names, open_sinks

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
        model_name, records = source.model_name, iter(_records_of(source, layers))
    elif isinstance(source, (str, os.PathLike)):  # a model file, extracted whole by its engine
        ex = extract(source, layers=layers, engine=engine, weights=weights, trusted=trusted)
        model_name, records = ex.model_name, iter(list(ex))
        del ex
    else:  # extract selects: a nested model's name also selects a layer it shares with another, extracted there
        check_in_memory(engine, weights)
        require_keras_model(source)
        model_name, records = source.name, _first_then_rest(extract_records(source, layers=layers))
    created = _missing_parents(out_dir)
    with (
        _removed_on_failure(created),
        atomic_dir(out_dir, force=force, protect=protect, replaceable=EXPORT.check_replaceable) as tmp,
    ):
        sinks = open_sinks(tmp, formats, word_bits=word_bits, model_name=model_name)
        try:
            done = _stream(records, lay, dense_as_conv, sinks, tmp)
            if not done.keys:
                raise _nothing_to_export(source, model_name, done, layers)
            files = _describe_files(tmp, sinks.close(), done)
        except OSError as e:
            sinks.abort()
            raise ExportError(
                f"{out_dir}: writing failed ({e.strerror or e}); nothing was left behind. "
                "Fix: free space or choose another out_dir.",
                arguments=("out_dir",),
            ) from None
        except BaseException:
            sinks.abort()
            raise
        manifest = Manifest(
            qextract_version=__version__,
            model=model_name,
            layout=lay,
            formats=tuple(formats),
            word_bits=word_bits,
            dense_as_conv=dense_as_conv,
            # verify requires exactly these layers; None: every layer of the model (see _selected_layers)
            selected_layers=_selected_layers(source, layers, done.names),
            files=tuple(files),
            layers=tuple(done.layers),
        )
        document = manifest.to_json()  # checked against the schema
        try:
            (tmp / "manifest.json").write_text(json.dumps(document, indent=1) + "\n")
        except OSError as e:
            raise ExportError(f"{Path(out_dir) / 'manifest.json'}: cannot write ({e.strerror})") from None
    out = Path(out_dir)
    return ExportResult(out, manifest, (*(out / f.path for f in files), out / "manifest.json"))


def _first_then_rest(records: Iterator[LayerRecord]) -> Iterator[LayerRecord]:
    """``records`` with the first one extracted now: a wrong selection or a failing first layer is refused
    before any folder is made, as when the whole extraction came first."""
    first = next(records, None)

    def chained() -> Iterator[LayerRecord]:
        nonlocal first
        if first is not None:
            record, first = first, None
            yield record
            del record  # not held while the next layer is extracted
        yield from records

    return chained()


def _missing_parents(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The folders above ``out_dir`` that do not exist yet (the export makes them), deepest first."""
    missing = []
    for parent in Path(os.path.abspath(out_dir)).parents:
        if os.path.lexists(parent):
            break
        missing.append(parent)
    return missing


@contextlib.contextmanager
def _removed_on_failure(created: list[Path]) -> Iterator[None]:
    """On failure, remove the folders the export made above its output, if they are still empty."""
    try:
        yield
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@dataclass
class _Streamed:
    """What is kept of an export's layers once written: their manifest entries, names and tensor keys.

    ``files`` maps each per-tensor file written (its path inside the export) to its tensor's key.
    """

    layers: list[LayerEntry] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    weighted: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def _stream(records: Iterator[LayerRecord], lay: Layout, dense_as_conv: bool, sinks: Sinks, root: Path) -> _Streamed:
    """Lay out and write every tensor of every record, one at a time: each layer's record and each laid-out
    tensor are dropped before the next is made, so memory follows the largest layer, not the model."""
    done = _Streamed()
    for record in records:
        _write_layer(record, lay, dense_as_conv, sinks, root, done)
        del record  # not held while the generator extracts the next layer
    return done


def _write_layer(
    record: LayerRecord, lay: Layout, dense_as_conv: bool, sinks: Sinks, root: Path, done: _Streamed
) -> None:
    """One layer's tensors through every sink, each laid out only while it is written; its manifest entry."""
    flatten = record.config.get("flatten_input_shape") if record.kind == Kind.DENSE else None
    entries, order = [], None
    for source in record:
        laid = _lay_out(record, source, lay, dense_as_conv, flatten)
        held = []
        for fmt, path in sinks.add(laid).items():
            if path is None:
                continue
            rel = path.relative_to(root).as_posix()
            held.append(rel)
            if fmt in PER_TENSOR_FORMATS:
                done.files[rel] = laid.key
        entries.append(tensor_entry(laid, held, source.ste_rounded, source.notes))
        done.keys.append(laid.key)
        order = order if order is not None else laid.flatten_order
        del laid
    done.layers.append(layer_entry(record, entries, flatten, order))
    done.names.append(record.name)
    if len(record):
        done.weighted.append(record.name)


def _selected_layers(source: Any, layers: list[str] | None, names: list[str]) -> tuple[str, ...] | None:
    """The layers the export was restricted to, or None when it holds every layer of the model.

    An :class:`Extraction` may itself cover only some layers (``extract(model, layers=...)``),
    which export cannot tell: its layers are then recorded as the selection.
    """
    if layers is None and not isinstance(source, Extraction):
        return None
    return tuple(names)


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


def _nothing_to_export(source: Any, model_name: str, done: _Streamed, layers: list[str] | None) -> UsageError:
    """Why an export would hold no tensor, naming the layers and those that do have weights.

    A UsageError (exit 2), not an ExportError: nothing failed to be written;
    the request itself selects no weight, and the fix is another selection.
    """
    weighted = done.weighted
    if isinstance(source, Extraction):
        weighted = [r.name for r in source if len(r)]
    elif layers is not None:
        try:  # only on this error path: the whole model, to name the layers that do have weights
            weighted = [r.name for r in extract(source) if len(r)]
        except QExtractError:
            pass
    if layers is None:
        what = f"model '{model_name}' has no layer with weight tensors"
    else:
        what = f"layer(s) {', '.join(map(repr, done.names))} hold no weight tensors (only activations or nothing)"
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


def _lay_out(
    record: LayerRecord, t: QuantizedTensor, lay: Layout, dense_as_conv: bool, flatten: list[int] | None
) -> ExportedTensor:
    """One tensor of ``record`` in ``lay``, a Dense kernel knowing the shape its Flatten received (``flatten``).

    A Dense kernel fed by Flatten is always laid out knowing that shape, so
    that its inputs follow the layout's flatten order (oihw: PyTorch's C,H,W),
    with or without ``dense_as_conv`` (which only adds the convolution shape).
    """
    shape = tuple(flatten) if flatten is not None and t.name == "kernel" else None
    laid = lay_out(t, record.kind, lay, flatten_shape=shape, dense_as_conv=dense_as_conv)  # names the layer on error
    if not lay.native and "X" in laid.axes:
        raise LayoutError(
            f"layer '{record.name}' ({record.class_name}), tensor '{t.name}' {t.shape}: qextract has no {lay} "
            f"layout rule for {record.class_name} layers. Fix: export with layout='hwio', or leave the layer "
            "out with layers=[...].",
            arguments=("layout", "layers"),
        )
    return laid


def _describe_files(root: Path, written: dict[str, list[Path]], done: _Streamed) -> list[FileEntry]:
    """File records for the manifest, in format order: per-tensor files hold their tensor, the others all."""
    files: list[FileEntry] = []
    for fmt, paths in written.items():
        for path in paths:
            rel = path.relative_to(root).as_posix()
            keys = [done.files[rel]] if fmt in PER_TENSOR_FORMATS else done.keys
            digest, size = _sha256(path)
            files.append(FileEntry(rel, fmt, digest, size, tuple(keys)))
    return files


def _sha256(path: Path, block: int = 1 << 20) -> tuple[str, int]:
    """The file's sha256 and size, read a block at a time (a model's header can be hundreds of MB)."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
            size += len(data)
    return h.hexdigest(), size
