"""The ``qextract`` command: thin argument parsing over the Python API.

Only this module prints and chooses exit codes. TensorFlow is imported by
the subcommands that load a model, never for ``--help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import QExtractError, UsageError

if TYPE_CHECKING:
    from .layouts import Layout

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process SIGTERM ended
MAX_SAMPLES = 10_000
"""verify recomputes each layer on all its samples at once: more would only exhaust memory."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="model file: .h5, .keras, a SavedModel folder, or an architecture .json (with --weights)"
    )
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="only these layers (default: all)")
    _add_trust_arg(p)


def _add_trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="allow model files that carry Python code (Lambda layers), which Keras runs while loading them",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qextract",
        description="Exact quantized weights, integer codes and scales from QKeras models.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage, 3 model load, 4 unsupported layer/quantizer, "
        "5 not exact, 6 layout, 7 data, 8 output, 9 verification mismatch, 10 Keras environment, "
        "11 float model mismatch, 12 not an export folder, 130 interrupted (SIGINT), 143 terminated (SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no warnings or progress output")
    # The same two options after the command name too (``qextract export ... --quiet``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no warnings or progress output"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", parents=[common], help="one row per tensor: quantizer, format, codes used, exactness")
    _add_model_args(p)
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    p.set_defaults(handler=_inspect)

    from .exporting.exporter import MAX_WORD_BITS, WORD_FORMATS
    from .writers import FORMATS

    p = sub.add_parser("export", parents=[common], help="write tensors in a layout and formats, with manifest.json")
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must not exist or be empty)")
    p.add_argument(
        "--layout",
        default="hwio",
        type=_layout,
        metavar="NAME",
        help="hwio (alias keras, tf), ohwi (tflite), oihw (pytorch, onnx, caffe), any case, or e.g. HWIO->OHWI (default hwio)",
    )
    p.add_argument(
        "--format",
        default="npz,header,mem",
        type=_format_list,
        metavar="LIST",
        help=f"comma-separated, from: {','.join(FORMATS)} (default npz,header,mem)",
    )
    p.add_argument(
        "--word-bits",
        type=_bounded(1, MAX_WORD_BITS),
        metavar="N",
        help=f"pack several codes into each N-bit memory word, N from 1 to {MAX_WORD_BITS} ({', '.join(WORD_FORMATS)} only)",
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
    p.set_defaults(handler=_export)

    p = sub.add_parser(
        "verify", parents=[common], help="recompute layers from an export and compare with the Keras layers"
    )
    p.add_argument("export_dir", metavar="DIR", help="folder written by 'qextract export'")
    p.add_argument("--model", required=True, help="the model the export came from")
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument(
        "--samples",
        type=_samples,
        default=4,
        metavar="N",
        help=f"input samples per layer, 1 to {MAX_SAMPLES} (default 4)",
    )
    _add_trust_arg(p)
    p.set_defaults(handler=_verify)

    p = sub.add_parser(
        "report", parents=[common], help="float vs quantized error per layer output (and per weight tensor), as CSV"
    )
    _add_model_args(p)
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
    p.add_argument("--batch-size", type=_positive, default=256, metavar="N")
    p.add_argument(
        "--float-model", metavar="FILE", help="your own float model (matched by layer name) instead of the float twin"
    )
    p.set_defaults(handler=_report)

    from .network import command as simulate_command  # the command's logic lives with the simulation

    p = sub.add_parser(
        "simulate", parents=[common], help="the network in exact integers, compared with QKeras per layer"
    )
    simulate_command.add_arguments(p)
    p.set_defaults(handler=simulate_command.run)

    # --- issue 14: weights into a model, and fully convolutional models ---
    p = sub.add_parser(
        "import", parents=[common], help="load weights from an export, .tflite or state dict into a copy of MODEL"
    )
    p.add_argument("model", help="the model to receive the weights (the file itself is never modified)")
    p.add_argument(
        "source",
        help="a qextract export folder, a .tflite file, an .npz (PyTorch state dict or Keras names) or a .pt file",
    )
    p.add_argument(
        "--out", required=True, metavar="NEW.h5", help="the model with the new weights (.h5; never MODEL or SOURCE)"
    )
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument(
        "--layout",
        type=_layout,
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
    _add_trust_arg(p)
    p.set_defaults(handler=_import, layers=None)

    p = sub.add_parser(
        "fcn", parents=[common], help="a fully convolutional copy of MODEL: its Flatten -> Dense head as convolutions"
    )
    p.add_argument("model", help="a CNN with a Flatten -> Dense head (the file itself is never modified)")
    p.add_argument("--out", required=True, metavar="NEW.h5", help="the new model (.h5; never MODEL)")
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never MODEL)")
    _add_trust_arg(p)
    p.set_defaults(handler=_fcn, layers=None)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value}")
    return value


