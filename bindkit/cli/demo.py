"""``bindkit demo``: the main job on a fresh machine.

Without files it shows cross-modal retrieval and emergent zero-shot classification on a small gallery of the
synthetic world (``bindkit.datasets.synthetic``), with ``bindkit_toy`` (the model bindkit trained on that world
and ships in ``weights/``), or with ``imagebind_huge`` when its weights are on this machine. With files it embeds
them and prints their cross-modal similarities, then indexes and searches them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_alias, add_download_arg, add_quantize_arg

_DEFAULT_TEXTS = ["A dog.", "A car", "A bird"]
AUTO = "auto"
TOY = "bindkit_toy"
HUGE = "imagebind_huge"
#: Gallery kinds: every modality the synthetic world renders (text is the query side).
GALLERY_KINDS = ("image", "audio", "depth", "thermal", "imu")
#: Text queries of the search section: for each result modality, an attribute that modality can carry.
QUERIES = (("image", "colour", "red"), ("audio", "material", "metal"), ("depth", "size", "large"),
           ("thermal", "temperature", "hot"), ("imu", "motion", "spinning"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="show cross-modal search and emergent zero-shot on a synthetic gallery (or embed your files)",
        description="Without files: generate a small gallery of the synthetic world (image, caption, sound, depth, "
        "thermal, IMU of the same scenes), index it, and show text -> every-modality search, image -> X "
        "retrieval and emergent zero-shot classification (audio/IMU/depth/thermal -> text, pairs never seen in "
        "training). The model is bindkit_toy (trained by bindkit on that world; it knows nothing else), or "
        "imagebind_huge when its weights are on this machine. With files: embed them and texts, print their "
        "cross-modal similarities, then index and search them.",
        epilog="examples:\n  bindkit demo\n  bindkit demo --model imagebind_huge --n 60\n"
        "  bindkit demo photo.jpg bark.wav -t 'a dog' -t 'a car' --model imagebind_huge\n"
        "  bindkit demo --ui                          # the same gallery in the browser (bindkit[demo])",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", type=Path, help="files to embed (images, audio, video, depth/thermal/IMU)")
    p.add_argument("--text", "-t", action="append", help="with files: a text to embed (repeatable)")
    p.add_argument("--model", default=AUTO, help="card name, model directory or path (default: auto = "
                   f"{HUGE} when its weights are here, else {TOY})")
    p.add_argument("--weights", help="checkpoint file or converted directory (default: $BINDKIT_WEIGHTS, the "
                   "package's own, the cache)")
    add_download_arg(p)
    p.add_argument("--n", type=int, default=60, help="synthetic gallery size in scenes (default 60)")
    p.add_argument("--seed", type=int, default=0, help="synthetic world seed (default 0)")
    out = p.add_argument("--out", dest="index", type=Path, metavar="DIR",
                         help="keep the demo's index (and gallery) in this directory (default: a temporary one); a "
                         "gallery kept there is re-used by a run with the same --n, --seed and model")
    add_alias(p, "--index", of=out)
    add_quantize_arg(p)
    p.add_argument("--ui", action="store_true", help="start the demo app in the browser instead (Gradio, "
                   "http://127.0.0.1:7860; needs bindkit[demo]): --model, --weights and --n carry over; "
                   "python -m bindkit.ui --help lists all of its options")
    p.set_defaults(func=run)


def _choose_model(name: str) -> str:
    if name != AUTO:
        return name
    from ..weights.fetch import locate_weights

    return HUGE if locate_weights(HUGE) is not None else TOY


def _run_ui(args: argparse.Namespace) -> int:
    """``bindkit demo --ui``: the Gradio app of :mod:`bindkit.ui` with this command's model and gallery size."""
    from ..ui import run as run_ui

    if args.files:
        print("error: --ui takes no files (the app's Search tab takes uploads)", file=sys.stderr)
        return 2
    argv = ["--gallery-size", str(args.n)]
    if args.model != AUTO:
        argv += ["--model", args.model]
    if args.weights:
        argv += ["--weights", str(args.weights)]
    return run_ui(argv)


