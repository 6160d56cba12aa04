"""``qextract verify``: recompute every layer from an export's files and compare with the model's layers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import VerificationError
from .options import MAX_SAMPLES, Command, add_trust_arg, samples
from .running import load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "export_dir", metavar="DIR", help="folder written by 'qextract export' (or its QONNX model.onnx, which is run)"
    )
    p.add_argument("--model", required=True, help="the model the export came from")
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument(
        "--samples",
        type=samples,
        default=None,
        metavar="N",
        help=f"input samples per layer, 1 to {MAX_SAMPLES} (default 4; 1000 for a QONNX file)",
    )
    add_trust_arg(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..verification.qonnx_check import find_qonnx
    from ..verification.readback import read_manifest

    args.layers = None
    if find_qonnx(args.export_dir) is not None:
        return _verify_qonnx(args)
    read_manifest(Path(args.export_dir))  # not an export: say so before the slow model load
    return print_verification(args.export_dir, load(args), 4 if args.samples is None else args.samples)


def _verify_qonnx(args: argparse.Namespace) -> int:
    """Run the QONNX file and compare every recorded layer output with the model's; 9 when any differs."""
    from ..exporting.qonnx_run import require
    from ..verification.qonnx_check import verify_qonnx

    require("qonnx")  # before the slow model load: the extra is missing
    table = verify_qonnx(args.export_dir, load(args), samples=1000 if args.samples is None else args.samples)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    failed = table[~table["passed"]]
    if len(failed):
        print(f"qextract: error: {len(failed)} layer output(s) differ: {', '.join(failed['layer'])}", file=sys.stderr)
        return VerificationError.exit_code
    print(
        f"verified {table.attrs['file']}: qonnx's executor reproduces every quantized layer output of the model bit "
        f"for bit on {table.attrs['samples']} inputs"
    )
    return 0


def print_verification(out_dir: Any, model: Any, samples: int) -> int:
    """Verify ``out_dir`` against ``model``, print the table and the verdict; the exit code (9: a layer differs)."""
    from ..verification.verifier import verify

    table = verify(out_dir, model, samples=samples)
    shown = table.assign(passed=table["passed"].map({True: "pass", False: "FAIL", None: "skipped"}))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    failed = table[table["passed"] == False]  # noqa: E712 - None means skipped
    if len(failed):
        print(f"qextract: error: {len(failed)} layer(s) differ: {', '.join(failed['layer'])}", file=sys.stderr)
        return VerificationError.exit_code
    formats = ", ".join(table.attrs.get("formats_checked", []))
    selected = table.attrs.get("selected_layers")
    scope = (
        ""
        if selected is None
        # say so: the model's other layers are in no file, so nothing proves them
        else (f" (the export holds only the layers it was restricted to: {', '.join(selected)})")
    )
    print(
        f"verified {int((table['passed'] == True).sum())} layers{scope}: outputs recomputed from the files match; "  # noqa: E712
        f"every file ({formats}) holds the same codes"
    )
    return 0


COMMAND = Command("verify", "recompute layers from an export and compare with the Keras layers", add_arguments, run)
