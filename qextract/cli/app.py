"""The ``qextract`` command: the parser built from COMMANDS, and ``main``, which turns outcomes into exit codes.

Only the CLI prints and chooses exit codes: a
:class:`~qextract.errors.QExtractError` becomes one line on stderr and its
class's exit code, followed by the options for the API arguments its fix
names (:data:`~.options.FLAGS`); Ctrl-C and SIGTERM end cleanly (130, 143);
anything else is an internal error (1). TensorFlow is imported by the
commands that load a model, never for ``--help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import QExtractError
from .commands import COMMANDS
from .exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, epilog
from .options import FLAGS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qextract",
        description="Exact quantized weights, integer codes and scales from QKeras models.",
        epilog=epilog(),
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
    for command in COMMANDS:
        p = sub.add_parser(command.name, parents=[common], help=command.help)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def error_line(error: QExtractError) -> str:
    """``error``'s message, then ``On the command line: --force.``: the options for the API arguments it names."""
    message = str(error)
    flags = [FLAGS[a] for a in error.arguments if a in FLAGS]
    if not flags:
        return message
    end = "" if message.rstrip().endswith((".", "!", "?")) else "."
    return f"{message.rstrip()}{end} On the command line: {', '.join(flags)}."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qextract`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # TensorFlow's C++ start-up chatter (CUDA probing etc.) is noise for this command.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..errors import QExtractWarning

    def show(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
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
            return int(args.handler(args))
    except QExtractError as e:
        if args.debug:
            raise
        print(f"qextract: error: {error_line(e)}", file=sys.stderr)
        return e.exit_code
    except MemoryError as e:
        if args.debug:
            raise
        print(
            f"qextract: error: out of memory ({str(e)[:200]}). "
            "Fix: fewer --samples, a smaller --batch-size or less data",
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
    """Install ``handler`` for SIGTERM; the previous handler, or None where handlers cannot be set (not main thread)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None