def run(args: argparse.Namespace) -> int:
    from ..errors import WeightsNotFoundError
    from .common import load_model_for

    if getattr(args, "ui", False):
        return _run_ui(args)
    name = _choose_model(args.model)
    if args.n < 10:
        print("error: --n must be at least 10 scenes", flush=True)
        return 2
    try:  # a download asks first (the command line's guard), or needs --download without a terminal
        model = load_model_for(None, name, args.weights, "cpu", quantize=args.quantize)
    except WeightsNotFoundError as exc:
        print(f"error: the demo cannot run: {exc}", file=sys.stderr)
        if name == TOY:
            print(f"{TOY} ships with bindkit (bindkit/_data/weights in the wheel, weights/{TOY}/ in a clone) and "
                  "is missing here: reinstall bindkit (pip install --force-reinstall bindkit), or get "
                  f"{HUGE} (bindkit fetch {HUGE}) and run bindkit demo again.", file=sys.stderr)
        elif args.model != AUTO:
            print(f"`bindkit demo --model {TOY}` runs now with the small model bindkit ships (it knows only "
                  "bindkit's synthetic world).", file=sys.stderr)
        return 1
    if args.files:
        return _files_demo(model, args.files, args.text or _DEFAULT_TEXTS, args.index)
    return _gallery_demo(model, name, args.n, args.seed, args.index)


# ---------------------------------------------------------------------------------------- synthetic gallery
def _gallery_demo(model, name: str, n: int, seed: int, keep: Path | None) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        return _gallery_in(model, name, n, seed, root)


def _gallery_in(model, name: str, n: int, seed: int, root: Path) -> int:
    import numpy as np

    from ..datasets import synthetic
    from ..eval import class_embeddings, retrieval_scores, zero_shot_scores

    what = ("trained by bindkit on its synthetic world only" if name == TOY
            else f"card {model.card.name}")
    print(f"bindkit demo: model {name} ({what}; {model.dim}-d space, modalities {', '.join(model.modalities)})")
    with synthetic.build_gallery(root, model, n=n, seed=seed) as gallery:
        kinds = [k for k in GALLERY_KINDS if k in gallery.kinds]
        rows = [s["labels"] for s in gallery.scenes]
        print(f"gallery: {len(rows)} scenes of the synthetic world's test split (seed {seed}), each as "
              f"{', '.join(kinds)} + a caption: {gallery.media}")
        index = gallery.index
        captions = ["text"] if "text" in gallery.kinds else []
        # per kind, one row per scene (NaN where the file failed): the vectors the index stored
        emb = {k: gallery.vectors(k) for k in [*kinds, *captions]}
        print(f"indexed {len(index)} items in {index.path}\n")

        print("1. Text -> each modality (top 3 of the gallery; + = the hit has the asked attribute)")
        for kind, attr, value in QUERIES:
            if kind not in kinds or "text" not in model.modalities:
                continue
            text = synthetic.templates(attr)[0].format(value)
            hits = index.search(text=text, k=3, modalities=[kind])[kind]
            shown = "  ".join(f"{'+' if h.metadata.get(attr) == value else '-'}{h.metadata.get(attr)} "
                              f"({h.score:.2f})" for h in hits)
            base = sum(r[attr] == value for r in rows) / len(rows)
            print(f"   {text!r:<22} -> {kind:<8} {shown}   [{base:.0%} of the gallery is {value}]")

    ok = np.logical_and.reduce([~np.isnan(emb[k]).any(axis=1) for k in emb])
    if not ok.all():
        print(f"   ({int((~ok).sum())} scene(s) left out: a file could not be embedded)")
    if "image" in kinds:
        print(f"\n2. Image -> X retrieval among the {int(ok.sum())} scenes (R@1: the paired item ranks first)")
        for k in [*kinds, *captions]:
            if k == "image":
                continue
            r = retrieval_scores(emb["image"][ok], emb[k][ok], ks=(1, 5), names=("image", k))
            print(f"   image -> {k:<8} R@1 {r[f'image_to_{k}']['R@1']:.2f}  R@5 {r[f'image_to_{k}']['R@5']:.2f}"
                  f"   (chance {r['chance']['R@1']:.2f} / {r['chance']['R@5']:.2f})")
    if "text" in model.modalities:
        print("\n3. Zero-shot: X -> class names as text prompts" + (
              " (emergent: bindkit_toy never saw audio/IMU/depth/thermal paired with text)" if name == TOY else ""))
        for k in kinds:
            for attr in synthetic.ENCODES.get(k, ()):
                if k == "image" and attr not in ("shape", "colour"):
                    continue
                names = synthetic.classes(attr)
                cls = class_embeddings(model, names, synthetic.templates(attr))
                labels = [names.index(r[attr]) for r, good in zip(rows, ok) if good]
                s = zero_shot_scores(emb[k][ok], cls, labels, names)
                print(f"   {k:<8} -> {attr:<12} accuracy {s['accuracy']:.2f}   (chance {s['chance']:.2f}, "
                      f"{s['accuracy'] / s['chance']:.1f}x)")
    print("\nNext: bindkit demo --ui (the same gallery in a browser), bindkit index build YOUR_FOLDER --out IDX,"
          " bindkit train --help (bind your own sensor).")
    return 0


