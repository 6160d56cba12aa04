"""Text helpers shared by the writers and readers: safe names, vectorised numbers, comment lines.

Numbers are rendered as fixed-width ASCII cells in a uint8 matrix (one row per
number) and joined with ``tobytes()``: tens of millions of codes take seconds,
where a Python loop of f-strings would take minutes. Readers cut the same
rows apart again with :func:`split_columns`, the inverse of :func:`columns`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..errors import ExportError
from ..layouts import AXIS_MEANINGS, ExportedTensor
from ..numformat import NumberFormat


class Keyed(Protocol):
    """What the checks over every tensor of an export read: an :class:`ExportedTensor`, or what is kept of one."""

    @property
    def key(self) -> str: ...
    @property
    def layer(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def format(self) -> NumberFormat: ...


# --- names -----------------------------------------------------------------------------


class UniqueNames:
    """Names made unique as they come, case-insensitively (file systems, C macros), by numbering repeats.

    A streaming writer names each tensor on arrival and gets what the whole
    list would give it: a name depends only on the names before it.
    """

    def __init__(self, joiner: str) -> None:
        self.joiner = joiner
        self._seen: set[str] = set()

    def add(self, name: str) -> str:
        candidate, n = name, 1
        while candidate.lower() in self._seen:
            n += 1
            candidate = f"{name}{self.joiner}{n}"
        self._seen.add(candidate.lower())
        return candidate


def _dedupe(names: list[str], joiner: str) -> list[str]:
    unique = UniqueNames(joiner)
    return [unique.add(name) for name in names]


def file_stem(t: ExportedTensor) -> str:
    """``layer.tensor``, safe as a file name, before repeats are numbered (:func:`file_stems`)."""

    def safe(part: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "_", part).strip("_") or "_"

    return f"{safe(t.layer)}.{safe(t.name)}"


def file_stems(tensors: Sequence[ExportedTensor]) -> list[str]:
    """``layer.tensor`` per tensor, safe as a file name: ``conv1.kernel``, ``bi.forward_kernel``."""
    return _dedupe([file_stem(t) for t in tensors], "_")


def c_identifier(text: str) -> str:
    """``text`` as a C identifier: other characters become ``_``; never starts with a digit or ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "w"
    return name if name[0].isalpha() else f"w_{name}"


def c_names(tensors: Sequence[Keyed] | Sequence[tuple[str, str]]) -> list[str]:
    """``layer_tensor`` per tensor as unique C identifiers (unique also in upper case, for macros).

    Takes the tensors, or their ``(layer, tensor name)`` pairs in the same
    order (how a reader derives the names from the manifest).
    """
    pairs = [t if isinstance(t, tuple) else (t.layer, t.name) for t in tensors]
    return _dedupe([c_identifier(f"{layer}_{name}") for layer, name in pairs], "_")


def check_unique_keys(tensors: Sequence[Keyed]) -> None:
    seen: set[str] = set()
    repeated = sorted({t.key for t in tensors if t.key in seen or seen.add(t.key)})  # type: ignore[func-returns-value]
    if repeated:
        raise ExportError(f"tensors given more than once: {', '.join(repeated)}; pass each layer/tensor once")


# --- numbers ---------------------------------------------------------------------------


def decimal_cells(values: np.ndarray) -> np.ndarray:
    """Integers as right-aligned ASCII decimal cells, uint8 ``(n, width)``, width set by the widest."""
    return DecimalCells(values)(values)


