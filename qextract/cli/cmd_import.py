"""``qextract import``: weights from an export, a .tflite file or a state dict into a copy of a model."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from .options import Command, add_trust_arg, layout
from .running import check_model_output, load, pairs, save_model, write_csv


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the model to receive the weights (the file itself is never modified)")
    p.add_argument(
        "source",
        help="a qextract export folder, a .tflite file, an .npz (PyTorch state dict or Keras names) or a .pt file",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="NEW.h5",
        help="the model with the new weights (.h5, .keras under Keras 3; never MODEL or SOURCE)",
    )
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument(
        "--layout",
        type=layout,
        metavar="NAME",
        help="layout of an .npz or .pt: oihw (pytorch, onnx, caffe), ohwi (tflite), hwio (keras), or e.g. OIHW->HWIO",
    )
    p.add_argument(
        "--map",
        nargs="+",
        default=[],
        metavar="LAYER=MODULE",
        help="pair a Keras layer with a PyTorch module (LAYER=DW,PW for a separable layer)",
    )
    p.add_argument(
        "--flatten-order",
        choices=("chw", "hwc"),
        help="input order of a Dense-after-Flatten kernel in the source (default: chw for oihw, else hwc)",
    )
    p.add_argument(
        "--source-padding",
        choices=("symmetric", "tf"),
        help="how the source padded its convolutions (default: symmetric for a PyTorch state dict, else tf)",
    )
    p.add_argument(
        "--pad", nargs="+", default=[], metavar="LAYER=T,B,L,R", help="the source's explicit padding of named layers"
    )
    p.add_argument(
        "--pad-explicitly",
        action="store_true",
        help="insert ZeroPadding2D + padding='valid' where the source pads otherwise than Keras",
    )
    p.add_argument(
        "--no-strict",
        action="store_true",
        help="keep the weights the source lacks and leave out source tensors the model has no place for",
    )
    p.add_argument("--csv", metavar="FILE", help="also write the report (one row per tensor) as CSV")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never MODEL or SOURCE)")
    add_trust_arg(p)
    p.set_defaults(layers=None)


def run(args: argparse.Namespace) -> int:
    from ..importing import load_weights

    # "LAYER=DW,PW" pairs a separable layer with its two modules
    mapping: dict[str, Any] = {k: tuple(v.split(",")) if "," in v else v for k, v in pairs(args.map, "--map").items()}
    pads = {}
    for layer, text in pairs(args.pad, "--pad").items():
        try:
            pads[layer] = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise UsageError(
                f"--pad {layer}={text}: give integers, e.g. {layer}=0,1,0,1 (top, bottom, left, right)"
            ) from None
    if pads and args.source_padding:
        raise UsageError("give --source-padding or --pad, not both")
    check_model_output(args, {"--out": args.out, "--csv": args.csv}, {"weights source": args.source})
    model = load(args)
    report = load_weights(
        model,
        args.source,
        layout=args.layout,
        strict=not args.no_strict,
        mapping=mapping or None,
        flatten_order=args.flatten_order,
        source_padding=pads or args.source_padding,
        pad_explicitly=args.pad_explicitly,
    )
    save_model(report.model, args.out)
    table = report.table()
    if args.csv:
        write_csv(args.csv, table)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", 60
    ):
        print(table.drop(columns=["layer_class"]).to_string(index=False))
        if report.paddings:
            print(report.padding_table().to_string(index=False))
    print(f"{report}; wrote {args.out}")
    return 0


COMMAND = Command(
    "import", "load weights from an export, .tflite or state dict into a copy of MODEL", add_arguments, run
)
