"""The package as a new user gets it: build the sdist and the wheel, check them with twine, install the wheel into a
fresh virtual environment and use it from an empty folder outside the repository.

The fresh venv reuses this interpreter's installed dependencies (torch, FAISS...: a ``.pth`` line appends this
environment's site-packages after the venv's own, so nothing is downloaded), and bindkit itself is installed from
the wheel with ``--no-deps``. The venv's own site-packages comes first and the appended folder's ``.pth`` files
(an editable bindkit of a clone) are not run, so the wheel's bindkit is the one imported: the test checks
``bindkit.__file__``. Building runs offline (``--no-isolation``: setuptools and build come from the test extra).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 20 * 10**6
TOY_FILES = {"card.json", "manifest.json", "train_record.json", "val_metrics.csv"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build`` (sdist, then the wheel built from it) into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("bindkit-*.whl")
    return wheel


def test_wheel_carries_the_cards_and_bindkit_toy(dist, capsys):
    wheel = _wheel(dist)
    names = zipfile.ZipFile(wheel).namelist()
    size = wheel.stat().st_size
    with capsys.disabled():  # shown in every run: what a user downloads
        print(f"\n{wheel.name}: {size / 1e6:.2f} MB, {len(names)} files")
        for name in names:
            if not name.endswith(".py"):
                print(f"  {name}")
        print(f"  + {sum(n.endswith('.py') for n in names)} .py files")
    cards = {Path(n).name for n in names if n.startswith("bindkit/_data/encoders/")}
    assert cards == {p.name for p in (REPO / "encoders").glob("*.json")}
    toy = {Path(n).name for n in names if n.startswith("bindkit/_data/weights/bindkit_toy/")}
    assert TOY_FILES <= toy
    assert {p.name for p in (REPO / "weights" / "bindkit_toy").glob("*.safetensors")} <= toy
    assert not [n for n in names if n.startswith("bindkit/_data/weights/") and "bindkit_toy/" not in n]
    assert size < MAX_WHEEL_BYTES


def test_twine_accepts_the_sdist_and_the_wheel(dist):
    files = sorted(map(str, dist.iterdir()))
    assert any(f.endswith(".tar.gz") for f in files) and any(f.endswith(".whl") for f in files)
    run = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would make a clone's bindkit or its data visible (PYTHONPATH, a clone's
    weights and cards), nor a proxy exception; plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "BINDKIT_WEIGHTS", "BINDKIT_ENCODERS", "VIRTUAL_ENV")
           and k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    env.update(extra)
    return env


def _fresh_venv(root: Path, wheel: Path) -> Path:
    """A venv with the wheel installed (no deps) that sees this interpreter's packages after its own."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=600, env=_clean_env())
    assert run.returncode == 0, run.stdout + run.stderr
    # after the install, or pip would find this environment's (editable) bindkit and skip the wheel
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(own, "zz_test_interpreter.pth").write_text("".join(f"{p}\n" for p in ours))
    return venv


def test_the_installed_wheel_works_from_an_empty_folder(dist, tmp_path):
    venv = _fresh_venv(tmp_path, _wheel(dist))
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _clean_env(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
                     PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", BINDKIT_DEVICE="cpu",
                     http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")  # no download can succeed

    def run(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, env=env, cwd=empty,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n" \
                                     f"{proc.stderr[-3000:]}"
        return proc.stdout

    site = Path(run(str(venv / "bin" / "python"), "-c", "import bindkit; print(bindkit.__file__)").strip())
    assert site.is_relative_to(venv), f"bindkit imported from {site}, not the fresh venv"
    assert run(str(venv / "bin" / "bindkit"), "--version").strip() == "bindkit 0.1.0"
    listing = run(str(venv / "bin" / "bindkit"), "models")
    toy = next(line for line in listing.splitlines() if line.startswith("bindkit_toy "))
    assert " yes " in toy, listing
    assert f"weights: {venv}" in listing and "imagebind_huge" in listing, listing
    out = run(str(venv / "bin" / "python"), "-c", "import bindkit; m = bindkit.load_model('bindkit_toy'); "
              "print(m.card.name, m.dim, sorted(m.modalities))")
    assert out.startswith("bindkit_toy 128"), out
    demo = run(str(venv / "bin" / "bindkit"), "demo", "--n", "12")
    assert "model bindkit_toy" in demo and "3. Zero-shot" in demo, demo
    # nothing downloaded: the cache holds at most the weights-verification verdicts (bindkit/weights/verify)
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert list(empty.iterdir()) == [] and set(cached) <= {"verified.json"}, cached
