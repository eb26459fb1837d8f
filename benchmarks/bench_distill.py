"""Distil bindkit_toy's text encoder into a small student and measure it against the teacher, in one run.

1. captions of the synthetic world (``bindkit.datasets.synthetic``): training captions from the ``train`` split
   (seed 0); held-out captions and images from the ``test`` split under another seed (seed 1);
2. an index of the held-out images built with the teacher (bindkit_toy);
3. ``bindkit.distill`` into the ``bindkit_toy_text_student`` card (2 blocks against the teacher's 4, width 64,
   MLP ratios 1 and 8; started from the teacher's token table, first two blocks and head), timed from the
   first teacher forward pass (filling the teacher-vector cache) to the published student;
4. speed, student vs teacher, alternating rounds in this process (the order reversed every other round; the
   speed-up is taken round by round and its median and range over 9 rounds quoted): the text encoder alone on
   tokenised batches (what the student makes smaller), and end to end (``model.embed``: CLIP BPE tokenisation,
   the same for both, plus the encoder);
5. ``bindkit.evaluate.distillation``: student-teacher cosine on the held-out captions, and R@k vs teacher: the
   share of the teacher's own top-k that the student's top-k finds, searching the teacher's image index with
   ``Index.open(index, model=student)`` (and among the held-out captions themselves); as a yardstick, the same
   for the teacher quantised to int8 (``--quantize int8``) against its fp32 self;
6. adding an item to the teacher's index with the student: refused.

Usage: python benchmarks/bench_distill.py [--quick] [--train N] [--held-out N] [--epochs N] [--rounds N] [--threads N]
(full: ~8 min on 2 CPU cores shared with other jobs, up to ~10 when they are busy; --quick: ~10 s, a smoke
test whose figures are not the point).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bindkit  # noqa: E402
from bindkit.errors import StudentModelError  # noqa: E402
from bindkit.evaluate import distillation  # noqa: E402
from bindkit.inputs.batch import resolve_params  # noqa: E402
from bindkit.datasets.synthetic.captions import caption  # noqa: E402
from bindkit.datasets.synthetic.render_image import render_image  # noqa: E402
from bindkit.datasets.synthetic.world import draw_scene, streams  # noqa: E402

TEACHER = "bindkit_toy"
STUDENT_CARD = "bindkit_toy_text_student"


def captions(n: int, seed: int, split: str) -> list[str]:
    """Captions of samples 0..n-1 (only the scene and caption streams are drawn: thousands per second)."""
    out = []
    for i in range(n):
        r = streams(seed, split, i, 3)
        out.append(caption(draw_scene(r[0], seed, split, i), r[2]))
    return out


def images(folder: Path, n: int, seed: int, split: str) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        r = streams(seed, split, i, 2)
        path = folder / f"{split}_{seed}_{i:05d}.png"
        Image.fromarray(render_image(draw_scene(r[0], seed, split, i), r[1], 64)).save(path)
        paths.append(str(path))
    return paths


def rate(fn, n_items: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - t0)


def speeds(student, teacher, texts: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Items/s over alternating rounds: the encoder on tokenised batches of 256, and model.embed.

    Returns, per measure, each model's median items/s, and ``ratio`` / ``ratio_min`` / ``ratio_max``: the
    student's speed-up taken round by round (against the teacher's time in the same round, the order of the two
    reversed every other round, so a slow stretch of a shared machine hits both), its median and range.
    """
    from bindkit.inputs.text import tokenize

    tok = {who: tokenize(texts, resolve_params("text", m)) for who, m in
           (("student", student), ("teacher", teacher))}
    measures = ("encoder", "end to end")
    out: dict[str, dict[str, list[float]]] = {k: {"student": [], "teacher": []} for k in measures}
    models = {"student": student, "teacher": teacher}

    def encode(who: str) -> None:
        with torch.inference_mode():
            for i in range(0, len(texts), 256):
                models[who].encode("text", tok[who][i:i + 256])

    def embed(who: str) -> None:
        models[who].embed(text=texts, batch_size=256, show_progress_bar=False)

    for who in models:  # warm-up
        encode(who)
    for r in range(rounds):
        for what, fn in zip(measures, (encode, embed)):
            for who in (("student", "teacher") if r % 2 == 0 else ("teacher", "student")):
                out[what][who].append(rate(lambda: fn(who), len(texts)))
    res: dict[str, dict[str, float]] = {}
    for what, d in out.items():
        ratios = [s / t for s, t in zip(d["student"], d["teacher"])]
        res[what] = {who: statistics.median(v) for who, v in d.items()}
        res[what].update(ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the pipeline runs")
    ap.add_argument("--student-card", default=STUDENT_CARD, help=f"the student's card (default {STUDENT_CARD})")
    ap.add_argument("--train", type=int, help="training captions (default 160000; quick 2000)")
    ap.add_argument("--held-out", type=int, help="held-out captions and indexed images (default 1000; quick 200)")
    ap.add_argument("--epochs", type=int, help="distillation epochs (default 14; quick 2)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    ap.add_argument("--contrastive", type=float, default=0.1, help="InfoNCE weight (default 0.1, as bindkit "
                    "distill)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a machine shared with other jobs, 2 OpenMP threads waiting "
                    "on each other ran 5-25x slower than 1)")
    ap.add_argument("--rounds", type=int, default=9, help="speed rounds, student and teacher alternating "
                    "(default 9; quick 3)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen, also through a pipe
    n_train = a.train or (2000 if a.quick else 160000)
    n_held = a.held_out or (200 if a.quick else 1000)
    epochs = a.epochs or (2 if a.quick else 14)
    torch.set_num_threads(a.threads)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_distill_"))
    root.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    train_txt = root / "train_captions.txt"
    train_txt.write_text("\n".join(captions(n_train, 0, "train")) + "\n")
    held = captions(n_held, 1, "test")
    imgs = images(root / "images", n_held, 1, "test")
    teacher = bindkit.load_model(TEACHER, modalities=["vision", "text"])
    with bindkit.Index.create(root / "teacher_index", model=teacher) as idx:
        idx.add(imgs, modality="image", show_progress_bar=False)
    print(f"data: {n_train} training captions (train split, seed 0), {n_held} held-out captions and images "
          f"(test split, seed 1), image index built with {TEACHER}: {time.perf_counter() - t0:.1f}s")

    out = root / "student"
    t1 = time.perf_counter()
    res = bindkit.distill(TEACHER, train_txt, out, student_card=a.student_card, epochs=epochs, batch_size=256,
                          lr=a.lr, contrastive=a.contrastive, progress=False, log=lambda m: print("  " + m))
    wall = time.perf_counter() - t1
    student = bindkit.load_model(out)
    n_s = sum(p.numel() for p in student.encoders["text"].parameters())
    n_t = sum(p.numel() for p in teacher.encoders["text"].parameters())
    print(f"distillation wall time: {wall:.1f}s (teacher cache {res.cache['seconds']:.1f}s for "
          f"{res.cache['computed']} captions, then {res.step} steps); student {n_s / 1e6:.2f}M parameters, "
          f"teacher text encoder {n_t / 1e6:.2f}M")

    rounds = 3 if a.quick else a.rounds
    sp = speeds(student, teacher, held, rounds=rounds)
    for what, d in sp.items():
        print(f"speed, {what:<10} student {d['student']:8.0f} items/s   teacher {d['teacher']:8.0f} items/s   "
              f"speed-up {d['ratio']:.2f}x (median of {rounds} rounds, {d['ratio_min']:.2f}..{d['ratio_max']:.2f})")

    rep = distillation(student, teacher, held, "text", index=root / "teacher_index",
                                        ks=(1, 5, 10), batch_size=256, show_progress=False)
    print(f"held-out captions: {rep['n']}; student-teacher cosine mean {rep['mean_cosine']:.4f}, median "
          f"{rep['median_cosine']:.4f}, 5th percentile {rep['p05_cosine']:.4f}, min {rep['min_cosine']:.4f}")
    for name, d in rep["recall_vs_teacher"].items():
        print(f"R@k vs teacher, {name} ({rep['candidates'][name]} candidates): "
              + "  ".join(f"{k} {v:.3f}" for k, v in d.items()))
    # a yardstick for R@k vs teacher: the teacher itself with int8 weights, against its fp32 self
    int8 = bindkit.load_model(TEACHER, modalities=["text"], quantize="int8")
    with warnings.catch_warnings():  # "the index holds fp32 vectors and the model computes int8": known here
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = distillation(int8, teacher, held, "text", index=root / "teacher_index", ks=(10,), batch_size=256,
                           show_progress=False)
    print(f"yardstick, the int8 teacher against the fp32 teacher: cosine {ref['mean_cosine']:.4f}, R@10 "
          f"{ref['recall_vs_teacher']['index image']['R@10']:.3f} (image index), "
          f"{ref['recall_vs_teacher']['held-out text']['R@10']:.3f} (held-out captions)")

    with bindkit.Index.open(root / "teacher_index", model=student) as idx:
        hits = idx.search(text=held[0], k=3)
        print(f"student query {held[0]!r} on the teacher's index: top image {Path(hits['image'][0].uri).name} "
              f"(score {hits['image'][0].score:.3f})")
        try:
            idx.add(["a caption added by the student"], modality="text")
            print("adding with the student: NOT refused (bug)")
            return 1
        except StudentModelError as exc:
            print(f"adding with the student: refused ({type(exc).__name__})")
    r10 = rep["recall_vs_teacher"]["index image"].get("R@10", float("nan"))
    enc_speedup = sp["encoder"]["ratio"]
    print(f"summary: cosine {rep['mean_cosine']:.3f} (>= 0.9: {rep['mean_cosine'] >= 0.9}), R@10 vs teacher "
          f"{r10:.3f} (>= 0.9: {r10 >= 0.9}), encoder speed-up {enc_speedup:.2f}x (>= 3: {enc_speedup >= 3})")
    if not a.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
