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
    from ..reading.summary import inspect_table

    check_outputs({"--csv": args.csv}, inputs(args))
    table = inspect_table(extraction(args))
    if args.csv:
        write_csv(args.csv, table)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", 48
    ):
        print(table.to_string(index=False))
    return 0


COMMAND = Command("inspect", "one row per tensor: quantizer, format, codes used, exactness", add_arguments, run)
