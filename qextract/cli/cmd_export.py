"""``qextract export``: write tensors in a layout and formats with manifest.json, optionally verified."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .options import Command, add_engine_arg, add_model_args, bounded, format_list, layout
from .running import load, quiet_tensorflow


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..exporting.exporter import MAX_WORD_BITS, WORD_FORMATS
    from ..writers import FORMATS

    add_model_args(p)
    add_engine_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must not exist or be empty)")
    p.add_argument(
        "--layout",
        default="hwio",
        type=layout,
        metavar="NAME",
        help="hwio (alias keras, tf), ohwi (tflite), oihw (pytorch, onnx, caffe), any case, "
        "or e.g. HWIO->OHWI (default hwio)",
    )
    p.add_argument(
        "--format",
        default="npz,header,mem",
        type=format_list,
        metavar="LIST",
        help=f"comma-separated, from: {','.join(FORMATS)}; or qonnx alone: the whole network as one QONNX file "
        "(default npz,header,mem)",
    )
    p.add_argument(
        "--word-bits",
        type=bounded(1, MAX_WORD_BITS),
        metavar="N",
        help=f"pack several codes into each N-bit memory word, N from 1 to {MAX_WORD_BITS} "
        f"({', '.join(WORD_FORMATS)} only)",
    )
    p.add_argument(
        "--dense-as-conv", action="store_true", help="write a Dense layer fed by Flatten in convolution form (H,W,C,O)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a previous export in --out (never a folder holding anything else or the model)",
    )
    p.add_argument(
        "--verify", action="store_true", help="then recompute every layer from the written files and compare"
    )


def run(args: argparse.Namespace) -> int:
    from ..exporting.exporter import WORD_FORMATS, check_output, export
    from .cmd_verify import print_verification

    if args.format == ["qonnx"]:
        return _export_qonnx(args)
    if args.word_bits is not None and not set(args.format) & set(WORD_FORMATS):
        raise UsageError(
            f"--word-bits {args.word_bits} changes only the formats that store memory words "
            f"({', '.join(WORD_FORMATS)}); --format {','.join(args.format)} has none of them. "
            "Fix: add one to --format, or leave out --word-bits."
        )
    protect = [p for p in (args.model, args.weights) if p is not None]
    check_output(args.out, force=args.force, protect=protect)  # before the slow model load
    # --verify recomputes from the Keras model, so auto loads it once for both; otherwise the file is the source
    model = load(args) if args.engine == "qkeras" or (args.engine == "auto" and args.verify) else None
    quiet_tensorflow(args)
    result = export(
        args.model if model is None else model,
        args.out,
        layout=args.layout,
        formats=args.format,
        layers=args.layers,
        word_bits=args.word_bits,
        dense_as_conv=args.dense_as_conv,
        force=args.force,
        protect=protect,
        engine=args.engine if model is None else "auto",
        weights=args.weights if model is None else None,
        trusted=args.trust_model,
    )
    n = len(result.manifest.tensors)
    print(
        f"exported {n} tensors in layout {args.layout} as {', '.join(args.format)}: "
        f"{len(result.files)} files in {result.out_dir}"
    )
    if args.verify:
        return print_verification(result.out_dir, load(args) if model is None else model, 4)
    return 0


def _export_qonnx(args: argparse.Namespace) -> int:
    """``--format qonnx``: DIR/model.onnx (or --out FILE.onnx) for the whole network; prints one line."""
    import os

    from .._atomic import check_outputs
    from ..exporting.qonnx import qonnx_target, require, to_qonnx

    require("onnx")  # before anything else: the extra is missing
    options = {"--layers": args.layers, "--word-bits": args.word_bits, "--dense-as-conv": args.dense_as_conv}
    given = {**options, "--verify": args.verify, "--engine numpy": args.engine == "numpy"}
    refused = [flag for flag, value in given.items() if value]
    if refused:
        raise UsageError(
            f"--format qonnx writes the whole network as one graph; {', '.join(refused)} do not apply. "
            "Fix: leave them out (or export other formats separately)"
        )
    target = qonnx_target(args.out, args.force)  # before the slow model load
    check_outputs({"--out": target}, {"model": args.model, "weights file": args.weights})
    model = load(args)
    result = to_qonnx(model, target, force=args.force, source=os.path.basename(args.model))
    print(
        f"exported model '{model.name}' as QONNX: {result.nodes} nodes, input '{result.input_name}', in {result.path}"
    )
    return 0


COMMAND = Command("export", "write tensors in a layout and formats, with manifest.json", add_arguments, run)