def _samples(text: str) -> int:
    value = _positive(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_SAMPLES} (each layer is recomputed on all of them at once), not {value}"
        )
    return value


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text!r}")
        return value

    return parse


def _layout(text: str) -> Layout:
    """Exactly what :meth:`qextract.Layout.parse` accepts; its message (names and aliases) otherwise."""
    from .errors import LayoutError
    from .layouts import Layout

    try:
        return Layout.parse(text)
    except LayoutError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _format_list(text: str) -> list[str]:
    """``--format``'s comma-separated names, validated where every format name is (argparse's error, exit 2)."""
    from .writers import check_names

    return check_names([n.strip() for n in text.split(",") if n.strip()], argparse.ArgumentTypeError, typed=True)


def _load(args: argparse.Namespace):
    from ._keras import start_quietly
    from .reading.loading import load_model

    if not args.debug:
        start_quietly()

    return load_model(args.model, weights=args.weights, trusted=args.trust_model)


def _inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """Every file the command reads, by the name a message should give it: outputs must never replace them."""
    data = getattr(args, "data", None)
    return {
        "model": args.model,
        "weights file": args.weights,
        "data file": data if data is not None and os.path.lexists(data) else None,
        "float model": getattr(args, "float_model", None),
    }


def _inspect(args: argparse.Namespace) -> int:
    from ._atomic import check_outputs
    from .reading.summary import inspect_table

    check_outputs({"--csv": args.csv}, _inputs(args))
    ex = _extract(_load(args), args.layers)
    table = inspect_table(ex)
    if args.csv:
        from ._atomic import atomic_file

        with atomic_file(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", 48
    ):
        print(table.to_string(index=False))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from .exporting.exporter import WORD_FORMATS, check_output, export

    if args.word_bits is not None and not set(args.format) & set(WORD_FORMATS):
        raise UsageError(
            f"--word-bits {args.word_bits} changes only the formats that store memory words ({', '.join(WORD_FORMATS)}); "
            f"--format {','.join(args.format)} has none of them. Fix: add one to --format, or leave out --word-bits."
        )
    protect = [p for p in (args.model, args.weights) if p is not None]
    check_output(args.out, force=args.force, protect=protect)  # before the slow model load
    model = _load(args)
    result = export(
        model,
        args.out,
        layout=args.layout,
        formats=args.format,
        layers=args.layers,
        word_bits=args.word_bits,
        dense_as_conv=args.dense_as_conv,
        force=args.force,
        protect=protect,
    )
    n = len(result.manifest.tensors)
    print(
        f"exported {n} tensors in layout {args.layout} as {', '.join(args.format)}: {len(result.files)} files in {result.out_dir}"
    )
    if args.verify:
        return _print_verification(result.out_dir, model, 4)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from ._atomic import atomic_file, check_outputs
    from .analysis.report import error_report, weight_report
    from .reading.loading import load_model

    check_outputs({"--csv": args.csv, "--weights-csv": args.weights_csv, "--plot": args.plot}, _inputs(args))
    model = _load(args)
    float_model = load_model(args.float_model, trusted=args.trust_model) if args.float_model else None
    table = error_report(
        model, args.data, float_model, mode=args.mode, batch_size=args.batch_size, quiet=args.quiet, layers=args.layers
    )
    weights = weight_report(_extract(model, args.layers)) if args.weights_csv else None
    outputs = [(args.csv, table)] + ([(args.weights_csv, weights)] if weights is not None else [])
    for path, frame in outputs:
        with atomic_file(path) as tmp:
            frame.to_csv(tmp, index=False)
    if args.plot:
        from .analysis.plot import plot_report

        plot_report(table, args.plot, title=f"{model.name}: {args.mode} error")
    shown = table[["layer", "stage", "class", "rmse", "rel_l2_err", "snr_db", "cosine", "frac_saturated"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("wrote " + ", ".join(str(p) for p, _ in outputs) + (f", {args.plot}" if args.plot else ""))
    return EXIT_OK


def _extract(model, layers):
    from .reading.extraction import extract

    return extract(model, layers=layers)


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .verification.verifier import _read_manifest

    _read_manifest(Path(args.export_dir))  # not an export: say so before the slow model load
    args.layers = None
    return _print_verification(args.export_dir, _load(args), args.samples)


def _print_verification(out_dir: str, model, samples: int) -> int:
    from .verification.verifier import verify

    table = verify(out_dir, model, samples=samples)
    shown = table.assign(passed=table["passed"].map({True: "pass", False: "FAIL", None: "skipped"}))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    failed = table[table["passed"] == False]  # noqa: E712 - None means skipped
    if len(failed):
        print(f"qextract: error: {len(failed)} layer(s) differ: {', '.join(failed['layer'])}", file=sys.stderr)
        return 9
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
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from .importing import load_weights

    mapping = {k: tuple(v.split(",")) if "," in v else v for k, v in _pairs(args.map, "--map").items()}
    pads = {}
    for layer, text in _pairs(args.pad, "--pad").items():
        try:
            pads[layer] = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise UsageError(
                f"--pad {layer}={text}: give integers, e.g. {layer}=0,1,0,1 (top, bottom, left, right)"
            ) from None
    if pads and args.source_padding:
        raise UsageError("give --source-padding or --pad, not both")
    _check_model_output(args, {"--out": args.out, "--csv": args.csv}, {"weights source": args.source})
    model = _load(args)
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
    _save_model(report.model, args.out)
    table = report.table()
    if args.csv:
        from ._atomic import atomic_file

        with atomic_file(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 250, "display.max_colwidth", 60
    ):
        print(table.drop(columns=["layer_class"]).to_string(index=False))
        if report.paddings:
            print(report.padding_table().to_string(index=False))
    print(f"{report}; wrote {args.out}")
    return EXIT_OK


def _fcn(args: argparse.Namespace) -> int:
    from .importing.fcn import fully_convolutional

    _check_model_output(args, {"--out": args.out}, {})
    model = fully_convolutional(_load(args))
    _save_model(model, args.out)
    print(f"wrote {args.out}: model '{model.name}', input {model.input_shape}, output {model.output_shape}")
    return EXIT_OK


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{flag} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _check_model_output(args: argparse.Namespace, outputs: dict[str, str | None], inputs: dict[str, str]) -> None:
    """A new model file: .h5, never an input (the model file is never modified), an existing one only with --force."""
    from ._atomic import check_outputs
    from .errors import ExportError

    if not args.out.endswith((".h5", ".hdf5")):
        raise UsageError(f"--out {args.out}: give a .h5 file for the new model")
    check_outputs(outputs, {**_inputs(args), **inputs})
    if os.path.lexists(args.out) and not args.force:
        raise ExportError(f"--out {args.out}: exists. Fix: choose another --out, or pass --force to replace it.")


def _save_model(model: Any, out: str) -> None:
    """Saved under a temporary name beside ``out`` and renamed into place only when complete."""
    import logging

    from ._atomic import atomic_file
    from .errors import ExportError

    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # saving an uncompiled model logs that its metrics are not built
    try:
        with atomic_file(out) as tmp:
            model.save(tmp, save_format="h5")
    except OSError as e:
        raise ExportError(f"--out {out}: writing failed ({e.strerror or e}); nothing was left behind") from None
    finally:
        tf_log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qextract`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # TensorFlow's C++ start-up chatter (CUDA probing etc.) is noise for this command.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .errors import QExtractWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"qextract: warning: {message}", file=sys.stderr)

    previous = _on_sigterm(_terminate)
    try:
        with warnings.catch_warnings():
            # Only qextract's own warnings concern the user; TensorFlow/Keras chatter shows with --debug.
            if not args.debug:
                warnings.simplefilter("ignore")
            if not args.quiet:
                warnings.simplefilter("default", QExtractWarning)
                warnings.showwarning = show
            return args.handler(args)
    except QExtractError as e:
        if args.debug:
            raise
        from .errors import UntrustedCodeError

        hint = " On the command line: --trust-model." if isinstance(e, UntrustedCodeError) else ""
        print(f"qextract: error: {e}{hint}", file=sys.stderr)
        return e.exit_code
    except MemoryError as e:
        if args.debug:
            raise
        print(
            f"qextract: error: out of memory ({str(e)[:200]}). Fix: fewer --samples, a smaller --batch-size or less data",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("qextract: interrupted; no output was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("qextract: terminated; no output was left behind", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as e:
        if args.debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(
            f"qextract: internal error: {type(e).__name__}: {first} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        if previous is not None:
            _on_sigterm(previous)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt, so every clean-up that Ctrl-C runs runs too."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM; the previous handler, or None where handlers cannot be set (not the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
