"""``qextract simulate MODEL --data X``: the integer simulation against QKeras, one row per layer.

Exits 0 when every layer matches QKeras (or differs only where float32 rounding explains it),
9 (VerificationError) when any element is unexplained.
"""

from __future__ import annotations

import argparse

from ..errors import VerificationError
from .options import Command, add_model_args, positive
from .running import inputs, load, write_csv


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--data", required=True, help="inputs: .npy, .npz (one array), or 'digits' (scikit-learn's digits)")
    p.add_argument(
        "--input-format",
        metavar="TYPE",
        help="put the input on this grid: 'ap_fixed<W,I>' / 'ap_ufixed<W,I>' (HLS modes optional, default "
        "AP_TRN, AP_WRAP) or a quantizer such as 'quantized_bits(8,0,1)'; default: the model's first "
        "QActivation, else the input stays float",
    )
    p.add_argument("--batch-size", type=positive, default=1024, metavar="N")
    p.add_argument("--samples", type=positive, metavar="N", help="only the first N samples of --data")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def run(args: argparse.Namespace) -> int:
    """Simulate, compare with QKeras, print the table; 0 when it passes, a VerificationError otherwise."""
    import pandas as pd

    from .._atomic import check_outputs
    from ..network.comparison import SHOWN, compare

    check_outputs({"--csv": args.csv}, inputs(args))  # before the slow model load
    table = compare(
        load(args),
        args.data,
        input_format=args.input_format,
        batch_size=args.batch_size,
        layers=args.layers,
        samples=args.samples,
    )
    if args.csv:
        write_csv(args.csv, table)
    shown = table[list(SHOWN)].assign(passed=table["passed"].map({True: "pass", False: "FAIL"}))
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250):
        print(shown.to_string(index=False))
    samples = table.attrs["samples"]
    if not table.attrs["passed"]:
        failed = table[~table["passed"]]
        first = table.attrs["unexplained"][0] if table.attrs["unexplained"] else ""
        raise VerificationError(
            f"{int(failed['unexplained'].sum())} element(s) in {len(failed)} layer(s) ({', '.join(failed['layer'])}) "
            f"differ from QKeras on {samples} samples without a float32 cause; first: {first}"
        )
    divergence = table.attrs["first_divergence"]
    where = f"; first layer where float32 rounding differs: {divergence}" if divergence else ""
    print(f"simulated {samples} samples: every layer matches QKeras bit for bit or within float32 rounding{where}")
    return 0


COMMAND = Command("simulate", "the network in exact integers, compared with QKeras layer by layer", add_arguments, run)
