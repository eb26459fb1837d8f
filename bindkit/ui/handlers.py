"""The functions behind the demo's buttons: search (several inputs, weighted), "more like this" (a hit's stored
vector), zero-shot classification and adding a folder to the index. Every failure becomes a message (and a
toast), never a stack trace in the page.

Part of the demo app (:mod:`bindkit.ui`)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from itertools import zip_longest
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TYPE_CHECKING

import gradio as gr
import numpy as np

import bindkit
from bindkit.fileio import sniff
from bindkit.index import parse_where
from bindkit.inputs import kind_from_path

from .views import RENDERERS, parse_classes, parse_templates, zero_shot

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Largest k the slider offers; one (hidden) audio player exists per possible audio hit.
K_MAX = 20
#: Query inputs, in the order of the search handler's arguments (and of Index.search's).
QUERY_KINDS = ("text", "image", "audio", "video", "depth", "thermal", "imu")
#: Result kinds shown as a gallery of files (image, video) or of renderings (depth, thermal, IMU).
GALLERY_KINDS = ("image", "video", "depth", "thermal", "imu")
#: Result files larger than this are listed in the table instead of being copied out for the browser.
MAX_SERVED_BYTES = 200 * 2**20
#: Files added per Index.add call when adding a folder (one progress step each).
ADD_CHUNK = 16


# ---- small helpers ------------------------------------------------------------------------------------------
def parse_filter(text: str | None) -> dict[str, Any] | None:
    """``"split=test, year>=2020"`` -> a ``where`` dict for ``Index.search`` (None when blank): clauses separated
    by commas or new lines, all of which must hold (the ``bindkit search --where`` grammar). Raises ValueError
    (bindkit's FilterError) naming the clause it cannot read."""
    return parse_where(text or None)


class _Served:
    """Copies (or renderings) of result files in a private temp folder, so that the browser can fetch exactly
    the hits and nothing else: Gradio's file route serves its own upload/cache folder (where returned files are
    copied) and the ``allowed_paths`` given at launch, which app.launch sets to this folder alone (allowing the
    media folders themselves would expose every file in them)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bindkit-demo-"))
        atexit.register(shutil.rmtree, self.root, True)

    def _dest(self, hit: Any, suffix: str = "") -> tuple[Path, bool] | None:
        try:
            st = os.stat(hit.uri) if hit.uri else None
        except OSError:  # moved or deleted since it was indexed
            return None
        if st is None or not os.path.isfile(hit.uri) or st.st_size > MAX_SERVED_BYTES:
            return None
        # id + mtime + size: a file changed on disk since the last search gets a fresh copy.
        dest = self.root / f"{hit.id}-{st.st_mtime_ns}-{st.st_size}" / (os.path.basename(hit.uri) + suffix)
        return dest, dest.exists()

    def __call__(self, hit: Any) -> str | None:
        """The hit's file, copied out (None when it is gone, too big or unreadable)."""
        found = self._dest(hit)
        if found is None:
            return None
        dest, done = found
        try:
            if not done:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(hit.uri, dest)
        except OSError:  # unreadable: the hit is still listed, in the table
            return None
        return str(dest)

    def rendered(self, hit: Any, kind: str) -> str | None:
        """A PNG of the hit as people look at it (depth/thermal colour-mapped, IMU plotted); None when the file
        cannot be read as that kind (the hit is then listed in the table)."""
        found = self._dest(hit, ".png")
        if found is None:
            return None
        dest, done = found
        if not done:
            try:
                image = RENDERERS[kind](hit.uri)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_suffix(".tmp")
                image.save(tmp, format="PNG")
                os.replace(tmp, dest)
            except Exception:  # noqa: BLE001 - any unreadable file: listed in the table instead
                return None
        return str(dest)


def _name(hit: Any) -> str:
    if hit.uri:
        return os.path.basename(hit.uri)
    return repr(hit.text) if hit.text is not None else f"#{hit.id}"


def _upload_path(value: Any) -> str | None:
    """The server-side path of an uploaded file as a handler receives it: events run with
    ``preprocess=False`` (see app.build_app), so a file comes as Gradio's payload dict (already checked to lie
    in Gradio's upload folder; a video's is nested under "video"); a plain path (a direct call) is taken as is."""
    if isinstance(value, dict):
        value = value.get("path") or _upload_path(value.get("video"))
    return str(value) if value else None


def _short_paths(message: str, query: dict[str, Any]) -> str:
    """``message`` with each uploaded query file's server-side path (Gradio's temp folder) shown as its name."""
    for kind, value in query.items():
        if kind != "text" and isinstance(value, str) and os.path.isabs(value):
            message = message.replace(value, os.path.basename(value))
    return message


def _k(k: Any) -> int:
    try:
        return min(max(int(float(k)), 1), K_MAX)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"k must be a whole number from 1 to {K_MAX}, got {k!r}") from None