class DecimalCells:
    """The decimal cells of one array's integers, rendered in any pieces of it: one width, set by the widest.

    Codes span few distinct values, so the cells of the span are rendered
    once and gathered: an order of magnitude faster than digit arithmetic.
    """

    def __init__(self, values: np.ndarray) -> None:
        v = np.asarray(values)
        self.table: np.ndarray | None = None
        if v.size == 0:
            self.lo, self.width = 0, 1
            return
        lo, hi = int(v.min()), int(v.max())
        self.lo = lo
        self.width = len(str(max(abs(lo), abs(hi)))) + int(lo < 0)  # what _digits gives the whole array
        if hi - lo < min(v.size, 1 << 17):
            self.table = _digits(np.arange(lo, hi + 1, dtype=np.int64))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The cells of ``values`` (the whole array given at creation, or a piece of it), flat order."""
        v = np.asarray(values).reshape(-1)
        if v.size == 0:
            return np.empty((0, self.width), np.uint8)
        if self.table is not None:
            return self.table[v.astype(np.int64) - self.lo]
        return _digits(v, self.width)


def _digits(values: np.ndarray, width: int | None = None) -> np.ndarray:
    v = values.astype(np.int64)
    negative = v < 0
    rest = np.abs(v).astype(np.uint64)  # abs(int64 min) wraps to 2**63 in uint64: still right
    digits = len(str(int(rest.max()))) if v.size else 1
    width = digits + int(negative.any()) if width is None else width
    out = np.full((v.size, width), ord(" "), np.uint8)
    length = np.ones(v.size, np.int64)
    for p in range(digits):
        shown = (rest > 0) if p else np.ones(v.size, bool)
        out[:, width - 1 - p] = np.where(shown, (rest % np.uint64(10)).astype(np.uint8) + ord("0"), ord(" "))
        length += shown if p else 0
        rest //= np.uint64(10)
    rows = np.flatnonzero(negative)
    out[rows, width - 1 - length[rows]] = ord("-")
    return out


def columns(rows: int, *parts: bytes | np.ndarray) -> np.ndarray:
    """Side-by-side uint8 matrix of ``rows`` rows: bytes parts repeat on every row, arrays are cells."""
    blocks = [np.broadcast_to(np.frombuffer(p, np.uint8), (rows, len(p))) if isinstance(p, bytes) else p for p in parts]
    return np.concatenate(blocks, axis=1) if blocks else np.empty((rows, 0), np.uint8)


def split_columns(body: bytes, *parts: bytes | int) -> list[np.ndarray]:
    """The inverse of :func:`columns`: ``body`` cut into equal rows, each row into ``parts``.

    A bytes part must appear on every row (ValueError naming the first row
    where it does not); an int part is a cell of that many bytes, returned as
    a uint8 ``(rows, width)`` matrix, in order.
    """
    widths = [p if isinstance(p, int) else len(p) for p in parts]
    width = sum(widths)
    if width == 0 or len(body) % width:
        raise ValueError(f"{len(body)} bytes of data do not split into lines of {width} bytes as written")
    matrix = np.frombuffer(body, np.uint8).reshape(-1, width)
    cells, at = [], 0
    for part, n in zip(parts, widths):
        block = matrix[:, at : at + n]
        if isinstance(part, int):
            cells.append(block)
        else:
            bad = np.flatnonzero((block != np.frombuffer(part, np.uint8)).any(axis=1))
            if bad.size:
                raise ValueError(f"data line {bad[0] + 1}: expected {part!r} at column {at + 1}")
        at += n
    return cells


def comment_end(data: bytes, marker: bytes) -> int:
    """Offset of the first line of ``data`` that does not start with ``marker`` (the leading comment)."""
    at = 0
    while data.startswith(marker, at):
        end = data.find(b"\n", at)
        if end < 0:
            return len(data)
        at = end + 1
    return at


def wrap(cells: np.ndarray, per_line: int, indent: bytes = b"    ") -> bytes:
    """Cells (each already ending in its separator) ``per_line`` to a line, each line indented."""
    n = cells.shape[0]
    full = n - n % per_line
    width = per_line * cells.shape[1]
    body = columns(full // per_line, indent, cells[:full].reshape(full // per_line, width), b"\n").tobytes()
    if full < n:
        body += columns(1, indent, cells[full:].reshape(1, -1), b"\n").tobytes()
    return body


def float_literal(x: float | np.floating | np.ndarray) -> str:
    """Shortest decimal that reads back as exactly this float32 (as a C double literal, then float)."""
    value = float(np.float32(x))
    if not np.isfinite(value):
        raise ExportError(f"cannot write the non-finite number {value} as a C literal")
    text = repr(value)  # shortest round-trip of the double, which is exactly the float32
    assert np.float32(float(text)) == np.float32(x), text
    return text


def spans(size: int, align: int, chunk: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` pieces of ``size`` elements, each about ``chunk`` long (None: one piece) and starting
    at a multiple of ``align`` (a whole number of lines or words), so that pieces render to whole lines."""
    if chunk is None or size <= chunk:
        return [(0, size)]
    step = max(align, chunk // align * align)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def flat_piece(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Elements ``start:stop`` of ``array`` in C order: a view when it is C-contiguous, else a copy of the piece
    only (``reshape(-1)`` would copy the whole array)."""
    a = np.asarray(array)
    if a.flags.c_contiguous:
        return a.reshape(-1)[start:stop]
    return a.flat[start:stop]


def float_list(values: np.ndarray, per_line: int = 8, indent: str = "    ") -> str:
    """Comma-separated exact float literals, ``per_line`` to a line."""
    flat = np.asarray(values, np.float32).reshape(-1)
    if flat.size and not np.isfinite(flat).all():
        raise ExportError("cannot write non-finite numbers (inf, nan) as C literals")
    texts = list(map(repr, flat.astype(np.float64).tolist()))
    return "".join(f"{indent}{', '.join(texts[i : i + per_line])},\n" for i in range(0, len(texts), per_line))


# --- comments --------------------------------------------------------------------------


def scale_text(t: ExportedTensor, limit: int = 16) -> str:
    """The scale in words, listing at most ``limit`` values."""
    if not t.quantized:
        return "none (float values)"
    if not t.per_channel:
        return f"per tensor {float_literal(t.scale)}"
    shown = ", ".join(float_literal(s) for s in t.scale[:limit]) + (", ..." if t.scale.size > limit else "")
    axis = t.scale_axis
    return f"per channel along axis {axis} ({t.axes[axis]}), {t.scale.size} values: {shown}"  # type: ignore[index]


def value_rule(t: ExportedTensor) -> str:
    """How a value follows from its code, e.g. ``value = code * scale[channel]`` (the format says)."""
    return t.format.value_rule("scale[channel]" if t.per_channel else "scale")


def summary(t: ExportedTensor, model_name: str) -> list[str]:
    """Comment lines describing a tensor (without comment markers)."""
    letters = ", ".join(f"{a}={AXIS_MEANINGS[a]}" for a in dict.fromkeys(t.axes))
    return [
        f"qextract {model_name}: {t.key} ({t.layer_class}, {t.kind})",
        f"layout {t.layout}, axes {t.axes or '-'}, shape {'x'.join(map(str, t.shape)) or 'scalar'}, {t.size} elements",
        f"axes: {letters}" if letters else "axes: scalar",
        f"format {t.format}, quantizer {t.quantizer_str or 'none'}",
        f"{value_rule(t)}; scale {scale_text(t)}",
    ]
