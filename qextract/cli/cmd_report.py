"""``qextract report``: float vs quantized error per layer output (and per weight tensor), as CSV and a plot."""

from __future__ import annotations

import argparse

from .options import Command, add_model_args, positive
from .running import extract_layers, inputs, load, write_csv


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument(
        "--data", required=True, help="calibration inputs: .npy, .npz (one array), or 'digits' (scikit-learn's digits)"
    )
    p.add_argument("--csv", required=True, metavar="FILE", help="layer error table")
    p.add_argument("--weights-csv", metavar="FILE", help="also write the weight table")
    p.add_argument(
        "--mode",
        choices=("propagated", "isolated"),
        default="propagated",
        help="accumulated error, or each layer's own error",
    )
    p.add_argument("--plot", metavar="PNG", help="also draw per-layer SNR and relative error")
    p.add_argument("--batch-size", type=positive, default=256, metavar="N")
    p.add_argument(
        "--float-model", metavar="FILE", help="your own float model (matched by layer name) instead of the float twin"
    )


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_outputs
    from ..analysis.report import error_report
    from ..analysis.weights import weight_report
    from ..reading.loading import load_model

    check_outputs({"--csv": args.csv, "--weights-csv": args.weights_csv, "--plot": args.plot}, inputs(args))
    model = load(args)
    float_model = load_model(args.float_model, trusted=args.trust_model) if args.float_model else None
    table = error_report(
        model, args.data, float_model, mode=args.mode, batch_size=args.batch_size, quiet=args.quiet, layers=args.layers
    )
    weights = weight_report(extract_layers(model, args.layers)) if args.weights_csv else None
    outputs = [(args.csv, table)] + ([(args.weights_csv, weights)] if weights is not None else [])
    for path, frame in outputs:
        write_csv(path, frame)
    if args.plot:
        from ..analysis.plot import plot_report

        plot_report(table, args.plot, title=f"{model.name}: {args.mode} error")
    shown = table[["layer", "stage", "class", "rmse", "rel_l2_err", "snr_db", "cosine", "frac_saturated"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("wrote " + ", ".join(str(p) for p, _ in outputs) + (f", {args.plot}" if args.plot else ""))
    return 0


COMMAND = Command(
    "report", "float vs quantized error per layer output (and per weight tensor), as CSV", add_arguments, run
)
