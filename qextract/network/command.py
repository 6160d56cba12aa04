"""``qextract simulate MODEL --data X``: the integer simulation against QKeras, one row per layer.

Imports nothing heavy at module level, so that ``qextract --help`` stays
instant; :func:`run` loads TensorFlow when it loads the model. Exits 0 when
every layer matches QKeras (or differs only where float32 rounding explains
it), 9 (VerificationError) when any element is unexplained.
"""

from __future__ import annotations

import argparse

from ..errors import UsageError, VerificationError

SHOWN = (
    "layer",
    "class",
    "output",
    "format",
    "exact_integer",
    "elements",
    "equal",
    "propagated",
    "float32_accumulator",
    "float32_scale",
    "float_input",
    "unexplained",
    "passed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` subcommand's arguments (the model arguments included)."""
    parser.add_argument(
        "model", help="model file: .h5, .keras, a SavedModel folder, or an architecture .json (with --weights)"
    )
    parser.add_argument("--weights", help="weights .h5 for an architecture .json")
    parser.add_argument(
        "--data", required=True, help="inputs: .npy, .npz (one array), or 'digits' (scikit-learn's digits)"
    )
    parser.add_argument(
        "--input-format",
        metavar="TYPE",
        help="put the input on this grid: 'ap_fixed<W,I>' / 'ap_ufixed<W,I>' (HLS modes optional, default "
        "AP_TRN, AP_WRAP) or a quantizer such as 'quantized_bits(8,0,1)'; default: the model's first "
        "QActivation, else the input stays float",
    )
    parser.add_argument("--layers", nargs="+", metavar="NAME", help="only these layers in the table (default: all)")
    parser.add_argument("--batch-size", type=_positive, default=1024, metavar="N")
    parser.add_argument("--samples", type=_positive, metavar="N", help="only the first N samples of --data")
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="allow model files that carry Python code (Lambda layers), which Keras runs while loading them",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Simulate, compare with QKeras, print the table; 0 when it passes, a VerificationError otherwise."""
    import pandas as pd

    from .._keras import start_quietly
    from ..reading.loading import load_model
    from .comparison import compare

    if args.csv and args.csv in (args.model, args.weights, args.data):
        raise UsageError(f"--csv {args.csv} would overwrite an input file; give another path")
    if not getattr(args, "debug", False):
        start_quietly()
    model = load_model(args.model, weights=args.weights, trusted=args.trust_model)
    table = compare(
        model,
        args.data,
        input_format=args.input_format,
        batch_size=args.batch_size,
        layers=args.layers,
        samples=args.samples,
    )
    if args.csv:
        from .._atomic import atomic_file

        with atomic_file(args.csv) as tmp:
            table.to_csv(tmp, index=False)
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
