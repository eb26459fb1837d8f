"""bindkit demo: search, zero-shot and index tabs over one embedding space of six modalities (Gradio, local only).

    python demos/app.py                         # the committed model (weights/bindkit_toy) over a generated gallery
    python demos/app.py --index my_index        # your index (bindkit index build SRC --out my_index --model M)
    python demos/app.py --model CARD_OR_DIR [--weights PATH] [--index DIR] [--port 7860]

(``python -m bindkit.ui`` and ``bindkit demo --ui`` start the same app; ``demos/app.py`` is a launcher of it.)

With no ``--index`` the demo generates a small gallery of every modality (images, captions, audio, video,
depth, thermal, IMU: scenes of bindkit.datasets.synthetic) into a cache folder and indexes it once per model.
Default model: weights/bindkit_toy if present, else imagebind_huge if its weights are on this machine, else a
message saying how to get weights. Built on bindkit's public API (bindkit.load_model, bindkit.Index,
bindkit.datasets). Nothing leaves the machine: no share links, no analytics, the server binds to 127.0.0.1
unless told otherwise.

What clients can reach: the index's hits (copies of them; Gradio's file route serves nothing else of the disk)
and, only with ``--allow-dir DIR``, folders under DIR added from the Index tab (or its API endpoint). Another
``--host`` than loopback needs a login (``--auth-file FILE``, ``$BINDKIT_DEMO_AUTH=USER:PASSWORD``, ``--auth``)
or ``--insecure`` (a warning); without either the demo refuses to start.

A banner says what the loaded model knows (bindkit_toy: the synthetic world only; a real photo gets nonsense).

Tabs:
  Search     text, image (upload/webcam), audio (upload/microphone), video, depth, thermal and IMU queries, several
             at once with a weight each (embedding arithmetic); examples that work with the model (text phrases
             checked against the index, stored items as queries: one click fills and searches); hits per
             modality beside the query (on a phone: scrolled into view), with a busy indicator, as people look at
             them (image and video galleries, audio players, depth/thermal colour-mapped, IMU plotted, texts in a
             table), with scores; click any hit (or pick it in the list) and press "More like this".
  Zero-shot  any input + class names -> probabilities (bar chart); the input kind is read from the uploaded file
             as `bindkit embed` reads it (plus: a 16-bit PNG is depth), and a preset that kind carries is offered;
             editable prompt templates.
  Index      counts, model, index types and measured recall; add a folder under an --allow-dir root (with a
             progress bar).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

try:
    import gradio as gr
except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
    if exc.name != "gradio":
        raise
    from . import GRADIO_MISSING

    raise ModuleNotFoundError(GRADIO_MISSING, name="gradio") from None

import bindkit

from . import gallery, handlers, views  # noqa: F401  (views: app.views, for tests and tools)

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

# The pieces tests and other tools use, under the names they had when this was one file.
K_MAX = handlers.K_MAX
QUERY_KINDS = handlers.QUERY_KINDS
GALLERY_KINDS = handlers.GALLERY_KINDS
parse_filter = handlers.parse_filter
describe_index = handlers.describe_index
search_fn = handlers.search_fn
_Served = handlers._Served

GALLERY_LABELS = {
    "image": "Images",
    "video": "Videos",
    "depth": "Depth (colour-mapped: near = red, far = blue)",
    "thermal": "Thermal (colour-mapped, fixed scale: hot = bright)",
    "imu": "IMU (accelerometer and gyroscope; x red, y green, z blue)",
}
#: Zero-shot presets: the synthetic world's attributes (what the built-in gallery shows).
PRESETS = ("shape", "colour", "size", "material", "temperature", "motion")
#: The preset offered for an input of each kind: an attribute that kind carries and bindkit_toy tells well
#: (its image -> shape is weak: colour is the default).
PRESET_FOR = {"text": "colour", "image": "colour", "video": "colour", "audio": "material", "depth": "size",
              "thermal": "temperature", "imu": "motion"}


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


def _examples(index: Any, per_kind: int = 4) -> list[tuple[str, str]]:
    """A few stored items per modality, offered as zero-shot inputs: (label, "kind:id")."""
    out = []
    for kind in sorted(index.modalities, key=lambda k: (k != "image", k)):
        for hit in handlers.some_items(index, kind, per_kind):
            name = hit.text if hit.text is not None else os.path.basename(hit.uri or f"#{hit.id}")
            extra = hit.metadata.get("caption") if isinstance(hit.metadata, dict) else None
            out.append((f"{kind} · {name[:50]}" + (f" — {extra[:50]}" if extra else ""), f"{kind}:{hit.id}"))
    return out


def _preset(attribute: str) -> tuple[str, str]:
    from bindkit.datasets import synthetic

    return ", ".join(synthetic.classes(attribute)), "\n".join(synthetic.templates(attribute))


# ---- the app ------------------------------------------------------------------------------------------------
def show_js(elem_id: str) -> str:
    """Client-side code that brings element ``elem_id`` (a status line: Gradio's busy indicator, then the
    results below it) into view when it is off screen, e.g. on a phone where results come after every input."""
    return """() => {
  const el = document.getElementById('%s');
  if (!el) return;
  const r = el.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight - 120) el.scrollIntoView({block: 'start', behavior: 'smooth'});
}""" % elem_id
#: What a model card knows, for the banner (the card's own description is the fallback).
KNOWS = {
    "imagebind_huge": "ImageBind huge (Meta): image and text towers from OpenCLIP trained on web-scale photos and "
                      "captions, audio, depth, thermal and IMU bound to images with real paired data. Real media "
                      "work; the weights are non-commercial (CC BY-NC 4.0).",
}


def model_banner(model: "BindModel", card: str) -> str:
    """Markdown: what the loaded model knows, so that a newcomer's first query is one that can work. For
    bindkit_toy (and models trained like it): the synthetic world only, its vocabulary, and that a real photo
    gets nonsense."""
    name = model.card.name if model is not None else card
    if model is not None and (name.startswith("bindkit_toy") or "synthetic world only" in model.card.description):
        from bindkit.datasets import synthetic

        c = synthetic.classes
        return (f"**`{name}` knows bindkit's synthetic world only**: one object per scene — a {', '.join(c('shape'))}; "
                f"{', '.join(c('colour'))}; {', '.join(c('size'))}; {', '.join(c('temperature'))}; made of "
                f"{', '.join(c('material'))}; {', '.join(c('motion'))} — seen as image, caption, sound, depth, "
                "thermal and IMU. **A real photo, sound or sentence gets nonsense.** Try an example below. For real "
                "media restart with `--model imagebind_huge` (`bindkit fetch imagebind_huge`: 4.5 GB, CC BY-NC 4.0).")
    if model is None:
        return f"Model `{name}`: no weights loaded (see below)."
    desc = KNOWS.get(name) or (model.card.description or "").split(". ")[0].strip()
    return f"**Model `{name}`**" + (f": {desc}" if desc else "") + f" — {model.dim}-d space, encoders " \
        f"{', '.join(model.modalities)}."


def _examples_block(index: Any, model: "BindModel", served: Any, inputs: list, media_inputs: dict[str, Any]) -> Any:
    """gr.Examples of queries that work with this model on this index (None when there are none): text
    phrases checked against the index (handlers.example_texts) and stored items as image/audio/IMU queries.
    A row sets every query input (the others cleared); the caller chains the search to its click."""
    texts = handlers.example_texts(index, model)
    media = handlers.example_media(index, served)
    if not texts and not media:
        return None
    rows, labels = [], []
    for t in texts:
        rows.append([t] + [None] * len(media_inputs))
        labels.append(f"“{t}”")
    for kind, path, label in media:
        rows.append([None] + [path if k == kind else None for k in media_inputs])
        labels.append(label)
    return gr.Examples(rows, [inputs[0], *media_inputs.values()], label="Examples that work with this model "
                       "(click one: it fills the query and searches)", example_labels=labels,
                       examples_per_page=12, elem_id="examples")


def _search_tab(index: Any, model: "BindModel", served: Any, no_model_note: str) -> Any:
    kinds = index.modalities
    upload = {"min_width": 200}  # two upload boxes side by side on a wide screen, one per row on a phone
    with gr.Row(equal_height=True):
        text = gr.Textbox(label="Text query", placeholder="describe what to find, e.g. a hot star",
                          elem_id="query-text", scale=5, min_width=240)
        button = gr.Button("Search", variant="primary", elem_id="search", scale=1, min_width=120, size="lg")
    examples_slot = gr.Column()
    with gr.Row():
        with gr.Column(scale=2, min_width=300, elem_id="query-inputs"):
            w_text = gr.Slider(-1, 2, value=1, step=0.1, label="text weight", elem_id="weight-text")
            with gr.Row():
                with gr.Column(**upload):
                    image = gr.Image(label="Image query", type="filepath", height=200,
                                     sources=["upload", "webcam", "clipboard"], elem_id="query-image")
                    w_image = gr.Slider(-1, 2, value=1, step=0.1, label="image weight", elem_id="weight-image")
                with gr.Column(**upload):
                    audio = gr.Audio(label="Audio query", type="filepath", sources=["upload", "microphone"],
                                     elem_id="query-audio")
                    w_audio = gr.Slider(-1, 2, value=1, step=0.1, label="audio weight", elem_id="weight-audio")
            with gr.Row():
                with gr.Column(**upload):
                    video = gr.Video(label="Video query", sources=["upload", "webcam"], elem_id="query-video")
                    w_video = gr.Slider(-1, 2, value=1, step=0.1, label="video weight", elem_id="weight-video")
                files, weights = {}, {}
                for kind, hint in (("depth", "depth map (16-bit PNG in mm, or 8-bit)"),
                                   ("thermal", "thermal image (grey, hot = bright)"),
                                   ("imu", "IMU table (CSV: accel x/y/z, gyro x/y/z)")):
                    with gr.Column(**upload):
                        files[kind] = gr.File(label=f"{kind} query: {hint}", type="filepath", elem_id=f"query-{kind}")
                        weights[kind] = gr.Slider(-1, 2, value=1, step=0.1, label=f"{kind} weight",
                                                  elem_id=f"weight-{kind}")
            k = gr.Slider(1, handlers.K_MAX, value=5, step=1, label="k (hits per modality)", elem_id="k")
            result_kinds = gr.CheckboxGroup(kinds, value=list(kinds), label="Result modalities",
                                            elem_id="result-kinds")
            where = gr.Textbox(label="Metadata filter (optional)", placeholder="colour=red, size=large",
                               elem_id="where")
            gr.Markdown("Several inputs are combined by embedding arithmetic: the weighted sum of their unit "
                        "vectors (a negative weight subtracts; 0 leaves the input out).")
        with gr.Column(scale=3, min_width=300, elem_id="results"):
            status = gr.Markdown("Type a query and press Search, or click an example.", elem_id="status",
                                 min_height=48)
            with gr.Row():
                more_pick = gr.Dropdown([], label="Hit for “more like this” (or click a hit)", elem_id="more-pick",
                                        scale=4, min_width=200, allow_custom_value=False)
                more_button = gr.Button("More like this", elem_id="more-like", scale=1, min_width=120)
            hits_state = gr.State(handlers.empty_hits())
            galleries = {}
            for kind in GALLERY_KINDS:
                galleries[kind] = gr.Gallery(label=GALLERY_LABELS[kind], columns=4, fit_columns=False, height=240,
                                             elem_id=f"{kind}-results", object_fit="contain",
                                             buttons=["download", "fullscreen"])
            with gr.Column(elem_id="audio-results"):
                gr.Markdown("**Audio**")
                players = [gr.Audio(visible=False, interactive=False, buttons=["download"],
                                    elem_classes=["audio-hit"]) for _ in range(handlers.K_MAX)]
            texts = gr.Dataframe(headers=["rank", "text", "score", "metadata"], label="Texts", interactive=False,
                                 wrap=True, max_height=500, elem_id="text-results")
            table = gr.Dataframe(headers=["modality", "rank", "item", "score", "metadata"],
                                 label="Other hits (files that cannot be shown)", interactive=False, wrap=True,
                                 max_height=500, elem_id="other-results")

    inputs = [text, image, audio, video, files["depth"], files["thermal"], files["imu"],
              w_text, w_image, w_audio, w_video, weights["depth"], weights["thermal"], weights["imu"],
              k, result_kinds, where]
    outputs = [status, *galleries.values(), *players, texts, table, more_pick, hits_state]
    run = handlers.search_fn(index, model, served, no_model_note)
    # preprocess=False: the handler gets the uploads' paths as they are. Gradio's image preprocessing opens
    # (and for non-RGB modes decodes and re-encodes) an upload before the handler runs, so a WAV renamed
    # .png or a decompression bomb failed there as a bare "Error" badge, or ate memory; bindkit's loader
    # reads the file instead, and its clear errors (and bomb limit) reach the status box.
    # The status box (beside the query on a wide screen, scrolled into view on a narrow one) shows Gradio's
    # busy indicator while the search runs.
    for event, api_name in ((button.click, "search"), (text.submit, None)):
        event(None, js=show_js("status"))
        event(run, inputs, outputs, preprocess=False, api_name=api_name)
    if model is not None:
        with examples_slot:
            media = {"image": image, "audio": audio, "imu": files["imu"]}
            ex = _examples_block(index, model, served, inputs, media)
        if ex is not None:
            ex.load_input_event.then(None, js=show_js("status")).then(run, inputs, outputs, preprocess=False)
    more = handlers.more_like_fn(index, served)
    more_button.click(None, js=show_js("status"))
    more_button.click(more, [more_pick, k, result_kinds, where, hits_state], outputs)
    for kind, g in galleries.items():
        g.select(handlers.select_fn(kind), [hits_state], [more_pick])
    texts.select(handlers.select_fn("text"), [hits_state], [more_pick])
    return result_kinds


def _example_kind(example: Any) -> tuple:
    """A picked example ("kind:id") sets the input kind and the preset that kind carries, in one answer."""
    if not isinstance(example, str) or ":" not in example:
        return gr.skip(), gr.skip()
    kind = example.partition(":")[0]
    return gr.Radio(value=kind), gr.Dropdown(value=PRESET_FOR[kind]) if kind in PRESET_FOR else gr.skip()


def _zero_shot_tab(index: Any, model: "BindModel", no_model_note: str) -> None:
    examples = _examples(index)
    kind0 = examples[0][1].partition(":")[0] if examples else "image"
    preset0 = PRESET_FOR.get(kind0, "colour")
    classes0, templates0 = _preset(preset0)
    gr.Markdown("Zero-shot classification: the input's embedding against each class's prompts (the mean of its "
                "templates' text embeddings); probabilities are the softmax of cosine × the text logit scale.")
    with gr.Row():
        with gr.Column(min_width=300):
            upload = gr.File(label="Input file (image, audio, video, depth, thermal or IMU)", type="filepath",
                             elem_id="zs-file")
            kind = gr.Radio(list(QUERY_KINDS), value=kind0, label="Input kind (set from the uploaded file, as "
                            "bindkit embed tells it; change it if it is wrong)", elem_id="zs-kind")
            kind_note = gr.Markdown("", elem_id="zs-kind-note")
            text = gr.Textbox(label="Input text (kind: text)", elem_id="zs-text")
            example = gr.Dropdown(examples, value=examples[0][1] if examples else None,
                                  label="…or an item of the index (used when nothing is uploaded)",
                                  elem_id="zs-example")
        with gr.Column(min_width=300):
            preset = gr.Dropdown(list(PRESETS), value=preset0, label="Preset (synthetic world attribute)",
                                 elem_id="zs-preset")
            classes = gr.Textbox(classes0, label="Class names (comma-separated)", elem_id="zs-classes")
            templates = gr.Textbox(templates0, label="Prompt templates, one per line ({} = class name)", lines=3,
                                   elem_id="zs-templates")
            button = gr.Button("Classify", variant="primary", elem_id="zs-run")
            # the answer beside the inputs on a wide screen (scrolled into view on a phone)
            status = gr.Markdown("Upload a file, type a text or pick an item, then press Classify.",
                                 elem_id="zs-status", min_height=48)
            chart = gr.BarPlot(x="class", y="probability", y_lim=[0, 1], label="Probabilities", elem_id="zs-chart",
                               height=260, sort="-y")
    preset.change(_preset, [preset], [classes, templates])
    # A new upload or example sets the kind (the user may change it back) and a preset that kind carries.
    upload.change(handlers.upload_kind_fn(PRESET_FOR), [upload], [kind, kind_note, preset], preprocess=False)
    example.change(_example_kind, [example], [kind, preset])
    run = handlers.zero_shot_fn(index, model, no_model_note)
    button.click(None, js=show_js("zs-status"))
    button.click(run, [kind, text, upload, example, classes, templates], [chart, status], preprocess=False)


def _index_tab(index: Any, model: "BindModel", no_model_note: str, result_kinds: Any, roots: tuple[Path, ...]) -> None:
    stats_md = gr.Markdown(handlers.describe_index(index, model), elem_id="index-stats")
    model_md = (f"**Model**: `{model.card.name}` — {model.dim}-d space, encoders {', '.join(model.modalities)}"
                if model is not None else "**Model**: none loaded")
    gr.Markdown(model_md, elem_id="index-model")
    table = gr.Dataframe(handlers.stats_rows(index),
                         headers=["modality", "items", "index type", "search params", "measured recall@10"],
                         interactive=False, elem_id="index-table", label="Per modality")
    # Without --allow-dir the action is hidden and its endpoint refuses (a client can call it without the page).
    shown = bool(roots)
    gr.Markdown(handlers.ADD_DISABLED, elem_id="add-disabled", visible=not shown)
    where = ", ".join(str(r) for r in roots)
    with gr.Row(visible=shown):
        folder = gr.Textbox(label=f"Add a folder under {where}" if shown else "Add a folder",
                            elem_id="add-folder", placeholder=str(roots[0]) if shown else "", scale=4)
        button = gr.Button("Add folder", elem_id="add-button", scale=1)
    status = gr.Markdown("", elem_id="add-status")
    run = handlers.add_folder_fn(index, model, no_model_note, roots)
    button.click(run, [folder], [status, stats_md, table, result_kinds], api_name="add_folder")


def build_app(index: Any, model: "BindModel | None", *, note: str | None = None, title: str = "bindkit demo",
              allow_dirs: Sequence[str | os.PathLike] = ()) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (not launched: see :func:`launch`). ``model=None`` serves the stats and explains
    how to get weights (``note``, default: :func:`weights_hint` for the card the index was built with) instead of
    searching. ``allow_dirs``: the folders whose sub-folders the Index tab (and its API endpoint) may add; none:
    adding is off. Raises ValueError naming an ``allow_dirs`` entry that is not a folder."""
    roots = handlers.allowed_roots(allow_dirs)
    card = (index.stats().get("model") or {}).get("card", "?")
    no_model_note = note or f"No model weights are loaded, so the index cannot be searched. {weights_hint(card)}"
    served = handlers._Served()
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nOne embedding space for images, text, audio, video, depth, thermal and IMU.")
        gr.Markdown(model_banner(model, card), elem_id="model-banner")
        if model is None:
            gr.Markdown(f"⚠️ {no_model_note}", elem_id="weights-missing")
        with gr.Tabs():
            with gr.Tab("Search", id="search-tab"):
                result_kinds = _search_tab(index, model, served, no_model_note)
            with gr.Tab("Zero-shot", id="zero-shot-tab"):
                _zero_shot_tab(index, model, no_model_note)
            with gr.Tab("Index", id="index-tab"):
                _index_tab(index, model, no_model_note, result_kinds, roots)
    app.bindkit_served = served  # launch() lets Gradio's file route serve this folder (and nothing of the disk)
    return app


