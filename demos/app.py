"""Launcher of the bindkit demo (the Gradio app in the package :mod:`bindkit.ui`; needs ``bindkit[demo]``).

    python demos/app.py                         # the committed model (weights/bindkit_toy) over a generated gallery
    python demos/app.py --index my_index        # your index (bindkit index build SRC --out my_index --model M)
    python demos/app.py --help                  # every option

``python -m bindkit.ui`` and ``bindkit demo --ui`` start the same app.
"""

import sys

from bindkit.ui import run

if __name__ == "__main__":
    sys.exit(run())
