"""Domain shift and a LoRA adapter: bindkit_toy's audio encoder meets another microphone.

    python benchmarks/bench_lora_shift.py [--quick] [--work DIR] [--r 2 --alpha 8 --epochs 10 --lr 5e-3]

1. Writes a small synthetic world twice with the same seed (``bindkit.datasets.synthetic``): once with the
   default ``clean`` microphone (the one bindkit_toy was trained with), once with ``--audio-mic shifted``
   (band-pass 500 Hz-2.8 kHz with a resonance, coloured noise, low gain). Every scene, image and caption is the
   same; only the sounds differ. The seed differs from bindkit_toy's training world, so nothing here was seen.
2. Evaluates bindkit_toy on the held-out test split, clean (``base``) and shifted (``shifted``): image <-> audio
   retrieval R@1 and R@5 both ways, the median rank, and emergent zero-shot audio -> material and audio -> size
   (text prompts; bindkit_toy never saw audio-text pairs).
3. Trains a LoRA adapter on bindkit_toy's audio encoder with the real CLI, image and text frozen:
   ``bindkit train shifted/image_audio.csv --init bindkit_toy --freeze image,text --lora r=..,alpha=.. ...``
4. Evaluates the adapted model (``bindkit.load_model(OUT)``, i.e. base + adapter, as ``--model OUT`` does) on the
   shifted test split (``adapted``) and, to see what the adapter costs the old microphone, on the clean one.

Prints the table, the adapter's size against the base audio encoder (parameters, and bytes against its
float32 weights and its fp16 file in weights/bindkit_toy), and the wall time of every stage.

Read R@1 with care: bindkit_toy is weak at image -> audio retrieval (many scenes share the attributes a sound
carries: size, material, motion), so R@1 among the test items is a few per cent and noisy at this size; R@5,
the median rank and the zero-shot accuracies are steadier. ``--quick`` is a smoke run (tiny, numbers
meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _generate(out: Path, seed: int, splits: dict[str, int], mic: str, workers: int) -> float:
    from bindkit.datasets.synthetic import generate

    t0 = time.perf_counter()
    try:
        done = json.loads((out / "world.json").read_text())
    except (OSError, ValueError):
        done = {}
    if done.get("seed") != seed or done.get("counts") != splits:  # reuse a --work folder's world when it fits
        generate(out, seed=seed, splits=splits, audio_mic=mic, workers=workers, show_progress=False, overwrite=True)
    return time.perf_counter() - t0


def _evaluate(model, world: Path) -> dict[str, float]:
    from bindkit import evaluate

    test = world / "test"
    r = evaluate.retrieval(model, test / "image_audio.csv", ks=(1, 5), show_progress=False)
    out = {"n": r["n"], "i2a_R@1": r["image_to_audio"]["R@1"], "a2i_R@1": r["audio_to_image"]["R@1"],
           "i2a_R@5": r["image_to_audio"]["R@5"], "a2i_R@5": r["audio_to_image"]["R@5"],
           "median_rank": 0.5 * (r["image_to_audio"]["median_rank"] + r["audio_to_image"]["median_rank"]),
           "chance_R@1": r["chance"]["R@1"]}
    for attr in ("material", "size"):
        z = evaluate.zero_shot(model, test / f"audio_{attr}.csv", evaluate.load_classes(world / f"classes_{attr}.json"),
                               evaluate.load_templates([str(world / f"templates_{attr}.json")]), show_progress=False)
        out[f"zs_{attr}"] = z["accuracy"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: a tiny world and one short epoch")
    ap.add_argument("--work", type=Path, help="working folder (kept; default: a temporary one, removed)")
    ap.add_argument("--seed", type=int, default=11, help="world seed (bindkit_toy was trained on seed 0)")
    ap.add_argument("--n-train", type=int, default=3000, help="shifted training pairs (default 3000)")
    ap.add_argument("--n-test", type=int, default=200, help="held-out test scenes (default 200)")
    ap.add_argument("--r", type=int, default=2, help="LoRA rank (default 2: < 5%% of the 64-wide audio encoder)")
    ap.add_argument("--alpha", type=float, default=8.0, help="LoRA alpha (default 8)")
    ap.add_argument("--targets", default="qkv,out,fc1,fc2", help="LoRA targets (default qkv,out,fc1,fc2)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, here and in the training process")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs = 64, 32, 1

    import torch

    import bindkit

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_lora_shift_"))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.perf_counter()
    try:
        clean, shifted = work / "clean", work / "shifted"
        times["generate"] = (_generate(clean, args.seed, {"test": args.n_test}, "clean", args.threads)
                             + _generate(shifted, args.seed, {"train": args.n_train, "test": args.n_test}, "shifted",
                                         args.threads))
        t0 = time.perf_counter()
        base = bindkit.load_model("bindkit_toy", modalities=["vision", "text", "audio"])
        rows = {"base (clean mic)": _evaluate(base, clean), "shifted (new mic)": _evaluate(base, shifted)}
        times["evaluate base"] = time.perf_counter() - t0

        out = work / "toy_mic2"
        if out.exists():
            shutil.rmtree(out)
        lora = f"r={args.r},alpha={args.alpha:g},targets={args.targets}"
        cmd = [sys.executable, "-m", "bindkit", "train", str(shifted / "image_audio.csv"), "--init", "bindkit_toy",
               "--freeze", "image,text", "--lora", lora, "--out", str(out), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", "0", "-q"]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        print("$ bindkit " + " ".join(cmd[3:]), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        times["train LoRA"] = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        for line in proc.stderr.splitlines():
            if "trainable parameters" in line or line.startswith("epoch "):
                print("  " + line)

        t0 = time.perf_counter()
        adapted = bindkit.load_model(out, modalities=["vision", "text", "audio"])
        rows["adapted (new mic)"] = _evaluate(adapted, shifted)
        rows["adapted on clean mic"] = _evaluate(adapted, clean)
        times["evaluate adapted"] = time.perf_counter() - t0
        times["total"] = time.perf_counter() - started

        n = rows["base (clean mic)"]["n"]
        print(f"\nbindkit_toy, image <-> audio on {n} held-out test scenes (seed {args.seed}; chance R@1 "
              f"{rows['base (clean mic)']['chance_R@1']:.4f}), zero-shot audio -> text prompts:")
        cols = [("i2a_R@1", "I->A R@1"), ("a2i_R@1", "A->I R@1"), ("i2a_R@5", "I->A R@5"), ("a2i_R@5", "A->I R@5"),
                ("median_rank", "med.rank"), ("zs_material", "material"), ("zs_size", "size")]
        print(f"{'':<22}" + "".join(f"{h:>10}" for _, h in cols))
        for name, row in rows.items():
            print(f"{name:<22}" + "".join(f"{row[k]:>10.1f}" if k == "median_rank" else f"{row[k]:>10.3f}"
                                          for k, _ in cols))
        lost = {k: rows["base (clean mic)"][k] - rows["shifted (new mic)"][k] for k, _ in cols if k != "median_rank"}
        back = {k: rows["adapted (new mic)"][k] - rows["shifted (new mic)"][k] for k in lost}
        mean_r1 = lambda r: 0.5 * (r["i2a_R@1"] + r["a2i_R@1"])  # noqa: E731
        mean_r5 = lambda r: 0.5 * (r["i2a_R@5"] + r["a2i_R@5"])  # noqa: E731
        recovered = {}
        for label, f in (("R@1 (mean of both ways)", mean_r1), ("R@5 (mean of both ways)", mean_r5),
                         ("zero-shot material", lambda r: r["zs_material"]),
                         ("zero-shot size", lambda r: r["zs_size"])):
            b, s, a = (f(rows[k]) for k in ("base (clean mic)", "shifted (new mic)", "adapted (new mic)"))
            recovered[label] = (a - s) / (b - s) if b - s > 1e-9 else float("nan")
            print(f"  {label}: base {b:.3f}, shifted {s:.3f}, adapted {a:.3f} -> recovers "
                  f"{100 * recovered[label]:.0f}% of the loss")

        record = json.loads((out / "train_record.json").read_text())
        adapter_file = out / "audio.lora.safetensors"
        encoder = base.encoders["audio"]
        enc_params = sum(p.numel() for p in encoder.parameters())
        toy = json.loads((REPO / "weights" / "bindkit_toy" / "manifest.json").read_text())["files"]["audio"]["bytes"]
        ad_params = record["lora"]["trainable_parameters"]
        ad_bytes = adapter_file.stat().st_size
        print(f"\nadapter ({lora}): {ad_params:,} parameters = {100 * ad_params / enc_params:.1f}% of the audio "
              f"encoder's {enc_params:,}; file {ad_bytes / 1024:.1f} KiB = {100 * ad_bytes / (4 * enc_params):.1f}% "
              f"of the encoder in float32 ({4 * enc_params / 1024:.0f} KiB), {100 * ad_bytes / toy:.1f}% of its fp16 "
              f"file in weights/bindkit_toy ({toy / 1024:.0f} KiB)")
        print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
              + f"  [torch threads {args.threads}; {args.n_train} training pairs x {args.epochs} epochs]")
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                             "recovered": recovered, "lost": lost, "back": back,
                                             "adapter_parameters": ad_params, "adapter_bytes": ad_bytes,
                                             "encoder_parameters": enc_params, "encoder_fp16_file_bytes": toy,
                                             "times_s": times}, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
