"""``python -m qextract.cli``: the same as the ``qextract`` command."""

import sys

from . import main

sys.exit(main())
