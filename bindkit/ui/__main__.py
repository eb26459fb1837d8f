"""``python -m bindkit.ui``: the demo app (see :mod:`bindkit.ui`)."""

import sys

from . import run

sys.exit(run())
