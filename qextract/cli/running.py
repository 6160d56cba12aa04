"""What the commands do alike once their arguments are parsed: load the model, guard outputs, write tables.

Every import of the library happens inside these functions, so that
``qextract --help`` loads no TensorFlow.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import ExportError, UsageError


def load(args: argparse.Namespace) -> Any:
    """The model the command names (MODEL, --weights, --trust-model), TensorFlow quiet unless --debug."""
    from .._keras import start_quietly
    from ..reading.loading import load_model

    if not args.debug:
        start_quietly()

    return load_model(args.model, weights=args.weights, trusted=args.trust_model)


def quiet_tensorflow(args: argparse.Namespace) -> None:
    """Silence TensorFlow's start-up (unless --debug) whenever an engine first needs it, not before."""
    from .._keras import start_quietly
    from ..engines import before_tensorflow

    if not args.debug:
        before_tensorflow.append(start_quietly)


def extraction(args: argparse.Namespace) -> Any:
    """The model file extracted by --engine, TensorFlow started only if the engine needs it."""
    from ..engines import extract_file

    quiet_tensorflow(args)
    return extract_file(
        args.model, weights=args.weights, layers=args.layers, engine=args.engine, trusted=args.trust_model
    )


def extract_layers(model: Any, layers: list[str] | None) -> Any:
    from ..reading.extraction import extract

    return extract(model, layers=layers)


def inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """Every file the command reads, by the name a message should give it: outputs must never replace them."""
    data = getattr(args, "data", None)
    return {
        "model": args.model,
        "weights file": args.weights,
        "data file": data if data is not None and os.path.lexists(data) else None,
        "float model": getattr(args, "float_model", None),
    }


def write_csv(path: str, table: Any) -> None:
    """``table`` (a DataFrame) as CSV at ``path``, all or nothing."""
    from .._atomic import atomic_file

    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False)


def pairs(items: list[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments of ``flag`` as a dict; anything else is a UsageError naming it."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{flag} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def check_model_output(args: argparse.Namespace, outputs: dict[str, str | None], inputs_: dict[str, str]) -> None:
    """A new model file (.h5; .keras or .h5 under Keras 3), never an input (the model file is never modified),
    an existing one only with --force."""
    from .._atomic import check_outputs
    from .._keras import generation

    suffixes = generation().model_suffixes
    if not args.out.lower().endswith(suffixes):
        raise UsageError(
            f"--out {args.out}: give a {suffixes[0]} file for the new model (or {', '.join(suffixes[1:])})"
        )
    check_outputs(outputs, {**inputs(args), **inputs_})
    if os.path.lexists(args.out) and not args.force:
        raise ExportError(f"--out {args.out}: exists. Fix: choose another --out, or pass --force to replace it.")


def save_model(model: Any, out: str) -> None:
    """Saved under a temporary name beside ``out`` and renamed into place only when complete."""
    import logging

    from .._atomic import atomic_file
    from .._keras import generation

    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # saving an uncompiled model logs that its metrics are not built
    try:
        with atomic_file(out) as tmp:
            generation().save_model(model, tmp, os.path.splitext(out)[1].lower())
    except OSError as e:
        raise ExportError(f"--out {out}: writing failed ({e.strerror or e}); nothing was left behind") from None
    finally:
        tf_log.setLevel(level)