# ---- showing hits -------------------------------------------------------------------------------------------
def empty_hits() -> dict[str, Any]:
    return {"order": {}, "choices": []}


def outputs(status: str, galleries: dict[str, list] | None = None, audio: list | None = None,
            texts: list | None = None, table: list | None = None, hits: dict[str, Any] | None = None,
            pick: str | None = None) -> list:
    """Values for [status, *galleries (GALLERY_KINDS), *players, text table, other table, more-like dropdown,
    hits state]; players beyond the hits are hidden."""
    galleries = galleries or {}
    audio = audio or []
    hits = hits or empty_hits()
    players = [gr.Audio(value=path, label=label, visible=True) for path, label in audio[:K_MAX]]
    players += [gr.Audio(value=None, visible=False) for _ in range(K_MAX - len(players))]
    choices = hits["choices"]
    more = gr.Dropdown(choices=choices, value=pick if pick is not None else (choices[0][1] if choices else None))
    return [status, *[galleries.get(k, []) for k in GALLERY_KINDS], *players, texts or [], table or [], more, hits]


def show(hits: dict[str, list], served: _Served) -> tuple[dict, list, list, list, dict]:
    """Hits per modality -> (galleries, players, text rows, other rows, state for "more like this")."""
    galleries: dict[str, list] = {k: [] for k in GALLERY_KINDS}
    players, texts, table = [], [], []
    state = empty_hits()
    for kind, lst in hits.items():
        for rank, h in enumerate(lst, 1):
            label = f"{rank}. {_name(h)} · {h.score:+.3f}"
            if kind in ("image", "video", "audio"):
                path = served(h)
            elif kind in RENDERERS:
                path = served.rendered(h, kind)
            else:
                path = None
            if kind in GALLERY_KINDS and path:
                galleries[kind].append((path, label))
            elif kind == "audio" and path:
                players.append((path, label))
            elif kind == "text" and h.text is not None:
                texts.append([rank, h.text, round(h.score, 4), json.dumps(h.metadata) if h.metadata else ""])
            else:
                table.append([kind, rank, h.uri if h.uri else _name(h), round(h.score, 4),
                              json.dumps(h.metadata) if h.metadata else ""])
                continue
            state["order"].setdefault(kind, []).append(int(h.id))
        for rank, h in enumerate(lst, 1):
            state["choices"].append((f"{kind} {rank}. {_name(h)[:60]} ({h.score:+.3f})", f"{kind}:{h.id}"))
    # in the order the page shows them (galleries, audio players, texts): the default pick is the first hit seen
    page = {k: i for i, k in enumerate((*GALLERY_KINDS, "audio", "text"))}
    state["choices"].sort(key=lambda c: page.get(c[1].partition(":")[0], len(page)))
    return galleries, players, texts, table, state


def _summary(hits: dict[str, list], took: float) -> str:
    counts = ", ".join(f"{kind} {len(lst)}" for kind, lst in hits.items())
    return f"{sum(len(v) for v in hits.values())} hits ({counts}) in {took * 1000:.0f} ms"


