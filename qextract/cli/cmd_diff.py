"""``qextract diff``: two exports compared tensor by tensor, in Keras's native order."""

from __future__ import annotations

import argparse

from ..errors import ExportsDiffer
from .options import Command
from .running import write_csv

_SHOWN = ["tensor", "status", "differs_in", "elements", "codes_differ", "max_code_delta"]
_SHOWN += ["values_differ", "max_value_delta", "first_index"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="EXPORT_A", help="folder written by 'qextract export'")
    p.add_argument("b", metavar="EXPORT_B", help="another export folder (any layout and formats)")
    p.add_argument("--all", action="store_true", help="list every tensor, not only those that differ")
    p.add_argument("--csv", metavar="FILE", help="write the whole table (one row per tensor) to FILE")


def run(args: argparse.Namespace) -> int:
    from ..verification.comparison import diff

    d = diff(args.a, args.b)
    if args.csv:
        write_csv(args.csv, d.table)
    for line in d.header:
        print(f"export: {line}")
    rows = d.table if args.all else d.differences
    if len(rows):
        print(rows[_SHOWN].to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.6g}"))
    n, total = int((d.table["status"] != "same").sum()), len(d.table)
    if d.differs:
        print(f"{n} of {total} tensors differ")
        return ExportsDiffer.exit_code
    print(f"identical: {total} tensors hold the same codes, scales and formats")
    return 0


COMMAND = Command("diff", "compare two exports tensor by tensor (exit 13 when they differ)", add_arguments, run)