# ---- who may connect, and what the file route serves -------------------------------------------------------------
#: Environment variable with the login, USER:PASSWORD (unlike --auth, not shown to other users by `ps`).
AUTH_ENV = "BINDKIT_DEMO_AUTH"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the demo on this machine: a loopback address (127.0.0.0/8, ::1) or a name
    resolving to loopback addresses only (localhost). 0.0.0.0, ::, LAN addresses and names that resolve to one
    (or do not resolve) are not."""
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _credentials(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{where}: expected USER:PASSWORD (a user name, a colon, then a password)")
    if user != user.strip() or password != password.strip():
        raise ValueError(f"{where}: the user name or password starts or ends with a space, which the login form "
                         "would never match: remove it")
    return user, password


def load_auth(pairs: Sequence[str] = (), file: str | os.PathLike | None = None,
              env: str | None = None) -> list[tuple[str, str]]:
    """The logins the demo accepts, as Gradio's ``auth`` takes them: ``--auth USER:PASSWORD`` values, the lines
    of ``--auth-file`` (USER:PASSWORD per line; blank lines and lines starting with # ignored) and
    ``$BINDKIT_DEMO_AUTH`` (``env``: USER:PASSWORD). Raises ValueError naming the entry (never its password) that
    cannot be read."""
    out = [_credentials(v, "--auth") for v in pairs]
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--auth-file {file}: cannot read it ({exc.__class__.__name__}: "
                             f"{getattr(exc, 'strerror', None) or exc}); give a text file of USER:PASSWORD lines")
        found = [_credentials(line, f"--auth-file {file} line {n}") for n, line in enumerate(lines, 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise ValueError(f"--auth-file {file}: no USER:PASSWORD line in it")
        out += found
    if env:
        out.append(_credentials(env, f"${AUTH_ENV}"))
    return out


def exposure_check(host: str, port: int, auth: Sequence[tuple[str, str]], insecure: bool,
                   roots: Sequence[Path] = ()) -> str | None:
    """None when binding ``host`` is safe as configured (loopback, or a login), else the warning to print for
    ``--insecure``. Raises PermissionError, saying how to go on, for a non-loopback host without either."""
    if auth or is_loopback(host):
        return None
    can = ["search the index", "download its media"]
    if roots:
        can.append(f"add folders under {', '.join(map(str, roots))}")
    reach = f"anyone who can reach {host}:{port} could {', '.join(can[:-1])} and {can[-1]}"
    if not insecure:
        raise PermissionError(
            f"--host {host} makes the demo reachable from other machines, and no login is set: {reach}. Add a "
            f"login (--auth-file FILE with USER:PASSWORD lines, ${AUTH_ENV}=USER:PASSWORD, or --auth USER:PASSWORD), "
            "pass --insecure to serve it without one, or drop --host (127.0.0.1: this machine only).")
    return f"warning: --insecure: the demo has no login on {host}:{port}; {reach}."


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860,
           auth: Sequence[tuple[str, str]] | None = None, block: bool = True, quiet: bool = False) -> None:
    """Serve ``app`` (from :func:`build_app`): no share link, no MCP server, no monitoring page; a login page when
    ``auth`` is given. Gradio's file route serves its own upload/cache folder and, as ``allowed_paths``, the
    demo's folder of result copies only (``$GRADIO_ALLOWED_PATHS`` is overridden): never the media folders.
    ``block=False`` returns once the server answers (tests; ``app.close()`` stops it)."""
    message = ("bindkit demo: log in with a user name and password given to the demo at start (--auth-file, "
               f"${AUTH_ENV} or --auth).")
    app.launch(server_name=host, server_port=port, share=False, show_error=False,
               auth=list(auth) if auth else None, auth_message=message,
               allowed_paths=[str(app.bindkit_served.root)], mcp_server=False, enable_monitoring=False,
               prevent_thread_lock=not block, quiet=quiet)


# ---- loading --------------------------------------------------------------------------------------------------
def _device(args: argparse.Namespace) -> str:
    return getattr(args, "device", None) or str(bindkit.auto_device())


def _toy_card() -> str | None:
    """The card name of the committed model directory (weights/bindkit_toy), None when it is absent."""
    try:
        return json.loads((gallery.TOY_MODEL / "card.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def _load_index(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(index, model or None, note) for --index: the model the index was built with unless --model/--weights
    say otherwise; no weights -> model None and a note saying how to get them. A --model other than the index's
    is refused (IndexStoreError naming both) before any weights are looked for."""
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
    if not args.model and weights is None and _toy_card() == card:
        card = str(gallery.TOY_MODEL)  # an index built with the committed model directory
    try:
        model = bindkit.load_model(card, weights=weights, device=_device(args), download=False)
    except bindkit.CardError:  # a model directory's card (bindkit train --out DIR) that was not given
        msg = (f"The index was built with model **{card}**, which is not an installed card: restart with "
               f"`--model DIR`, the model directory it was built with (as written by `bindkit train`).")
        print(f"warning: {msg}".replace("**", "").replace("`", ""), file=sys.stderr)
        return bindkit.Index.open(args.index), None, msg
    except bindkit.WeightsNotFoundError as exc:
        msg = (f"No weights found for model card **{card}**{' ' + note if note else ''}, so the index cannot be "
               f"searched. {weights_hint(card)} ({exc})")
        print(f"warning: {msg}".replace("**", ""), file=sys.stderr)
        return bindkit.Index.open(args.index), None, msg
    return bindkit.Index.open(args.index, model=model), model, None


def _load(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(index, model or None, note). With --index: that index (see :func:`_load_index`). Without: the model
    (--model [--weights], else weights/bindkit_toy, else imagebind_huge) over the built-in gallery; no model
    -> WeightsNotFoundError saying how to get one."""
    if getattr(args, "index", None):
        return _load_index(args)
    if args.model:  # no weights: load_model's error says where it looked and how to fetch them
        model = bindkit.load_model(args.model, weights=args.weights, device=_device(args), download=False)
    else:
        model = gallery.default_model(_device(args))
    index = gallery.gallery_index(model, n=getattr(args, "gallery_size", 60))
    return index, model, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="The bindkit demo: search, zero-shot and index tabs in the browser (Gradio; this machine "
                    "only unless --host says otherwise).",
        epilog="examples:\n  python demos/app.py                       # weights/bindkit_toy over a generated "
               "gallery\n  python demos/app.py --index my_index --port 7861\n"
               "  python demos/app.py --allow-dir ~/media       # the Index tab may add folders under ~/media\n"
               f"  {AUTH_ENV}=ann:secret python demos/app.py --host 0.0.0.0   # on the network, with a login",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", metavar="DIR", help="index folder (bindkit index build ... --out DIR); default: a "
                   "generated gallery of every modality, indexed with the model (cached)")
    p.add_argument("--model", metavar="CARD|DIR", help="model card or directory (default: the index's model; "
                   "without --index: weights/bindkit_toy, else imagebind_huge when its weights are here)")
    p.add_argument("--weights", metavar="PATH", help="weights (default: as recorded in the index, else local cache)")
    p.add_argument("--gallery-size", type=int, default=60, metavar="N",
                   help="scenes in the generated gallery when no --index is given (default 60)")
    p.add_argument("--device", metavar="DEV", help="torch device (default: $BINDKIT_DEVICE, else cuda if "
                   "available, else cpu)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only); "
                   "another (0.0.0.0, a LAN address) needs a login (--auth-file, $%s, --auth) or --insecure" % AUTH_ENV)
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--allow-dir", action="append", default=[], metavar="DIR",
                   help="let the Index tab add folders under DIR (repeatable; symlinks leading outside are not "
                   "followed). Default: none, adding is off. Its files become searchable and downloadable by "
                   "whoever uses the demo")
    p.add_argument("--auth-file", metavar="FILE", help="a login page: FILE holds USER:PASSWORD lines")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                   help="a login (repeatable); visible to other users of this machine in `ps`: prefer "
                   f"--auth-file or ${AUTH_ENV}=USER:PASSWORD")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a login (a "
                   "warning is printed): anyone who reaches the port can use the demo")
    args = p.parse_args(argv)
    if args.gallery_size < 1:
        p.error("--gallery-size must be at least 1")
    try:  # before anything slow: a refusal comes at once
        roots = handlers.allowed_roots(args.allow_dir)
        auth = load_auth(args.auth, args.auth_file, os.environ.get(AUTH_ENV))
        warning = exposure_check(args.host, args.port, auth, args.insecure, roots)
    except (ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(warning, file=sys.stderr)
    if os.environ.get("GRADIO_ALLOWED_PATHS"):
        print("note: $GRADIO_ALLOWED_PATHS is ignored: the demo serves copies of its hits only (--allow-dir lets "
              "it index folders)", file=sys.stderr)
    try:
        index, model, note = _load(args)
    except bindkit.BindkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app = build_app(index, model, note=note, allow_dirs=roots)
    launch(app, host=args.host, port=args.port, auth=auth)
    index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
