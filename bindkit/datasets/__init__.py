"""Data sets bindkit can make for itself.

* :mod:`bindkit.datasets.synthetic` — a deterministic procedural world (shapes with colour, size, material,
  temperature and motion) rendered as paired image, caption, audio, depth, thermal and IMU data, generated
  from a seed. ``bindkit datasets synthetic --out DIR`` writes it to disk with pair manifests.
"""

from __future__ import annotations

__all__ = ["synthetic"]
