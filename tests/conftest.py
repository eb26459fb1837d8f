"""Shared test fixtures.

- ``fixture_dir``: the reference's outputs for the imagebind_tiny configuration. ../shared/fixtures/imagebind_tiny
  when present (complete); otherwise the compact copy committed in tests/fixtures/ (every exact number the parity
  tests compare, see tests/fixtures/pack_imagebind_tiny.py), so the parity tests run on any clone and never skip.
- ``samples_dir``: ../shared/samples, real third-party media (non-commercial / share-alike licences, never copied
  into the repository). Tests on them skip with a reason on a user's clone without ../shared, and fail under CI
  (CI=true), so that they can never pass by skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Commands, training and distillation run on CUDA when it is available unless told otherwise. Tests compare against
# CPU computations at fp32 tolerances (which a GPU's TF32 convolutions do not meet) and must pass on any machine, so
# the session's default device is the CPU, whatever BINDKIT_DEVICE the shell exports;
# `BINDKIT_TEST_DEVICE=cuda make test` runs the commands on a GPU on purpose.
os.environ["BINDKIT_DEVICE"] = os.environ.get("BINDKIT_TEST_DEVICE", "cpu")

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BINDKIT_SHARED", REPO.parent / "shared"))


def _require_shared() -> Path:
    if (SHARED / "samples").is_dir():
        return SHARED
    msg = f"{SHARED}/samples (third-party sample media, not in the repository for licence reasons) is absent"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{msg}; under CI it must be present, so parity tests cannot pass by skipping")
    pytest.skip(f"{msg}; clone the project beside its shared/ folder or set BINDKIT_SHARED")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require_shared()


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    full = SHARED / "fixtures" / "imagebind_tiny"
    if (full / "state_dict.pt").is_file():
        return full
    from fixtures.pack_imagebind_tiny import materialize

    return materialize(tmp_path_factory.mktemp("imagebind_tiny"))


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    return shared_dir / "samples"


@pytest.fixture(scope="session")
def tiny_state_dict(fixture_dir: Path):
    import torch

    return torch.load(fixture_dir / "state_dict.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def tiny_model(tiny_state_dict):
    """The imagebind_tiny card loaded with the reference fixture weights (all modalities, eval, cpu)."""
    import bindkit

    return bindkit.load_model("imagebind_tiny", weights=tiny_state_dict)