# ---- search ----------------------------------------------------------------------------------------------------
def search_fn(index: Any, model: "BindModel", served: _Served, no_model_note: str) -> Callable[..., list]:
    """The function behind the Search button: (text, image, audio, video, depth, thermal, imu, then one weight
    per input in the same order, k, result kinds, filter) -> values for :func:`outputs`."""

    def fail(message: str) -> list:
        gr.Warning(message)
        return outputs(f"⚠️ {message}")

    def run(*values: Any) -> list:
        if model is None:
            return fail(no_model_note)
        n = len(QUERY_KINDS)
        inputs, weights, (k, kinds, where_text) = values[:n], values[n:2 * n], values[2 * n:]
        query: dict[str, Any] = {}
        wanted: dict[str, float] = {}
        for kind, value, weight in zip(QUERY_KINDS, inputs, weights):
            value = (value.strip() or None) if kind == "text" and isinstance(value, str) else (
                None if kind == "text" else _upload_path(value))
            if not value:
                continue
            try:
                w = 1.0 if weight is None else float(weight)
            except (TypeError, ValueError):
                return fail(f"the weight of the {kind} query must be a number, got {weight!r}")
            if w == 0:  # weight 0: this input is switched off
                continue
            query[kind], wanted[kind] = value, w
        if not query:
            return fail("Empty query: type a text or upload an image, audio, video, depth, thermal or IMU file "
                        "(with a weight other than 0).")
        if not kinds:
            return fail("No result modality selected: tick at least one.")
        where_text = where_text if isinstance(where_text, str) else ""
        try:
            k = _k(k)
            where = parse_filter(where_text)
            t0 = time.perf_counter()
            weights_arg = wanted if any(w != 1.0 for w in wanted.values()) else None
            hits = index.search(**query, weights=weights_arg, k=k, modalities=list(kinds), where=where)
            took = time.perf_counter() - t0
        except (bindkit.BindkitError, ValueError, OSError) as exc:
            return fail(_short_paths(str(exc), query))
        galleries, players, texts, table, state = show(hits, served)
        terms = " + ".join(kind if w == 1.0 else f"{w:g}×{kind}" for kind, w in wanted.items())
        status = (f"Query: {terms} · {_summary(hits, took)}" + (f" · filter `{where_text.strip()}`" if where else ""))
        return outputs(status, galleries, players, texts, table, state)

    return run


def more_like_fn(index: Any, served: _Served) -> Callable[..., list]:
    """The "More like this" button: (picked "kind:id", k, result kinds, filter, hits state) -> :func:`outputs`,
    searching with the hit's stored vector (no re-embedding: the index holds it)."""

    def fail(message: str, state: Any = None) -> list:
        gr.Warning(message)
        return outputs(f"⚠️ {message}", hits=state if isinstance(state, dict) else None)

    def run(pick: Any, k: Any, kinds: Any, where_text: Any, state: Any = None) -> list:
        if not isinstance(pick, str) or ":" not in pick:
            return fail("Search first, then pick a hit (click it, or choose it in the list) for “more like this”.",
                        state)
        kind, _, raw = pick.partition(":")
        if not kinds:
            return fail("No result modality selected: tick at least one.", state)
        try:
            hit_id = int(raw)
            k = _k(k)
            where = parse_filter(where_text if isinstance(where_text, str) else "")
            ids, vecs = index.vectors(kind)
            row = np.flatnonzero(ids == hit_id)
            if not len(row):
                return fail(f"item {kind}:{hit_id} is no longer in the index", state)
            (item,) = index.get(hit_id)
            t0 = time.perf_counter()
            hits = index.search(vector=vecs[row[0]], k=k, modalities=list(kinds), where=where)
            took = time.perf_counter() - t0
        except (bindkit.BindkitError, ValueError, OSError) as exc:
            return fail(str(exc), state)
        galleries, players, texts, table, new_state = show(hits, served)
        status = f"More like {kind} {_name(item)} · {_summary(hits, took)}"
        return outputs(status, galleries, players, texts, table, new_state, pick=pick)

    return run


