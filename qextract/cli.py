"""The ``qextract`` command: thin argument parsing over the Python API.

Only this module prints and chooses exit codes. TensorFlow is imported by
the subcommands that load a model, never for ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from .errors import QExtractError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: .h5, .keras, a SavedModel folder, or an architecture .json (with --weights)")
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="only these layers (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qextract",
        description="Exact quantized weights, integer codes and scales from QKeras models.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage, 3 model load, 4 unsupported layer/quantizer, "
        "5 not exact, 6 layout, 7 data, 8 output, 9 verification mismatch, 10 Keras environment, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no warnings or progress output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="one row per tensor: quantizer, format, codes used, exactness")
    _add_model_args(p)
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    p.set_defaults(handler=_inspect)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qextract")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _load(args: argparse.Namespace):  # noqa: ANN202
    from ._keras import start_quietly
    from .model import load_model

    if not args.debug:
        start_quietly()

    return load_model(args.model, weights=args.weights)


def _inspect(args: argparse.Namespace) -> int:
    from .extract import extract
    from .summary import inspect_table

    ex = extract(_load(args), layers=args.layers)
    table = inspect_table(ex)
    if args.csv:
        from ._atomic import atomic_file

        with atomic_file(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", 48):
        print(table.to_string(index=False))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qextract`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # TensorFlow's C++ start-up chatter (CUDA probing etc.) is noise for this command.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.quiet:
        warnings.simplefilter("ignore")
    else:
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.formatwarning = lambda message, category, *a, **k: f"qextract: warning: {message}\n"
    try:
        return args.handler(args)
    except QExtractError as e:
        if args.debug:
            raise
        print(f"qextract: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qextract: interrupted; no output was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
