"""Build hook: copy the data bindkit ships into the package at build time.

The repository keeps the encoder cards (``encoders/*.json``) and the bindkit_toy model directory
(``weights/bindkit_toy/``) once, at its top level; a wheel carries them as ``bindkit/_data/encoders/`` and
``bindkit/_data/weights/bindkit_toy/``, where :mod:`bindkit.resources` finds them. An editable install (and a
clone on ``PYTHONPATH``) reads the repository's own folders instead, so nothing is copied for it. Everything else
about the build is in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: (source folder in the repository, glob patterns, destination inside the package)
SHIPPED = (
    ("encoders", ("*.json",), "bindkit/_data/encoders"),
    ("weights/bindkit_toy", ("*.json", "*.safetensors", "*.csv"), "bindkit/_data/weights/bindkit_toy"),
)


def shipped_files() -> list[tuple[Path, str]]:
    """(repository file, path inside the wheel) for every file of SHIPPED; fails when one folder is empty."""
    out = []
    for src, patterns, dest in SHIPPED:
        files = sorted(f for pattern in patterns for f in (ROOT / src).glob(pattern) if f.is_file())
        if not files:
            raise SystemExit(f"setup.py: no {', '.join(patterns)} files in {src}/ to ship; is this a full checkout?")
        out += [(f, f"{dest}/{f.name}") for f in files]
    return out


class BuildPyWithData(build_py):
    """build_py that also copies :data:`SHIPPED` into the build folder (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dest in shipped_files():
            target = os.path.join(self.build_lib, dest)
            self.mkpath(os.path.dirname(target))
            self.copy_file(str(src), target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if getattr(self, "editable_mode", False) else [
            os.path.join(self.build_lib, dest) for _, dest in shipped_files()]
        return super().get_outputs(include_bytecode) + extra


setup(cmdclass={"build_py": BuildPyWithData})
