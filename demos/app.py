"""bindkit search demo: a Gradio UI over an existing bindkit index, built on bindkit's public API only.

    bindkit index build SRC --out my_index --model imagebind_tiny --weights state_dict.pt
    python demos/app.py --index my_index [--model CARD --weights PATH] [--port 7860]

A query combines a text, an image and an audio clip (and optionally one video/depth/thermal/IMU file) by
embedding arithmetic (``Index.search`` with several inputs); results come back per modality: images as a
gallery, audio as players, everything else as a table. Nothing leaves the machine: no share links, no
analytics, the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os

# Before gradio is imported: it reads this at import time to decide on telemetry and version checks.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import atexit
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import gradio as gr
except ImportError:  # an optional dependency: say which extra brings it
    sys.exit("error: the demo needs gradio: pip install 'bindkit[demo]'  (or: pip install 'gradio>=6,<7')")

import bindkit
from bindkit.index.where import parse_cli_filters

#: Largest k the slider offers; one (hidden) audio player exists per possible audio hit.
K_MAX = 20
#: Query kinds offered through the "other file" upload (image, audio and text have their own inputs).
OTHER_KINDS = ("video", "depth", "thermal", "imu")
#: Result files larger than this are listed in the table instead of being copied out for the browser.
MAX_SERVED_BYTES = 200 * 2**20


# ---- small helpers ------------------------------------------------------------------------------------------
def parse_filter(text: str | None) -> dict[str, Any] | None:
    """``"split=test, year>=2020"`` -> a ``where`` dict for ``Index.search`` (None when blank): clauses separated
    by commas or new lines, all of which must hold (the ``bindkit search --where`` grammar). Raises ValueError
    (bindkit's FilterError) naming the clause it cannot read."""
    return parse_cli_filters([part.strip() for part in re.split(r"[,\n]", text or "") if part.strip()])


def describe_index(index: Any, model: Any) -> str:
    """Markdown summary of ``index.stats()``: model card, weights, item counts and FAISS index type per modality."""
    st = index.stats()
    info = st.get("model") or {}
    head = (f"**Index** `{st['path']}` — **{st['count']}** items, {st['dim']}-d vectors, model card "
            f"**{info.get('card', '?')}**" + (f", weights `{info['weights']}`" if info.get("weights") else "")
            + ("" if model is not None else " — *no model loaded: search is disabled*"))
    counts = " · ".join(f"{kind} **{m.get('count', 0)}** ({m.get('key', '?')})" for kind, m in st["modalities"].items())
    return f"{head}\n\n{counts or '(empty index)'}"


def weights_hint(card: str) -> str:
    """How to get the weights of model card ``card`` (the one the index was built with), from what its card
    says: ``bindkit fetch CARD`` and the licence when it has a download, else ``--weights PATH``."""
    try:
        info = bindkit.load_card(card)
    except bindkit.CardError:
        return f"Restart with `--model CARD --weights PATH` (model card **{card}** is not installed here)."
    w = info.weights
    licence = w.get("license_note") or (f"licence: {w['license']}" if w.get("license") else "")
    licence = f" ({licence})" if licence else ""
    if w.get("url"):
        return (f"Get the **{info.name}** weights with `bindkit fetch {info.name}`{licence}, then restart with "
                "`--weights PATH` or put them in `weights/` or `~/.cache/bindkit`.")
    return (f"Model card **{info.name}** has no download: restart with `--weights PATH` pointing at the weights "
            f"the index was built with{licence}.")


class _Served:
    """Copies of result files in a private temp folder, so that the browser can fetch exactly the hits and
    nothing else (Gradio serves only files under the working directory, the temp folder or allowed_paths;
    allowing the media folders themselves would expose every file in them)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bindkit-demo-"))
        atexit.register(shutil.rmtree, self.root, True)

    def __call__(self, hit: Any) -> str | None:
        try:
            st = os.stat(hit.uri) if hit.uri else None
        except OSError:  # moved or deleted since it was indexed
            return None
        if st is None or not os.path.isfile(hit.uri) or st.st_size > MAX_SERVED_BYTES:
            return None
        # id + mtime + size: a file changed on disk since the last search gets a fresh copy.
        dest = self.root / f"{hit.id}-{st.st_mtime_ns}-{st.st_size}" / os.path.basename(hit.uri)
        try:
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(hit.uri, dest)
        except OSError:  # unreadable: the hit is still listed, in the table
            return None
        return str(dest)


def _name(hit: Any) -> str:
    if hit.uri:
        return os.path.basename(hit.uri)
    return repr(hit.text) if hit.text is not None else f"#{hit.id}"


def _upload_path(value: Any) -> str | None:
    """The server-side path of an uploaded file as the search handler receives it: the event runs with
    ``preprocess=False`` (see :func:`build_app`), so a file comes as Gradio's payload dict (already checked to
    lie in Gradio's upload folder); a plain path (a direct call) is taken as is."""
    if isinstance(value, dict):
        value = value.get("path")
    return str(value) if value else None


def _short_paths(message: str, query: dict[str, Any]) -> str:
    """``message`` with each uploaded query file's server-side path (Gradio's temp folder) shown as its name."""
    for kind, value in query.items():
        if kind != "text" and isinstance(value, str) and os.path.isabs(value):
            message = message.replace(value, os.path.basename(value))
    return message


# ---- the search handler -------------------------------------------------------------------------------------
def _outputs(status: str, gallery: list | None = None, audio: list | None = None, table: list | None = None) -> list:
    """Values for [status, gallery, *players, table]; players beyond the hits are hidden."""
    audio = audio or []
    players = [gr.Audio(value=path, label=label, visible=True) for path, label in audio[:K_MAX]]
    players += [gr.Audio(value=None, visible=False) for _ in range(K_MAX - len(players))]
    return [status, gallery or [], *players, table or []]


def search_fn(index: Any, model: Any, served: _Served, no_model_note: str):
    """The function behind the Search button: (text, image, audio, other_file, other_kind, k, kinds, where)
    -> outputs of :func:`_outputs`. Every failure becomes a message in the status box (and a toast)."""

    def fail(message: str) -> list:
        gr.Warning(message)
        return _outputs(f"⚠️ {message}")

    def run(text, image, audio, other_file, other_kind, k, kinds, where_text):
        if model is None:
            return fail(no_model_note)
        query: dict[str, Any] = {}
        if isinstance(text, str) and text.strip():
            query["text"] = text.strip()
        image, audio, other_file = _upload_path(image), _upload_path(audio), _upload_path(other_file)
        if image:
            query["image"] = image
        if audio:
            query["audio"] = audio
        if other_file:
            if (other_kind or "video") not in OTHER_KINDS:
                return fail(f"Unknown modality {other_kind!r} for the other query file: choose one of "
                            f"{', '.join(OTHER_KINDS)}.")
            query[other_kind or "video"] = other_file
        if not query:
            return fail("Empty query: type a text or upload an image, audio or other file.")
        if not kinds:
            return fail("No result modality selected: tick at least one.")
        try:
            k = min(max(int(float(k)), 1), K_MAX)
        except (TypeError, ValueError, OverflowError):
            return fail(f"k must be a whole number from 1 to {K_MAX}, got {k!r}.")
        where_text = where_text if isinstance(where_text, str) else ""
        try:
            where = parse_filter(where_text)
            t0 = time.perf_counter()
            hits = index.search(**query, k=k, modalities=list(kinds), where=where)
            took = time.perf_counter() - t0
        except (bindkit.BindkitError, ValueError, OSError) as exc:
            return fail(_short_paths(str(exc), query))
        gallery, players, table = [], [], []
        for kind, lst in hits.items():
            for rank, h in enumerate(lst, 1):
                label = f"{rank}. {_name(h)} · {h.score:+.3f}"
                path = served(h) if kind in ("image", "audio") else None
                if kind == "image" and path:
                    gallery.append((path, label))
                elif kind == "audio" and path:
                    players.append((path, label))
                else:
                    table.append([kind, rank, h.uri if h.uri else _name(h), round(h.score, 4),
                                  json.dumps(h.metadata) if h.metadata else ""])
        counts = ", ".join(f"{kind} {len(lst)}" for kind, lst in hits.items())
        status = (f"Query: {' + '.join(query)} · {sum(len(v) for v in hits.values())} hits ({counts}) in "
                  f"{took * 1000:.0f} ms" + (f" · filter `{where_text.strip()}`" if where else ""))
        return _outputs(status, gallery, players, table)

    return run


# ---- the app ------------------------------------------------------------------------------------------------
def build_app(index: Any, model: Any | None, *, note: str | None = None,
              title: str = "bindkit search") -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (not launched). ``model=None`` serves the stats and explains how to get
    weights (``note``, default: :func:`weights_hint` for the card the index was built with) instead of searching."""
    card = (index.stats().get("model") or {}).get("card", "?")
    no_model_note = note or f"No model weights are loaded, so the index cannot be searched. {weights_hint(card)}"
    kinds = index.modalities
    served = _Served()
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nOne embedding space for images, text, audio, video, depth, thermal and IMU: "
                    "several query inputs are combined by embedding arithmetic; hits come back per modality.")
        if model is None:
            gr.Markdown(f"⚠️ {no_model_note}", elem_id="weights-missing")
        gr.Markdown(describe_index(index, model), elem_id="index-stats")
        with gr.Row():
            with gr.Column(scale=2):
                text = gr.Textbox(label="Text query", placeholder="a dog barking", elem_id="query-text")
                with gr.Row():
                    image = gr.Image(label="Image query (optional)", type="filepath", height=180,
                                     sources=["upload", "clipboard"], elem_id="query-image")
                    audio = gr.Audio(label="Audio query (optional)", type="filepath",
                                     sources=["upload", "microphone"], elem_id="query-audio")
                with gr.Accordion("Other query file (video, depth, thermal, IMU)", open=False):
                    other_kind = gr.Dropdown(list(OTHER_KINDS), value="video", label="Its modality")
                    other_file = gr.File(label="File", type="filepath", elem_id="query-other")
            with gr.Column(scale=1):
                k = gr.Slider(1, K_MAX, value=5, step=1, label="k (hits per modality)", elem_id="k")
                result_kinds = gr.CheckboxGroup(kinds, value=list(kinds), label="Result modalities",
                                                elem_id="result-kinds")
                where = gr.Textbox(label="Metadata filter (optional)", placeholder="key=value, year>=2020",
                                   elem_id="where")
                button = gr.Button("Search", variant="primary", elem_id="search")
        status = gr.Markdown("Type a query and press Search.", elem_id="status")
        gallery = gr.Gallery(label="Images", columns=6, fit_columns=False, height=260,
                             elem_id="image-results", object_fit="contain", buttons=["download", "fullscreen"])
        with gr.Column(elem_id="audio-results"):
            gr.Markdown("**Audio**")
            players = [gr.Audio(visible=False, interactive=False, buttons=["download"],
                                elem_classes=["audio-hit"]) for _ in range(K_MAX)]
        table = gr.Dataframe(headers=["modality", "rank", "item", "score", "metadata"], label="Other modalities",
                             interactive=False, wrap=True, max_height=800, elem_id="other-results")
        inputs = [text, image, audio, other_file, other_kind, k, result_kinds, where]
        outputs = [status, gallery, *players, table]
        run = search_fn(index, model, served, no_model_note)
        # preprocess=False: the handler gets the uploads' paths as they are. Gradio's image preprocessing opens
        # (and for non-RGB modes decodes and re-encodes) an upload before the handler runs, so a WAV renamed
        # .png or a decompression bomb failed there as a bare "Error" badge, or ate memory; bindkit's loader
        # reads the file instead, and its clear errors (and bomb limit) reach the status box.
        button.click(run, inputs, outputs, preprocess=False)
        text.submit(run, inputs, outputs, preprocess=False)
    return app


def _load(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(index, model or None, note): the model the index was built with unless --model/--weights say
    otherwise; no weights -> model None and a note saying how to get them. A --model other than the index's
    is refused (IndexStoreError naming both) before any weights are looked for."""
    import torch

    with bindkit.Index.open(args.index) as probe:  # no model: just read what the index was built with
        recorded = probe.stats().get("model") or {}
    if args.model and recorded.get("card") and bindkit.load_card(args.model).name != recorded["card"]:
        raise bindkit.IndexStoreError(
            f"index {args.index} was built with model {recorded['card']!r}, but --model {args.model} was given; "
            f"vectors of different models never mix: drop --model, or build an index with {args.model}")
    card = args.model or recorded.get("card") or "imagebind_huge"
    weights = args.weights
    if weights is None and card == recorded.get("card"):
        weights = recorded.get("weights")
    note = None
    if weights is not None and not os.path.exists(weights):
        if args.weights:
            raise bindkit.WeightsNotFoundError(f"--weights {weights}: no such file or directory. "
                                               f"{weights_hint(card)}")
        note = f"(the weights recorded in the index, `{weights}`, are gone)"
        weights = None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = bindkit.load_model(card, weights=weights, device=device, download=False)
    except bindkit.WeightsNotFoundError as exc:
        msg = (f"No weights found for model card **{card}**{' ' + note if note else ''}, so the index cannot be "
               f"searched. {weights_hint(card)} ({exc})")
        print(f"warning: {msg}".replace("**", ""), file=sys.stderr)
        return bindkit.Index.open(args.index), None, msg
    return bindkit.Index.open(args.index, model=model), model, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Serve a search UI over a bindkit index (Gradio, local only).",
                                epilog="example: python demos/app.py --index my_index --port 7860")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder (bindkit index build ... --out DIR)")
    p.add_argument("--model", metavar="CARD", help="encoder card (default: the one the index was built with)")
    p.add_argument("--weights", metavar="PATH", help="weights (default: as recorded in the index, else local cache)")
    p.add_argument("--device", metavar="DEV", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    args = p.parse_args(argv)
    try:
        index, model, note = _load(args)
    except bindkit.BindkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app = build_app(index, model, note=note)
    app.launch(server_name=args.host, server_port=args.port, share=False, show_error=False)
    index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
