"""The command's exit codes, derived from the error classes (:func:`qextract.errors.exit_codes`).

Each :class:`~qextract.errors.QExtractError` class carries its code and
meaning; the command adds only what no error class stands for: 0 (success),
the unexpected errors that share 1 with :class:`~qextract.errors.QExtractError`,
and the signals (130, 143). The ``--help`` epilog is built from this table.
"""

from __future__ import annotations

import signal

from ..errors import ExitCode, QExtractError, UsageError, exit_codes

EXIT_OK = 0
EXIT_FAILURE = QExtractError.exit_code
EXIT_USAGE = UsageError.exit_code  # argparse's own, too
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process SIGTERM ended


def exit_code_table() -> list[ExitCode]:
    """Every exit code of the command, lowest first: success, the error classes' codes, the signals."""
    rows = [ExitCode(EXIT_OK, "success", ())]
    for row in exit_codes():
        if row.code == EXIT_FAILURE:
            row = ExitCode(row.code, f"{row.meaning}, an unexpected error or out of memory", row.classes)
        rows.append(row)
    rows.append(ExitCode(EXIT_INTERRUPTED, "interrupted (SIGINT)", ()))
    rows.append(ExitCode(EXIT_TERMINATED, "terminated (SIGTERM)", ()))
    return rows


def epilog() -> str:
    """The exit codes as the ``--help`` epilog: ``Exit codes: 0 success; 2 usage error (UsageError); ...``."""
    parts = [f"{r.code} {r.meaning}" + (f" [{', '.join(r.classes)}]" if r.classes else "") for r in exit_code_table()]
    return "Exit codes: " + "; ".join(parts) + "."
