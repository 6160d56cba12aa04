"""hls4ml's testbench files: ``tb_input_features.dat`` and ``tb_output_predictions.dat``.

hls4ml's generated ``myproject_test.cpp`` reads both files line by line in
step: one line is one sample, split with ``strtok(line, " ")`` and each
token converted with ``atof`` into a ``std::vector<float>``, which
``nnet::copy_data`` then casts element by element into the top function's
input array (for the predictions, the line is only printed beside the
result). hls4ml's own writer flattens each sample in C order, which for a
channels-last model is the order of its ``io_parallel`` arrays.

So each value is written as the shortest decimal that reads back as exactly
the float64 of its float32 value: ``atof`` then yields that double, and its
conversion to float is exact. Values are rendered once per distinct value
and gathered with NumPy, so 10,000 images take about a second.
"""

from __future__ import annotations

import numpy as np


def render(values: np.ndarray, chunk: int = 1 << 20) -> bytes:
    """``values`` (float32, shape ``(N, ...)``) as N lines of decimals separated by one space.

    ValueError for a value that is not finite (the testbench cannot read it).

    >>> render(np.array([[0.25, -0.5, 0.0], [-0.0, 3.0, 0.1]], np.float32))
    b'0.25 -0.5 0.0\\n-0.0 3.0 0.10000000149011612\\n'
    """
    v = np.ascontiguousarray(values, np.float32)
    n = v.shape[0]
    flat = v.reshape(n, -1)
    if not np.isfinite(flat).all():
        raise ValueError("values that are not finite (inf, nan) cannot be written for the testbench")
    if flat.size == 0:
        return b"\n" * n
    bits, inverse = np.unique(flat.view(np.uint32), return_inverse=True)  # by bits: -0.0 keeps its sign
    texts = [repr(float(x)).encode() for x in bits.view(np.float32)]
    lengths = np.array([len(t) for t in texts], np.int64)
    cells = np.full((len(texts), int(lengths.max()) + 1), ord(" "), np.uint8)  # text, then its separator
    for i, text in enumerate(texts):
        cells[i, : len(text)] = np.frombuffer(text, np.uint8)
    index = inverse.reshape(flat.shape)
    rows = max(1, chunk // flat.shape[1])
    parts = []
    for start in range(0, n, rows):  # in chunks: the gathered cells are much wider than the text
        idx = index[start : start + rows]
        gathered = cells[idx]  # (rows, per sample, width + 1)
        gathered[:, -1, :][np.arange(idx.shape[0]), lengths[idx[:, -1]]] = ord("\n")
        keep = np.arange(cells.shape[1]) <= lengths[idx][..., None]
        parts.append(gathered[keep].tobytes())
    return b"".join(parts)


def parse(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`render`: float32 values of ``shape`` (N samples); ValueError where the text differs.

    Any run of spaces separates values, as for the testbench; a value that
    float32 does not hold exactly is refused, since the testbench would read
    another number than the one written.
    """
    n, per_sample = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    lines = data.split(b"\n")
    if lines[-1] != b"" or len(lines) - 1 != n:
        raise ValueError(f"{len(lines) - 1} lines ending in a newline, expected {n} (one per sample)")
    tokens: list[bytes] = []
    for i, line in enumerate(lines[:-1]):
        row = line.split(b" ")
        row = [t for t in row if t]
        if len(row) != per_sample:
            raise ValueError(f"line {i + 1} holds {len(row)} values, expected {per_sample}")
        tokens.extend(row)
    try:
        wide = np.array(tokens, dtype=np.bytes_).astype(np.float64) if tokens else np.zeros(0)
    except ValueError as e:
        raise ValueError(f"a value is not a decimal number ({e})") from None
    narrow = wide.astype(np.float32)
    inexact = np.flatnonzero(narrow.astype(np.float64) != wide)
    if inexact.size:
        i = int(inexact[0])
        raise ValueError(f"value {i} ({tokens[i].decode(errors='replace')}) is not exactly a float32")
    return narrow.reshape(shape)
