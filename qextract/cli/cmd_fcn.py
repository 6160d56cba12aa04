"""``qextract fcn``: a fully convolutional copy of a model, its Flatten -> Dense head as convolutions."""

from __future__ import annotations

import argparse

from .options import Command, add_trust_arg
from .running import check_model_output, load, save_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a CNN with a Flatten -> Dense head (the file itself is never modified)")
    p.add_argument(
        "--out", required=True, metavar="NEW.h5", help="the new model (.h5, .keras under Keras 3; never MODEL)"
    )
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never MODEL)")
    add_trust_arg(p)
    p.set_defaults(layers=None)


def run(args: argparse.Namespace) -> int:
    from ..importing.fcn import fully_convolutional

    check_model_output(args, {"--out": args.out}, {})
    model = fully_convolutional(load(args))
    save_model(model, args.out)
    print(f"wrote {args.out}: model '{model.name}', input {model.input_shape}, output {model.output_shape}")
    return 0


COMMAND = Command(
    "fcn", "a fully convolutional copy of MODEL: its Flatten -> Dense head as convolutions", add_arguments, run
)
