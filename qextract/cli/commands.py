"""COMMANDS: the table of ``qextract`` subcommands, in the order ``qextract --help`` lists them.

Each command is one module (``cmd_<name>.py``) that defines its
:class:`~.options.Command` entry as ``COMMAND``: name, help, arguments, run.
Adding a command is that module and one line here. Command modules import
the library inside ``run`` only, so building the parser loads no TensorFlow.
"""

from __future__ import annotations

from . import (
    cmd_diff,
    cmd_export,
    cmd_fcn,
    cmd_import,
    cmd_inspect,
    cmd_migrate,
    cmd_report,
    cmd_simulate,
    cmd_vectors,
    cmd_verify,
    cmd_widths,
)
from .options import Command

COMMANDS: tuple[Command, ...] = (
    cmd_inspect.COMMAND,
    cmd_export.COMMAND,
    cmd_verify.COMMAND,
    cmd_diff.COMMAND,
    cmd_report.COMMAND,
    cmd_simulate.COMMAND,
    cmd_vectors.COMMAND,
    cmd_widths.COMMAND,
    cmd_import.COMMAND,
    cmd_fcn.COMMAND,
    cmd_migrate.COMMAND,
)
