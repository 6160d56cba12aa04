"""``qextract widths MODEL``: each accumulator's exact worst-case range and width, from the integer weights."""

from __future__ import annotations

import argparse

from .options import Command, add_model_args
from .running import inputs, load, write_csv


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument(
        "--input-format",
        metavar="TYPE",
        help="the model input's grid: 'ap_fixed<W,I>' or a quantizer; default: the model's first QActivation",
    )
    p.add_argument("--data", help="also the range observed on these inputs (.npy, .npz or 'digits')")
    p.add_argument("--per-channel", action="store_true", help="one row per output channel")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from .._atomic import check_outputs
    from ..network.golden import accumulator_widths

    check_outputs({"--csv": args.csv}, inputs(args))
    table = accumulator_widths(load(args), args.input_format, args.data, per_channel=args.per_channel)
    if args.layers:
        table = table[table["layer"].isin(args.layers)]
    if args.csv:
        write_csv(args.csv, table)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250):
        print(table.to_string(index=False))
    return 0


COMMAND = Command("widths", "accumulator ranges, widths and ap_fixed types per layer", add_arguments, run)
