"""What every command shares on the command line: the :class:`Command` entry, common options, argument types.

Argument types raise :class:`argparse.ArgumentTypeError`, so argparse
reports a bad value as ``qextract CMD: error: argument --x: ...`` with exit
code 2. :data:`FLAGS` says which option stands for an API argument, so that
a library error asking for ``force=True`` is followed by ``--force`` here.
Nothing in this module imports TensorFlow.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..layouts import Layout

MAX_SAMPLES = 10_000
"""verify recomputes each layer on all its samples at once: more would only exhaust memory."""

FLAGS: dict[str, str] = {
    "trusted": "--trust-model",
    "weights": "--weights",
    "layers": "--layers",
    "layout": "--layout",
    "out_dir": "--out",
    "out": "--out",
    "force": "--force",
    "strict": "--no-strict",
    "float_model": "--float-model",
    "input_format": "--input-format",
    "engine": "--engine",
    "reference": "--reference",
}
"""API argument a library error names (:attr:`~qextract.errors.QExtractError.arguments`) -> the option for it."""


@dataclass(frozen=True)
class Command:
    """One ``qextract`` subcommand: its name and one-line help, its arguments, and what it runs.

    ``run`` returns the exit code; it may raise any
    :class:`~qextract.errors.QExtractError`, which :func:`qextract.cli.main`
    turns into one line on stderr and the error's exit code.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """MODEL, --weights, --layers and --trust-model: how the commands that read one model take it."""
    p.add_argument(
        "model", help="model file: .h5, .keras, a SavedModel folder, or an architecture .json (with --weights)"
    )
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="only these layers (default: all)")
    add_trust_arg(p)


def add_engine_arg(p: argparse.ArgumentParser) -> None:
    """--engine: how a model file is extracted (:mod:`qextract.engines`)."""
    p.add_argument(
        "--engine",
        choices=("auto", "numpy", "qkeras"),
        default="auto",
        help="numpy: read the file with h5py and compute the quantizers in NumPy, without TensorFlow (a layer it "
        "cannot prove bit for bit is asked of QKeras, or refused); qkeras: load the model with Keras; "
        "auto (default): numpy for the .h5 / .json files it reads, else qkeras",
    )


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="allow model files that carry Python code (Lambda layers), which Keras runs while loading them",
    )


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value}")
    return value


def samples(text: str) -> int:
    value = positive(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_SAMPLES} (each layer is recomputed on all of them at once), not {value}"
        )
    return value


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text!r}")
        return value

    return parse


def layout(text: str) -> Layout:
    """Exactly what :meth:`qextract.Layout.parse` accepts; its message (names and aliases) otherwise."""
    from ..errors import LayoutError
    from ..layouts import Layout

    try:
        return Layout.parse(text)
    except LayoutError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def format_list(text: str) -> list[str]:
    """``--format``'s comma-separated names, validated where every format name is (argparse's error, exit 2)."""
    from ..writers import check_names

    if text.strip().lower() == "qonnx":  # the whole network as one file: a format of its own, alone
        return ["qonnx"]
    return check_names([n.strip() for n in text.split(",") if n.strip()], argparse.ArgumentTypeError, typed=True)
