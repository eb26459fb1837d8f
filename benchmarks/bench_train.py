"""Training throughput of bindkit_small on this machine: pairs/s of `bindkit train` for image paired with each
other modality, on generated files (random content: speed does not depend on it).

Two regimes per pair type: both encoders training from scratch (image-X, augmentation on), and binding X to a
frozen image encoder (its embeddings cached once, as `--freeze image,text` does). "first epoch" includes decoding
every file; later epochs read the preprocessed items from memory. Pairs/s counts the pairs of the global batch
and leaves out checkpoint writing at epoch ends (use --pairs >= 4 x --batch-size).

Usage: python benchmarks/bench_train.py [--pairs 256] [--epochs 3] [--batch-size 64] [--kinds text,audio]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402


def make_data(root: Path, n: int, kinds: list[str]) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    (root / "m").mkdir(parents=True)
    rows: dict[str, list] = {k: [] for k in kinds}
    for i in range(n):
        img = f"m/i{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / img, quality=90)
        for k in kinds:
            if k == "text":
                rows[k].append((img, f"a photo of object number {i} in colour {rng.integers(100)}"))
            elif k == "audio":
                with wave.open(str(root / f"m/a{i}.wav"), "wb") as w:
                    w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
                    w.writeframes((rng.standard_normal(32000) * 3000).astype("<i2").tobytes())
                rows[k].append((img, f"m/a{i}.wav"))
            elif k == "depth":
                Image.fromarray(rng.integers(500, 5000, (96, 128), dtype=np.uint16)).save(root / f"m/d{i}.png")
                rows[k].append((img, f"m/d{i}.png"))
            elif k == "thermal":
                Image.fromarray(rng.integers(0, 255, (96, 128), dtype=np.uint8)).save(root / f"m/t{i}.png")
                rows[k].append((img, f"m/t{i}.png"))
            elif k == "imu":
                with open(root / f"m/u{i}.csv", "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"])
                    w.writerows(np.round(rng.standard_normal((600, 6)), 4).tolist())
                rows[k].append((img, f"m/u{i}.csv"))
    out = {}
    for k, rs in rows.items():
        out[k] = root / f"image_{k}.csv"
        with open(out[k], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", k])
            w.writerows(rs)
    return out


def rates(out: Path, batch: int, steps_per_epoch: int) -> tuple[float, float]:
    """(pairs/s in epoch 1, pairs/s afterwards), from the per-step times in metrics.csv; a step that follows an
    epoch end is left out (its time includes the checkpoint written then), as is step 1 (warm-up)."""
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    t = {int(r["step"]): float(r["elapsed_s"]) for r in rows}
    first = [t[s] - t[s - 1] for s in range(2, steps_per_epoch + 1)]
    later = [t[s] - t[s - 1] for s in t if s > steps_per_epoch + 1 and (s - 1) % steps_per_epoch]
    return batch / (sum(first) / len(first)), batch / (sum(later) / len(later))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--kinds", default="text,audio,depth,thermal,imu")
    a = ap.parse_args()
    import torch

    kinds = a.kinds.split(",")
    print(f"torch threads {torch.get_num_threads()}; {a.pairs} pairs, batch {a.batch_size}, {a.epochs} epochs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifests = make_data(root / "data", a.pairs, kinds)
        spe = a.pairs // a.batch_size
        common = dict(epochs=a.epochs, batch_size=a.batch_size, val_split=0, log=lambda m: None)
        t0 = time.time()
        bindkit.train(manifests["text"], root / "base", card="bindkit_small", **common)
        print(f"(image-text base model: {time.time() - t0:.0f}s)")
        print(f"{'pair':<14} {'regime':<28} {'pairs/s 1st epoch':>18} {'pairs/s later':>14}")
        for k in kinds:
            if k != "text":
                bindkit.train(manifests[k], root / f"s_{k}", card="bindkit_small", **common)
                f, l = rates(root / f"s_{k}", a.batch_size, spe)
                print(f"image-{k:<8} {'both from scratch, augmented':<28} {f:>18.1f} {l:>14.1f}")
            else:
                f, l = rates(root / "base", a.batch_size, spe)
                print(f"image-{k:<8} {'both from scratch, augmented':<28} {f:>18.1f} {l:>14.1f}")
            if k != "text":
                bindkit.train(manifests[k], root / f"f_{k}", init=root / "base", freeze="image,text", **common)
                f, l = rates(root / f"f_{k}", a.batch_size, spe)
                print(f"image-{k:<8} {'image frozen (cached)':<28} {f:>18.1f} {l:>14.1f}")


if __name__ == "__main__":
    main()
