"""The ``qextract`` command: thin argument parsing over the Python API.

- :mod:`.app` - :func:`build_parser` (from the COMMANDS table) and :func:`main`
  (errors -> one line and an exit code, signals, warnings);
- :mod:`.commands` - :data:`COMMANDS`, one entry per subcommand;
- ``cmd_<name>.py`` - one module per subcommand: its arguments and what it runs;
- :mod:`.options` - the Command entry, shared options and argument types, API argument -> option;
- :mod:`.running` - what commands do alike: load the model, guard outputs, write tables;
- :mod:`.exit_codes` - the exit codes and the ``--help`` epilog, derived from the error classes.

Only this package prints and chooses exit codes. TensorFlow is imported by
the subcommands that load a model, never for ``--help``.
"""

from .app import build_parser, main
from .commands import COMMANDS
from .options import format_list as _format_list  # noqa: F401 - the name tests and older callers import

__all__ = ["COMMANDS", "build_parser", "main"]