def select_fn(kind: str) -> Callable[..., Any]:
    """Clicking a hit in the ``kind`` gallery (or a row of the text table) picks it for "more like this"."""

    def run(state: Any, evt: gr.SelectData) -> Any:
        order = (state or {}).get("order", {}).get(kind, [])
        i = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(i, int) or not 0 <= i < len(order):
            return gr.Dropdown()
        return gr.Dropdown(value=f"{kind}:{order[i]}")

    return run


# ---- zero-shot -------------------------------------------------------------------------------------------------
def zero_shot_fn(index: Any, model: "BindModel", no_model_note: str) -> Callable[..., tuple]:
    """The Classify button: (kind, text, file, example "kind:id", classes, templates) -> (bar chart data,
    status). The input is the text (kind text), else the uploaded file (as ``kind``), else the example."""
    import pandas as pd

    empty = pd.DataFrame({"class": [], "probability": []})

    def fail(message: str) -> tuple:
        gr.Warning(message)
        return empty, f"⚠️ {message}"

    def run(kind: Any, text: Any, upload: Any, example: Any, classes_text: Any, templates_text: Any) -> tuple:
        if model is None:
            return fail(no_model_note)
        item, label = None, ""
        if kind == "text" and isinstance(text, str) and text.strip():
            item = text.strip()
            label = repr(item)
        elif kind != "text" and _upload_path(upload):
            item = _upload_path(upload)
            label = os.path.basename(item)
        elif isinstance(example, str) and ":" in example:
            kind, _, raw = example.partition(":")
            (hit,) = index.get(int(raw))
            if hit is None:
                return fail(f"example {example} is no longer in the index")
            item, label = (hit.text if kind == "text" else hit.uri), _name(hit)
        if item is None:
            return fail("Nothing to classify: type a text (kind text), upload a file, or pick an example.")
        if kind not in QUERY_KINDS:
            return fail(f"unknown kind {kind!r}: choose one of {', '.join(QUERY_KINDS)}")
        try:
            classes = parse_classes(classes_text)
            templates = parse_templates(templates_text)
            if len(classes) < 2:
                raise ValueError("give at least two class names, separated by commas")
            result = zero_shot(model, kind, item, classes, templates)
        except (bindkit.BindkitError, ValueError, OSError) as exc:
            return fail(_short_paths(str(exc), {kind: item}))
        probs = result["probs"]
        df = pd.DataFrame({"class": list(probs), "probability": [round(p, 4) for p in probs.values()]})
        best = max(probs, key=probs.get)
        status = (f"{kind} {label} → **{best}** ({probs[best]:.1%}); softmax over cosine × {result['scale']:.1f} "
                  f"(the text logit scale), {len(templates)} prompt template(s) per class")
        return df, status

    return run


# ---- what an upload is ------------------------------------------------------------------------------------------
#: First bytes of audio and video containers (bindkit.fileio.sniff knows the image ones).
_MEDIA_MAGIC = ((b"OggS", "audio"), (b"fLaC", "audio"), (b"ID3", "audio"), (b"\x1aE\xdf\xa3", "video"))


