"""The bindkit demo: a Gradio app with search, zero-shot and index tabs over one embedding space (local only).

Needs the ``[demo]`` extra (gradio): ``pip install 'bindkit[demo]'``. Importing ``bindkit`` or this package does
not import gradio; :mod:`bindkit.ui.app` (the app) and :mod:`bindkit.ui.handlers` do. Start it with
``python -m bindkit.ui [--index DIR] [--model CARD|DIR] ...``, ``bindkit demo --ui``, or ``python demos/app.py``
in a clone; ``--help`` lists the options.

Modules: ``app`` (command line, loading, layout), ``handlers`` (what the buttons do), ``views`` (colour maps,
IMU plots, zero-shot), ``gallery`` (default model, generated gallery). They use bindkit's public API.
"""

from __future__ import annotations

import os
import sys

# Before gradio is imported (by any module of this package): it reads this at import time to decide on telemetry
# and version checks.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

#: What to install when gradio is missing.
GRADIO_MISSING = "the demo needs gradio: pip install 'bindkit[demo]'  (or: pip install 'gradio>=6,<7')"


def run(argv: list[str] | None = None) -> int:
    """Run the demo's command line (:func:`bindkit.ui.app.main`); without gradio, say which extra brings it
    and return 1."""
    try:
        from .app import main
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":
            raise
        print(f"error: {GRADIO_MISSING}", file=sys.stderr)
        return 1
    return main(argv)


__all__ = ["GRADIO_MISSING", "run"]
