"""``bindkit demo``: embed a few files of different modalities and print their cross-modal similarities."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_quantize_arg

_DEFAULT_TEXTS = ["A dog.", "A car", "A bird"]


def _default_files() -> list[Path]:
    """The sample media beside the project (../shared/samples), when present."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
    files: list[Path] = []
    for sub in ("image", "audio"):
        files += sorted((root / sub).glob("*"))[:3]
    return [f for f in files if f.is_file()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="embed a few files and texts, print their cross-modal similarities",
        description="Embed files (modality from the extension or parent folder) and texts with a model, then print "
        "the cosine similarity of every text to every file and of files across modalities. Without files, uses "
        "the sample media in ../shared/samples when present.",
    )
    p.add_argument("files", nargs="*", type=Path, help="files to embed (images, audio, video, depth/thermal/IMU)")
    p.add_argument("--text", "-t", action="append", help="a text to embed (repeatable); default: three captions")
    p.add_argument("--model", default="imagebind_huge", help="encoder card name or path (default: imagebind_huge)")
    p.add_argument("--weights", help="checkpoint file or converted directory (default: weights/ and the cache)")
    p.add_argument("--download", action="store_true",
                   help="download the card's weights if none are found (imagebind_huge: 4.5 GB, CC BY-NC 4.0)")
    add_quantize_arg(p)
    p.add_argument("--index", type=Path, help="also keep the demo's search index in this directory "
                   "(default: a temporary one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import WeightsNotFoundError
    from ..inputs import kind_from_path
    from .common import load_model_for

    files = list(args.files) or _default_files()
    texts = args.text or _DEFAULT_TEXTS
    by_kind: dict[str, list[Path]] = {}
    for f in files:
        kind = kind_from_path(f, folder_hints=True)
        if kind is None:
            print(f"skipping {f}: cannot tell its modality from the extension or folder")
            continue
        by_kind.setdefault(kind, []).append(f)
    needed = sorted({*by_kind, "text"})
    try:
        model = load_model_for(None, args.model, args.weights, "cpu", modalities=needed, download=args.download,
                               quantize=args.quantize)
    except WeightsNotFoundError as exc:
        print(f"No weights for {args.model!r} yet.\n{exc}\n"
              f"Or run: bindkit demo --download   (then the demo runs)")
        return 0
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
    _search_demo(model, [p for v in by_kind.values() for p in v], texts, args.index)
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