def upload_kind(path: Any) -> tuple[str | None, str]:
    """(input kind, why) for an uploaded file, as ``bindkit embed`` and ``bindkit index build`` tell it: the
    extension (:func:`bindkit.inputs.kind_from_path`; an upload has no depth/thermal/imu folder to hint), then
    what the bytes say: a 16-bit greyscale PNG/TIFF is a depth map (millimetres), a .npy of 6 channels an IMU
    recording, and a file whose extension tells nothing is sniffed (JPEG, PNG, WAV, MP4 ... signatures).
    (None, why) when it cannot be told."""
    path = _upload_path(path)
    if not path:
        return None, ""
    name = os.path.basename(path)
    ext = Path(path).suffix.lower()
    kind = kind_from_path(path, folder_hints=False)
    try:
        if kind == "image" and ext in (".png", ".tif", ".tiff"):
            from PIL import Image

            with Image.open(path) as im:  # reads the header only
                mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                return "depth", f"{name}: a 16-bit greyscale image, read as a depth map (millimetres)"
            if mode in ("L", "LA"):
                return "image", f"{name}: a greyscale image, read as an image (choose thermal if it is one)"
        if ext == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            if len(shape) == 2 and 6 in shape:
                return "imu", f"{name}: an array of shape {shape}, read as an IMU recording (6 channels)"
            return None, f"{name}: an array of shape {shape}; choose its kind"
        if kind is None:
            with open(path, "rb") as f:
                head = f.read(16)
            what = sniff(head) or ""
            if "image" in what:
                return "image", f"{name}: {what} (by its first bytes)"
            if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI "):
                kind = "audio" if head[8:12] == b"WAVE" else "video"
                return kind, f"{name}: a {'WAV' if kind == 'audio' else 'AVI'} file (by its first bytes)"
            if head[4:8] == b"ftyp":
                return "video", f"{name}: an MP4/MOV file (by its first bytes)"
            for magic, what in _MEDIA_MAGIC:
                if head.startswith(magic):
                    return what, f"{name}: {what} (by its first bytes)"
    except (OSError, ValueError, SyntaxError) as exc:  # unreadable: the classifier's loader will say why
        return kind, f"{name}: could not look inside ({exc}); choose its kind"
    if kind is None:
        return None, f"{name}: cannot tell the kind from its name or first bytes; choose it"
    return kind, f"{name}: read as {kind} (from its extension {ext})"


def upload_kind_fn(presets: dict[str, str]) -> Callable[[Any], tuple]:
    """Zero-shot tab: a new upload sets the input kind (the user may change it back), says why, and picks the
    preset of ``presets`` that kind carries: (kind, note, preset) in one answer. A cleared upload (or one whose kind
    cannot be told) leaves kind and preset as they are. One answer, not a chain of steps that reads the kind back
    from the page: with quick uploads, a later step of an earlier upload (or of a clear) could set a stale kind or
    preset after the new upload's (a flake of the browser tests under load)."""

    def run(upload: Any) -> tuple:
        kind, why = upload_kind(upload)
        if kind is None:
            return gr.skip(), why and f"⚠️ {why}", gr.skip()
        preset = gr.Dropdown(value=presets[kind]) if kind in presets else gr.skip()
        return gr.Radio(value=kind), f"Input kind: **{kind}** — {why}", preset

    return run


# ---- examples that work ------------------------------------------------------------------------------------------
def some_items(index: Any, kind: str, n: int) -> list[Any]:
    """Up to ``n`` stored items of ``kind`` (as hits): those nearest a fixed vector, so the same on every start
    and as cheap on a million items as on ten (no scan of every stored vector)."""
    if kind not in index.modalities:
        return []
    return index.search(vector=np.ones(index.dim, np.float32), k=n, modalities=[kind])[kind]


#: Phrases built from a scene's labels (synthetic world), most specific first; each names the labels it uses.
_PHRASES = (("size", "colour", "shape"), ("temperature", "shape"), ("colour", "shape"), ("material", "shape"))


def example_texts(index: Any, model: "BindModel", n: int = 4, scan: int = 12) -> list[str]:
    """Up to ``n`` text queries that work on this index with this model: phrases made of the labels of stored
    synthetic-world scenes ("a large red circle"), kept only when the top image hit really has those labels.
    Empty for an index without such labels (your own media) or a model without a text encoder."""
    if model is None or "text" not in model.modalities:
        return []
    scenes = [h.metadata for h in some_items(index, "image", scan) if isinstance(h.metadata, dict)]
    candidates: dict[str, dict[str, str]] = {}
    for attrs in _PHRASES:
        for meta in scenes:
            if all(isinstance(meta.get(a), str) for a in attrs):
                labels = {a: meta[a] for a in attrs}
                candidates.setdefault("a " + " ".join(labels.values()), labels)
    if not candidates:
        return []
    texts = list(candidates)
    try:
        found = index.search(text=texts, k=1, modalities=["image"])
    except (bindkit.BindkitError, ValueError, OSError):
        return []
    by_form: dict[tuple[str, ...], list[str]] = {}
    for text, hits in zip(texts, found):
        top = (hits.get("image") or [None])[0]
        labels = candidates[text]
        if top is not None and all((top.metadata or {}).get(a) == v for a, v in labels.items()):
            by_form.setdefault(tuple(labels), []).append(text)
    # round robin over the phrase forms, so that the examples show different kinds of query
    return [t for row in zip_longest(*by_form.values()) for t in row if t is not None][:n]


