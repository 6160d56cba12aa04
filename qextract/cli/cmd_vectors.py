"""``qextract vectors MODEL --data X --out DIR``: golden test vectors of every layer, from the integer simulation."""

from __future__ import annotations

import argparse

from .options import Command, add_model_args, positive
from .running import inputs, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--data", required=True, help="inputs: .npy, .npz (one array), or 'digits' (scikit-learn's digits)")
    p.add_argument("--out", required=True, metavar="DIR", help="the vectors folder (never an input)")
    p.add_argument("--samples", type=positive, metavar="N", help="only the first N samples of --data (default: all)")
    p.add_argument(
        "--input-format",
        metavar="TYPE",
        help="the input's grid: 'ap_fixed<W,I>' or a quantizer; default: the model's first QActivation",
    )
    p.add_argument("--force", action="store_true", help="replace a previous vectors folder (only that)")


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_folder_target
    from ..network.golden import golden_vectors

    protect = [p for p in inputs(args).values() if p is not None]
    check_folder_target(args.out, force=args.force, protect=protect, argument="out")  # before the model load
    model = load(args)
    result = golden_vectors(
        model,
        args.data,
        args.out,
        samples=args.samples,
        layers=args.layers,
        input_format=args.input_format,
        force=args.force,
        protect=protect,
    )
    m = result.manifest
    print(
        f"wrote {len(result.files)} files to {result.out_dir}: {len(m.layers)} layer(s) x {m.samples} sample(s) "
        f"(npz, .mem per tensor, tb_data/ for hls4ml, vectors.json)"
    )
    return 0


COMMAND = Command("vectors", "golden test vectors: each layer's input and output codes", add_arguments, run)
