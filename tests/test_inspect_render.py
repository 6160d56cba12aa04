"""`qextract inspect` prints its table without pandas: the text must be what pandas's to_string gives.

The reference is pandas itself (the table the command printed before, with the same display options),
on the bundled example, every zoo case and rows made to hit the edges (long cells, wide numbers, no rows).
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import zoo

import qextract
from qextract.reading.summary import COLUMNS, inspect_rows, render

WIDE = 48  # the CLI printed with display.max_colwidth 48, which to_string does not apply


def _pandas(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", WIDE
    ):
        return frame.to_string(index=False)


def test_the_bundled_example_prints_as_pandas_prints_it():
    rows = inspect_rows(qextract.extract(zoo.EXAMPLE))
    assert len(rows) > 10
    assert render(rows) == _pandas(rows)


@pytest.mark.parametrize("case", sorted(zoo.CASES))
def test_every_zoo_case_prints_as_pandas_prints_it(case):
    model = zoo.CASES[case].build()
    rows = inspect_rows(qextract.extract(model))
    assert render(rows) == _pandas(rows)


def _row(**cells) -> dict:
    base = dict.fromkeys(COLUMNS, "-")
    base.update(layer="l", bits=8)
    base.update(cells)
    return base


@pytest.mark.parametrize(
    "rows",
    [
        [_row(quantizer="q" * (WIDE - 1)), _row(quantizer="q" * (WIDE + 9))],
        [_row(quantizer="quantized_bits(" + "8," * 40 + ")"), _row(layer="a_much_longer_layer_name")],
        [_row(bits=123456789), _row(bits=1)],
        [_row(tensor="(activation)", scale="per-channel[16] axis 3")],
        [],
    ],
    ids=["past_the_width", "long", "wide_numbers", "activation", "empty"],
)
def test_edges_print_as_pandas_prints_them(rows):
    assert render(rows) == _pandas(rows)


def test_inspect_with_the_numpy_engine_imports_no_pandas(tmp_path):
    code = (
        "import sys; from qextract.cli import main; "
        f"main(['inspect', {str(zoo.EXAMPLES / 'digits_qcnn.keras')!r}, '--engine', 'numpy']); "
        "print(sorted(m for m in ('pandas', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]