def example_media(index: Any, served: _Served, kinds: tuple[str, ...] = ("image", "audio", "imu")) -> list[tuple]:
    """(kind, a servable copy of the file, label) of one stored item per kind: a query with a stored item finds
    that item first (cosine 1) and its scene in the other modalities, whatever the model."""
    out = []
    for kind in kinds:
        hit = next((h for h in some_items(index, kind, 8) if h.uri), None)
        path = served(hit) if hit is not None else None
        if path:
            out.append((kind, path, f"{kind} query: {_name(hit)}"))
    return out


# ---- the index tab ---------------------------------------------------------------------------------------------
def describe_index(index: Any, model: "BindModel") -> str:
    """Markdown summary of ``index.stats()``: model card, weights, item counts and FAISS index type per modality."""
    st = index.stats()
    info = st.get("model") or {}
    head = (f"**Index** `{st['path']}` — **{st['count']}** items, {st['dim']}-d vectors, model card "
            f"**{info.get('card', '?')}**" + (f", weights `{info['weights']}`" if info.get("weights") else "")
            + ("" if model is not None else " — *no model loaded: search is disabled*"))
    counts = " · ".join(f"{kind} **{m.get('count', 0)}** ({m.get('key', '?')})"
                        for kind, m in st["modalities"].items())
    size = f" · {st['disk_bytes'] / 2**20:.1f} MiB on disk" if isinstance(st.get("disk_bytes"), (int, float)) else ""
    return f"{head}\n\n{counts or '(empty index)'}{size}"


def stats_rows(index: Any) -> list[list[Any]]:
    """One row per modality: count, FAISS index type, its search parameters, measured recall@10."""
    rows = []
    for kind, m in index.stats()["modalities"].items():
        recall = m.get("recall@10")
        rows.append([kind, m.get("count", 0), m.get("key", "?"), json.dumps(m.get("params") or {}),
                     "" if recall is None else f"{recall:.3f}"])
    return rows


# ---- folders a client may add ----------------------------------------------------------------------------------
#: The answer of the Add folder action (button or API) when the demo was started without ``--allow-dir``.
ADD_DISABLED = ("Adding folders is off: this demo was started without `--allow-dir`. To let its users add "
                "folders, restart it with `--allow-dir DIR` (repeatable): folders under DIR only.")


def allowed_roots(dirs: Iterable[str | os.PathLike]) -> tuple[Path, ...]:
    """The ``--allow-dir`` folders, resolved (``~`` expanded, symlinks followed: :func:`os.path.realpath`), in
    the order given, duplicates dropped. Raises ValueError naming one that is not a folder."""
    out: list[Path] = []
    for d in dirs:
        real = Path(os.path.realpath(os.path.expanduser(os.fspath(d))))
        if not real.is_dir():
            raise ValueError(f"--allow-dir {d}: not a folder on this machine; give an existing folder whose "
                             "files the demo's users may add and see")
        if real not in out:
            out.append(real)
    return tuple(out)