# -------------------------------------------------------------------------------------------- user files
def _files_demo(model, files: list[Path], texts: list[str], where: Path | None) -> int:
    import numpy as np

    from ..inputs import kind_from_path
    from ..modality import encoder_of

    by_kind: dict[str, list[Path]] = {}
    for f in files:
        kind = kind_from_path(f, folder_hints=True)
        if kind is None:
            print(f"skipping {f}: cannot tell its modality from the extension or folder")
            continue
        if encoder_of(kind) not in model.modalities:
            print(f"skipping {f}: the model has no {kind} encoder")
            continue
        by_kind.setdefault(kind, []).append(f)
    out = model.embed(text=texts, **{k: [str(p) for p in v] for k, v in by_kind.items()})
    for err in out.errors:
        print(f"could not embed {err.item} ({err.kind}): {err.reason}")
    labels = {k: [p.name for p in v] for k, v in by_kind.items()}
    for kind, names in labels.items():
        ok = out.ok(kind)
        sims = out["text"] @ np.nan_to_num(out[kind]).T
        print(f"\ntext x {kind} (cosine similarity; best match per text marked *)")
        print("  " + " " * 28 + "".join(f"{n[:14]:>15}" for n in names))
        for t, row in zip(texts, sims):
            best = int(np.argmax(np.where(ok, row, -np.inf))) if ok.any() else -1
            cells = "".join(f"{v:>14.3f}{'*' if j == best else ' '}" if ok[j] else f"{'failed':>15}"
                            for j, v in enumerate(row))
            print(f"  {t[:28]:<28}{cells}")
    kinds = list(labels)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            sims = np.nan_to_num(out[a]) @ np.nan_to_num(out[b]).T
            print(f"\n{a} x {b}")
            for name, row in zip(labels[a], sims):
                print(f"  {name[:28]:<28}" + "".join(f"{v:>15.3f}" for v in row))
    _search_demo(model, [p for v in by_kind.values() for p in v], texts, where)
    return 0


def _search_demo(model, files: list[Path], texts: list[str], where: Path | None) -> None:
    """Index the files, then search them with each text: the best hit per modality."""
    import tempfile

    import bindkit

    with tempfile.TemporaryDirectory() as tmp:
        path = where or Path(tmp) / "index"
        index = bindkit.Index.create(path, model=model, exist_ok=True)
        index.add([str(f) for f in files], strict=False, show_progress_bar=False)
        print(f"\ncross-modal search over {len(index)} indexed files ({path})")
        for text, hits in zip(texts, index.search(text=texts, k=1)):
            best = ", ".join(f"{kind}: {h[0].uri and Path(h[0].uri).name} ({h[0].score:.3f})"
                             for kind, h in hits.items() if h)
            print(f"  {text[:28]:<28} -> {best}")
        index.close()
