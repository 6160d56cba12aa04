"""``qextract inspect``: one row per tensor (quantizer, format, codes used, exactness), printed and as CSV."""

from __future__ import annotations

import argparse

from .options import Command, add_engine_arg, add_model_args
from .running import extraction, inputs, write_csv


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_engine_arg(p)
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_outputs
    from ..reading.summary import COLUMNS, inspect_rows, render

    check_outputs({"--csv": args.csv}, inputs(args))
    rows = inspect_rows(extraction(args))
    if args.csv:
        import pandas as pd

        write_csv(args.csv, pd.DataFrame(rows, columns=COLUMNS))
    print(render(rows))
    return 0


COMMAND = Command("inspect", "one row per tensor: quantizer, format, codes used, exactness", add_arguments, run)