def within(path: str | os.PathLike, roots: Sequence[Path]) -> bool:
    """Whether ``path``, resolved (symlinks followed, ``..`` collapsed), is one of ``roots`` or lies under one."""
    real = os.path.realpath(path)
    return any(real == str(r) or real.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


def resolve_folder(text: Any, roots: Sequence[Path]) -> Path:
    """The folder a client named, resolved, if it lies under an allowed root; a relative path is taken under
    the first root. Raises PermissionError (nothing allowed, or the path leads outside the roots; checked
    before the path is looked at, so a refusal says nothing about what exists outside) or ValueError (not a
    folder)."""
    if not roots:
        raise PermissionError(ADD_DISABLED)
    named = str(text or "").strip()
    if not named:
        raise ValueError(f"type the path of a folder under {_roots_text(roots)}")
    path = Path(os.path.expanduser(named))
    if not path.is_absolute():
        path = roots[0] / path
    if not within(path, roots):
        raise PermissionError(f"{named!r} is outside the folders this demo may add ({_roots_text(roots)}): "
                              "only folders under those given with --allow-dir at start can be added")
    real = Path(os.path.realpath(path))
    if not real.is_dir():
        raise ValueError(f"not a folder: {named!r} (folders under {_roots_text(roots)} can be added)")
    return real


def _roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(f"`{r}`" for r in roots)


def _files_under(folder: Path, roots: Sequence[Path]) -> tuple[list[str], int]:
    """(the files under ``folder``, resolved, that stay under an allowed root; how many were left out because a
    symlink leads outside them). Hidden files and folders are skipped; symlinked folders are not entered."""
    out, outside, seen = [], 0, set()
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            real = os.path.realpath(os.path.join(top, name))
            if not within(real, roots):
                outside += 1
            elif real not in seen and os.path.isfile(real):
                seen.add(real)
                out.append(real)
    return out, outside


def add_folder_fn(index: Any, model: "BindModel", no_model_note: str, roots: Sequence[Path] = ()) -> Callable[..., tuple]:
    """The Add folder button (and API endpoint ``/add_folder``): (folder, progress) -> (status, stats markdown,
    stats rows, result-kind choices). Only folders under ``roots`` (:func:`allowed_roots`; none: the action is
    refused) are read, and of their files only those that stay under a root once symlinks are followed. Files'
    kinds are inferred by Index.add (extension; depth/, thermal/, imu/ folders); those it cannot read are counted
    and named, not fatal."""
    roots = tuple(roots)

    def run(folder: Any, progress: gr.Progress = gr.Progress()) -> tuple:
        def done(message: str) -> tuple:
            kinds = index.modalities
            return (message, describe_index(index, model), stats_rows(index),
                    gr.CheckboxGroup(choices=kinds))

        if not roots:
            return done(f"⚠️ {ADD_DISABLED}")
        if model is None:
            return done(f"⚠️ {no_model_note}")
        try:
            path = resolve_folder(folder, roots)
        except (PermissionError, ValueError) as exc:
            return done(f"⚠️ {exc}")
        files, outside = _files_under(path, roots)
        left_out = (f" {outside} file(s) left out: symlinks leading outside the allowed folders."
                    if outside else "")
        if not files:
            return done(f"⚠️ `{path}` holds no files that can be added.{left_out}")
        added, errors = 0, []
        progress((0, len(files)), desc="embedding", unit="files")
        try:
            for start in range(0, len(files), ADD_CHUNK):
                chunk = files[start:start + ADD_CHUNK]
                result = index.add(chunk, strict=False, show_progress_bar=False)
                errors.extend(result.errors)
                added += len(chunk) - len(result.errors)
                progress((start + len(chunk), len(files)), desc="embedding", unit="files")
            index.flush()
        except (bindkit.BindkitError, OSError, ValueError) as exc:
            return done(f"⚠️ stopped after {added} file(s): {exc}")
        msg = f"Added {added} of {len(files)} file(s) from `{path}`."
        if errors:
            shown = "; ".join(f"{os.path.basename(str(getattr(e, 'item', '?')))}: {getattr(e, 'reason', e)}"
                              for e in errors[:5])
            msg += f" {len(errors)} skipped ({shown}{' …' if len(errors) > 5 else ''})."
        return done(msg + left_out)

    return run
