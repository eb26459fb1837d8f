"""The Gradio demo (demos/app.py), driven in a real browser (Debian's chromium through Playwright) against a real
HTTP server over the demo's own generated gallery (every modality), embedded with weights/bindkit_toy when it
is there, else with a tiny model trained here in seconds (no ../shared needed). Screenshots go to
$BINDKIT_ARTIFACTS/demo_ui (default tests/artifacts/demo_ui, git-ignored)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("BINDKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("BINDKIT_ARTIFACTS") or REPO / "tests" / "artifacts") / "demo_ui"
# Gradio's own deprecation noise (pandas) is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio")
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
K = 2  # hits per modality in the browser tests
WIDE = {"width": 1400, "height": 1000}  # a laptop
NARROW = {"width": 390, "height": 844}  # a phone
#: Bound on every wait for a state of the page: generous, for loaded CI machines (a bound, not a measurement).
WAIT_MS = 90_000


def _need(ok: bool, why: str) -> None:
    if not ok:
        (pytest.fail if UNDER_CI else pytest.skip)(f"{why}; tests/setup.sh installs it")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
for _mod in ("gradio", "playwright"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"{_mod} is not installed (pip install -e '.[test]')", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402  (after the skip above)

# expect() has its own bound (5 s by default, not the page's): many of its states come from the server (a kind
# read from an upload, a preset that follows it), which a loaded machine may take longer than that to answer.
expect.set_options(timeout=WAIT_MS)


def _shot(pg, name: str, full_page: bool = True) -> Path:
    """A screenshot (the whole page, or what the viewport shows), once every picture on the page has loaded
    (galleries load lazily: for a full page, scroll each in)."""
    for g in pg.locator("[id$=-results]:visible").all() if full_page else []:
        g.scroll_into_view_if_needed()
    pg.wait_for_function("() => Array.from(document.images).filter(i => i.checkVisibility())"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="module")
def demo():
    """The demo app (bindkit.ui.app; demos/app.py is its launcher)."""
    from bindkit.ui import app

    return app


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """weights/bindkit_toy when committed, else a throwaway model of a tiny bindkit_small-like card trained on
    the synthetic world for 3 steps (all six encoders; seconds on a CPU). Only the plumbing is under test."""
    import bindkit

    toy = REPO / "weights" / "bindkit_toy"
    if (toy / "card.json").is_file():
        return toy
    from bindkit.datasets import synthetic

    sys.path.insert(0, str(Path(__file__).parent))
    from train_helpers import tiny_card

    root = tmp_path_factory.mktemp("demo-model")
    card = json.loads(tiny_card(root / "card.json").read_text())
    card["name"] = "demo_tiny"
    (root / "card.json").write_text(json.dumps(card))
    world = synthetic.generate(root / "world", n=24, splits={"train": 24}, show_progress=False)
    bindkit.train(world["manifests"], root / "demo_tiny", card=str(root / "card.json"), max_steps=3,
                  batch_size=8, val_split=0, progress=False, device="cpu", log=lambda _msg: None)
    return root / "demo_tiny"


@pytest.fixture(scope="session")
def demo_model(demo_model_dir):
    import bindkit

    return bindkit.load_model(str(demo_model_dir))


@pytest.fixture(scope="module")
def demo_index(demo, demo_model, tmp_path_factory):
    """The demo's generated gallery (12 scenes, 4 videos), built by the same code the app runs without --index."""
    index = demo.gallery.gallery_index(demo_model, n=12, n_videos=4, root=tmp_path_factory.mktemp("gallery"),
                                       log=lambda _msg: None)
    yield index
    index.close()


@pytest.fixture(scope="module")
def media(demo_index):
    """{kind: [stored file paths]} of the gallery."""
    out = {}
    for kind in demo_index.modalities:
        ids, _ = demo_index.vectors(kind)
        out[kind] = sorted(h.uri for h in demo_index.get(ids.tolist()) if h.uri)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def allowed_root(tmp_path_factory) -> Path:
    """The folder the demo under test may add folders from (--allow-dir)."""
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def served_app(demo, demo_index, demo_model, allowed_root):
    """(app, URL): the demo launched as `python demos/app.py --allow-dir ROOT` launches it (demo.launch)."""
    app = demo.build_app(demo_index, demo_model, allow_dirs=[allowed_root])
    port = _free_port()
    demo.launch(app, host="127.0.0.1", port=port, block=False, quiet=True)
    yield app, f"http://127.0.0.1:{port}"
    app.close()


@pytest.fixture(scope="module")
def server(served_app) -> str:
    return served_app[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _need(os.path.isfile(CHROMIUM), f"{CHROMIUM} (Debian's chromium) is absent")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                   executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                   viewport=WIDE)
        yield ctx
        ctx.close()


@pytest.fixture()
def page(browser, server):
    """A fresh page on the demo; fails the test if the page asked for anything beyond the local server."""
    pg = browser.new_page()
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url)
          if not r.url.startswith((server, "data:", f"blob:{server}")) else None)
    pg.set_default_timeout(WAIT_MS)
    pg.goto(server)
    pg.locator("#search").wait_for()
    yield pg
    pg.close()
    assert not outside, f"the demo page contacted other hosts: {outside}"


# ---- page helpers ---------------------------------------------------------------------------------------------
def _search(pg, text: str = "", k: int | None = None, where: str = "", expect: str = "hits") -> str:
    if k is not None:
        box = pg.locator("#k input[type=number]")
        box.fill(str(k))
        box.press("Enter")
    pg.locator("#query-text textarea").fill(text)
    if where:
        pg.locator("#where textarea").fill(where)
    pg.locator("#search").click()
    status = pg.locator("#status")
    status.get_by_text(expect).wait_for()
    return status.inner_text()


def _gallery(pg, kind: str = "image") -> list[str]:
    """Captions of a result gallery, best first ("1. 000003.png · +0.123")."""
    return pg.locator(f"#{kind}-results .caption-label").all_inner_texts()


def _players(pg) -> list[str]:
    """Labels of the visible audio players."""
    return [t.strip() for t in pg.locator("#audio-results .audio-hit [data-testid=block-label]").all_inner_texts()]


def _rows(pg, elem: str) -> list[list[str]]:
    """Cells of a result table, row by row (Gradio's Dataframe renders rows as role=row divs)."""
    return pg.locator(f"#{elem} .virtual-row").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))")


def _names(captions: list[str]) -> list[str]:
    return [c.split(" · ")[0].split(". ", 1)[1] for c in captions]


def _upload(pg, elem: str, path: Path | str) -> None:
    """Upload ``path`` into component ``elem`` and wait until the upload has finished: the component then links
    or shows the server's copy (its name shows earlier, in the progress bar, while the bytes are still in flight;
    a search sent then would not have the file)."""
    pg.locator(f"#{elem} input[type=file]").first.set_input_files(str(path))
    name = Path(path).name
    pg.locator(f"#{elem}").locator(f"[href*='/gradio_api/file='][href*='{name}'], "
                                   f"[src*='/gradio_api/file='][src*='{name}']").first.wait_for()


def _check_results(pg, expected: dict, kinds: tuple[str, ...] = ("image", "video", "depth", "thermal", "imu")) -> None:
    """Every gallery shows the hits the public API ranks, as media the browser really fetched."""
    for kind in kinds:
        captions = _gallery(pg, kind)
        assert _names(captions) == [Path(h.uri).name for h in expected[kind]], kind
        assert all(" · " in c and c.rsplit(" ", 1)[1][0] in "+-" for c in captions), captions  # scores shown
    srcs = pg.locator("#image-results img").evaluate_all("els => els.map(e => e.src)")
    assert [s.rsplit("/", 1)[1] for s in srcs] == _names(_gallery(pg, "image"))
    videos = pg.locator("#video-results video")
    assert videos.count() == len(expected["video"])  # video hits are players, not stills
    for kind in ("depth", "thermal", "imu"):  # rendered views (colour maps, plots), not the raw files
        srcs = pg.locator(f"#{kind}-results img").evaluate_all("els => els.map(e => e.src)")
        assert srcs and all(s.endswith(".png") for s in srcs), (kind, srcs)
    assert _names(_players(pg)) == [Path(h.uri).name for h in expected["audio"]]


# ---- the Must-show: text, image upload and IMU upload queries, zero-shot chart --------------------------------
def test_text_search_shows_hits_per_modality(page, demo_index):
    status = _search(page, "a large red circle", k=K)
    assert status.startswith("Query: text")
    expected = demo_index.search(text="a large red circle", k=K)  # what the public API ranks; the UI must agree
    _check_results(page, expected)
    rows = _rows(page, "text-results")
    assert [r[1] for r in rows] == [h.text for h in expected["text"]]
    assert _rows(page, "other-results") == []
    _shot(page, "search-text")


def test_image_upload_finds_itself_and_every_kind(page, demo_index, media):
    query = media["image"][3]
    _upload(page, "query-image", query)
    _search(page, "", k=K)
    expected = demo_index.search(image=query, k=K)
    _check_results(page, expected)
    top = _gallery(page, "image")[0]
    assert _names([top]) == [Path(query).name] and "+1.000" in top  # the image finds itself (cosine 1)
    _shot(page, "search-image-upload")


def test_imu_upload_shows_plots_and_other_kinds(page, demo_index, media):
    query = media["imu"][5]
    _upload(page, "query-imu", query)
    status = _search(page, "", k=K)
    assert status.startswith("Query: imu")
    expected = demo_index.search(imu=query, k=K)
    _check_results(page, expected)
    top = _gallery(page, "imu")[0]
    assert _names([top]) == [Path(query).name] and "+1.000" in top
    _shot(page, "search-imu-upload")


def test_zero_shot_tab_shows_a_chart(page, demo, demo_index, demo_model, media):
    page.get_by_role("tab", name="Zero-shot").click()
    query = media["image"][0]
    _upload(page, "zs-file", query)
    page.locator("#zs-kind-note").get_by_text("read as image").wait_for()
    expect(page.locator("#zs-preset input")).to_have_value("colour")  # the preset offered for images
    expect(page.locator("#zs-classes textarea")).to_have_value(re.compile("purple"))
    page.locator("#zs-run").click()
    page.locator("#zs-status").get_by_text("→").wait_for()
    chart = page.locator("#zs-chart")
    chart.locator("canvas, svg").first.wait_for()
    from bindkit.datasets import synthetic

    result = demo.views.zero_shot(demo_model, "image", query, synthetic.classes("colour"),
                                  synthetic.templates("colour"))
    best = max(result["probs"], key=result["probs"].get)
    assert f"→ {best} (" in page.locator("#zs-status").inner_text()
    _shot(page, "zero-shot")


# ---- the first screen: what the model knows, examples, layout on a laptop and a phone -----------------------------
#: Every upload box of the app (search tab; the zero-shot tab's is checked on that tab).
UPLOADS = ("query-image", "query-audio", "query-video", "query-depth", "query-thermal", "query-imu")
#: Descendants of ``root`` cut off by ``root`` or by an ancestor inside it that clips (overflow not visible),
#: and whether ``root`` itself sticks out of the viewport sideways.
_CLIPPED_JS = """root => {
  const R = root.getBoundingClientRect(), out = [];
  if (R.left < -1 || R.right > window.innerWidth + 1) out.push(`the box [${R.left}, ${R.right}] leaves the viewport`);
  for (const el of root.querySelectorAll('svg, button, img, video, span, p, label, a')) {
    const r = el.getBoundingClientRect(), st = getComputedStyle(el);
    if (!r.width || !r.height || st.visibility === 'hidden' || !el.checkVisibility()) continue;
    const boxes = [R];
    for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') boxes.push(a.getBoundingClientRect());
    }
    if (boxes.some(b => r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1))
      out.push(`${el.tagName.toLowerCase()}.${el.className.baseVal ?? el.className} "${(el.innerText || '').trim().slice(0, 30)}"`);
  }
  return out;
}"""


def _not_clipped(pg, elems) -> None:
    for elem in elems:
        box = pg.locator(f"#{elem}")
        box.scroll_into_view_if_needed()
        assert box.evaluate(_CLIPPED_JS) == [], elem


@pytest.mark.parametrize("size", ["wide", "narrow"])
def test_first_screen_on_a_laptop_and_a_phone(browser, server, demo, demo_index, demo_model, size):
    page = browser.new_page()
    page.set_viewport_size(WIDE if size == "wide" else NARROW)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(server)
        page.locator("#search").wait_for()
        banner = page.locator("#model-banner").inner_text()
        assert demo_model.card.name in banner
        if demo_model.card.name == "bindkit_toy":  # what it knows, and what it does not
            assert "synthetic world only" in banner and "real photo" in banner and "nonsense" in banner
        _shot(page, f"first-screen-{size}", full_page=False)
        _not_clipped(page, UPLOADS)
        _shot(page, f"search-tab-{size}")
        # An example fills the query and searches; the status (with its busy indicator) is brought into view.
        examples = page.locator("#examples button")
        texts = demo.handlers.example_texts(demo_index, demo_model)
        assert examples.count() == len(texts) + 3  # texts that work, then a stored image, sound and IMU recording
        if demo_model.card.name == "bindkit_toy":
            assert len(texts) >= 3
        first = texts[0] if texts else None
        page.evaluate("window.scrollTo(0, 0)")
        examples.first.click()
        page.locator("#status").get_by_text("hits").wait_for()
        expect(page.locator("#query-text textarea")).to_have_value(first or "")
        expect(page.locator("#status")).to_be_in_viewport()
        if first:
            expected = demo_index.search(text=first, k=5)
            assert _names(_gallery(page, "image")) == [Path(h.uri).name for h in expected["image"]]
        _shot(page, f"example-search-{size}", full_page=False)
        examples.last.click()  # a stored IMU recording: it finds itself
        page.locator("#status").get_by_text("Query: imu").wait_for()
        expect(page.locator("#query-text textarea")).to_have_value("")  # the example cleared the text
        assert "+1.000" in _gallery(page, "imu")[0]
        page.get_by_role("tab", name="Zero-shot").click()
        _not_clipped(page, ["zs-file"])
        page.locator("#zs-run").click()  # the first item of the index, by default
        page.locator("#zs-status").get_by_text("→").wait_for()
        expect(page.locator("#zs-status")).to_be_in_viewport()
        page.locator("#zs-chart").locator("canvas, svg").first.wait_for()
        _shot(page, f"zero-shot-tab-{size}")
    finally:
        page.close()


def test_search_shows_a_busy_indicator_where_the_user_looks(browser, server):
    """On a phone the results come after every query input: pressing Search scrolls the status into view, and
    the status shows Gradio's busy indicator until the hits arrive (seen by a DOM observer, not by timing)."""
    page = browser.new_page()
    page.set_viewport_size(NARROW)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(server)
        page.locator("#search").wait_for()
        expect(page.locator("#status")).not_to_be_in_viewport()
        page.evaluate("""() => { window.__busy = false;
          const tracker = document.querySelector('#status [data-testid=status-tracker]');
          new MutationObserver(() => { if (!tracker.classList.contains('hide')) window.__busy = true; })
            .observe(tracker, {attributes: true, attributeFilter: ['class']}); }""")
        page.locator("#query-text textarea").fill("a hot star")
        page.locator("#search").click()
        page.locator("#status").get_by_text("hits").wait_for()
        assert page.evaluate("window.__busy")
        expect(page.locator("#status")).to_be_in_viewport()
        expect(page.locator("#status [data-testid=status-tracker]")).to_have_class(re.compile(r"\bhide\b"))
    finally:
        page.close()


def test_zero_shot_tab_reads_the_kind_from_the_file(page, media):
    """The input kind follows the uploaded file, as `bindkit embed` tells it (and a 16-bit PNG is depth)."""
    page.get_by_role("tab", name="Zero-shot").click()
    for n, kind in enumerate(("depth", "audio", "image", "imu")):
        if n:  # one file at a time: remove the last one
            page.locator("#zs-file button[aria-label=Clear]").click()
        _upload(page, "zs-file", media[kind][1])
        expect(page.locator("#zs-kind input:checked")).to_have_value(kind)
        assert Path(media[kind][1]).name in page.locator("#zs-kind-note").inner_text()
    expect(page.locator("#zs-preset input")).to_have_value("motion")  # what IMU carries
    expect(page.locator("#zs-classes textarea")).to_have_value(re.compile("bouncing"))
    page.locator("#zs-run").click()
    page.locator("#zs-status").get_by_text("→").wait_for()
    assert page.locator("#zs-status").inner_text().startswith("imu ")


# ---- more interactions ---------------------------------------------------------------------------------------
def test_weights_compose_inputs(page, demo_index, media):
    _upload(page, "query-image", media["image"][1])
    page.locator("#weight-text input[type=number]").fill("0.5")
    page.locator("#weight-text input[type=number]").press("Enter")
    status = _search(page, "a small blue square", k=K)
    assert "0.5×text + image" in status
    expected = demo_index.search(text="a small blue square", image=media["image"][1],
                                 weights={"text": 0.5, "image": 1.0}, k=K)
    assert _names(_gallery(page, "image")) == [Path(h.uri).name for h in expected["image"]]


def test_more_like_this(page, demo_index):
    _search(page, "a hot star", k=K)
    second = _names(_gallery(page, "image"))[1]
    page.locator("#image-results .thumbnail-item, #image-results button.thumbnail-item").nth(1).click()
    # The click picks the hit through the server; pressing "More like this" before that has answered would
    # search with the previous pick (the first hit), so wait for the pick to show.
    expect(page.locator("#more-pick input")).to_have_value(re.compile(rf"^image 2\. {re.escape(second)} "))
    page.locator("#more-like").click()
    status = page.locator("#status")
    status.get_by_text("More like image").wait_for()
    assert second in status.inner_text()
    top = _gallery(page, "image")[0]
    assert _names([top]) == [second] and "+1.000" in top  # its own stored vector finds it first


def test_index_tab_shows_stats_and_adds_a_folder(page, demo_index, media, allowed_root):
    page.get_by_role("tab", name="Index").click()
    stats = page.locator("#index-stats").inner_text()
    assert f"{len(demo_index)}" in stats and demo_index.stats()["model"]["card"] in stats
    rows = _rows(page, "index-table")
    assert {r[0] for r in rows} == set(demo_index.modalities) and all(r[4] == "1.000" for r in rows)
    expect(page.locator("#add-disabled")).to_be_hidden()
    assert str(allowed_root) in page.locator("#add-folder label").inner_text()  # says where folders may come from
    folder = allowed_root / "new" / "thermal"  # the folder's name tells the kind of its PNGs
    folder.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("L", (32, 32), 40 + 60 * i).save(folder / f"extra{i}.png")
    before = demo_index.stats()["modalities"]["thermal"]["count"]
    page.locator("#add-folder textarea").fill(str(allowed_root / "new"))
    page.locator("#add-button").click()
    page.locator("#add-status").get_by_text("Added 3 of 3").wait_for()
    assert demo_index.stats()["modalities"]["thermal"]["count"] == before + 3
    page.locator("#index-table").get_by_text(str(before + 3)).first.wait_for()
    _shot(page, "index-tab")


# ---- hardening: clear messages, never a stack trace --------------------------------------------------------------
def test_empty_query_is_a_message_not_a_crash(page):
    status = _search(page, "   ", expect="Empty query")
    assert "Empty query" in status
    assert _gallery(page) == [] and _players(page) == []
    assert "hits" in _search(page, "a car", k=1)  # the app still answers after the error
    assert len(_gallery(page)) == 1


def test_filter_and_result_modalities(page, demo_index):
    for kind in demo_index.modalities:  # keep only "image"
        if kind != "image":
            page.locator("#result-kinds label", has_text=kind).first.click()
    colour = demo_index.get(demo_index.vectors("image")[0][:1].tolist())[0].metadata["colour"]
    _search(page, "a shape", k=5, where=f"colour={colour}")
    expected = demo_index.search(text="a shape", k=5, modalities=["image"], where={"colour": colour})
    assert _names(_gallery(page)) == [Path(h.uri).name for h in expected["image"]] != []
    assert _players(page) == [] and _gallery(page, "depth") == [] and _rows(page, "text-results") == []


def test_bad_video_upload_is_reported(page, tmp_path):
    bad = tmp_path / "broken.webm"
    bad.write_bytes(b"this is not a video")
    _upload(page, "query-video", bad)
    status = _search(page, "a dog", expect="broken.webm")
    assert "⚠️" in status and "video" in status


def _unreadable_image(kind: str, media: dict, tmp_path: Path) -> tuple[Path, str]:
    """(file, words the status must show) for an image query the demo cannot use."""
    from PIL import Image

    if kind == "wav_renamed":
        path = tmp_path / "sound.png"
        path.write_bytes(Path(media["audio"][0]).read_bytes())
        return path, "not a readable image"
    if kind == "truncated_jpeg":  # greyscale: Gradio's own preprocessing would decode it to convert it to RGB
        path = tmp_path / "cut.jpg"
        Image.open(media["image"][0]).convert("L").resize((256, 256)).save(path, quality=90)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "truncated"
    path = tmp_path / "bomb.png"  # 10000 x 10000 1-bit: 12 kB on disk, 300 MB once decoded as RGB
    Image.new("1", (10_000, 10_000)).save(path)
    return path, "decompression bomb"


@pytest.mark.parametrize("kind", ["wav_renamed", "truncated_jpeg", "decompression_bomb"])
def test_unreadable_image_query_gets_a_clear_message(page, media, tmp_path, kind):
    path, words = _unreadable_image(kind, media, tmp_path)
    _upload(page, "query-image", path)
    status = _search(page, "a dog", expect=path.name)  # waits until the status names the upload
    assert status.startswith("⚠️") and words in status and "image" in status, status
    assert "/tmp" not in status and str(path.parent) not in status  # the name, not the server's temp path
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert path.name in toast.inner_text()
    assert page.get_by_text("Error", exact=True).count() == 0  # no bare error badge anywhere
    page.goto(page.url)  # the app still answers
    assert "hits" in _search(page, "a car", k=1)


# ---- what a client can reach: folders under --allow-dir only; the file route serves copies of hits only -----------
@pytest.fixture(scope="module")
def locked(demo, demo_model, tmp_path_factory):
    """A second demo over a small index of its own (so that the gallery tests see no change): --allow-dir ROOT
    with a folder of the user's and traps inside ROOT (symlinks leading to a folder OUTSIDE), and
    $GRADIO_ALLOWED_PATHS naming OUTSIDE (which the demo must not honour). Yields a namespace (url, app, index,
    root, outside)."""
    import bindkit
    from PIL import Image

    base = tmp_path_factory.mktemp("locked")
    outside = base / "outside"  # what no client may read: a text file and a photo
    outside.mkdir()
    (outside / "secret.txt").write_text("the launch codes are 0000")
    Image.new("RGB", (48, 48), (200, 30, 30)).save(outside / "private.png")
    root = base / "root"
    (root / "mine").mkdir(parents=True)
    (root / "mine" / "note.txt").write_text("a note of mine")
    (root / "mine" / "leak.txt").symlink_to(outside / "secret.txt")  # a file leading outside
    (root / "mine" / "leak.png").symlink_to(outside / "private.png")
    (root / "escape").symlink_to(outside, target_is_directory=True)  # a folder leading outside
    index = bindkit.Index.create(base / "index", model=demo_model)
    index.add(["a red circle", "a blue square"], modality="text")
    old = os.environ.get("GRADIO_ALLOWED_PATHS")
    os.environ["GRADIO_ALLOWED_PATHS"] = str(outside)
    app = demo.build_app(index, demo_model, allow_dirs=[root])
    port = _free_port()
    try:
        demo.launch(app, host="127.0.0.1", port=port, block=False, quiet=True)
    finally:
        os.environ.pop("GRADIO_ALLOWED_PATHS") if old is None else os.environ.update(GRADIO_ALLOWED_PATHS=old)
    yield argparse.Namespace(url=f"http://127.0.0.1:{port}", app=app, index=index, root=root, outside=outside)
    app.close()
    index.close()


def _add_folder(url: str, folder: str, auth: tuple[str, str] | None = None) -> str:
    """The status of the Add folder action called through Gradio's API, as any client can without the page."""
    from gradio_client import Client

    return Client(url, auth=auth, verbose=False).predict(folder, api_name="/add_folder")[0]


def _add_folder_raw(url: str, folder: str) -> str:
    """The same through a raw POST to Gradio's REST endpoint (no client library): its final data."""
    import httpx

    with httpx.Client(base_url=url, timeout=WAIT_MS / 1000) as http:
        r = http.post("/gradio_api/call/add_folder", json={"data": [folder]})
        r.raise_for_status()
        stream = http.get(f"/gradio_api/call/add_folder/{r.json()['event_id']}").text
    event, data = [line for line in stream.splitlines() if line.startswith(("event:", "data:"))][-2:]
    assert event == "event: complete", stream
    return json.loads(data[len("data:"):])[0]


def test_add_folder_through_the_api_stays_under_the_allowed_roots(locked):
    """A client naming /etc, a folder outside the roots, a `..` way out or a symlink leading out gets a refusal
    and nothing is indexed; inside a root, files that are symlinks leading out are left out."""
    before = len(locked.index)
    out = str(locked.outside)
    for folder in ("/etc", "/", out, f"{locked.root}/../outside", str(locked.root / "escape"), "escape",
                   "../outside", "~"):
        status = _add_folder(locked.url, folder)
        assert status.startswith("⚠️") and "outside the folders" in status and "--allow-dir" in status, (folder,
                                                                                                       status)
        assert out not in status.replace(f"'{out}'", "")  # the refusal names what was asked, nothing it found
    status = _add_folder_raw(locked.url, "/etc")
    assert status.startswith("⚠️") and "outside the folders" in status
    assert len(locked.index) == before
    status = _add_folder(locked.url, "mine")  # relative: under the (first) root
    assert "Added 1 of 1" in status and "2 file(s) left out" in status, status
    assert len(locked.index) == before + 1
    stored = [h.text for h in locked.index.search(text="launch codes", k=10, modalities=["text"])["text"]]
    assert "a note of mine" in stored and not any("launch" in t for t in stored)
    assert "image" not in locked.index.modalities  # the photo behind leak.png was not indexed


def test_file_route_serves_copies_of_hits_and_nothing_of_the_disk(locked):
    """/gradio_api/file= refuses /etc/passwd, files under the allowed root (added or not), a symlink leading out
    of a served folder, and the folder $GRADIO_ALLOWED_PATHS named; a hit's copy is served."""
    import httpx

    served = locked.app.bindkit_served
    (served.root / "passwd.png").symlink_to("/etc/passwd")
    (served.root / "private.png").symlink_to(locked.outside / "private.png")
    refused = ["/etc/passwd", str(locked.outside / "private.png"), str(locked.root / "mine" / "note.txt"),
               str(locked.root / "mine" / "leak.png"), str(served.root / "passwd.png"),
               str(served.root / "private.png"), f"{served.root}/../../etc/passwd"]
    with httpx.Client(base_url=locked.url, timeout=WAIT_MS / 1000) as http:
        for path in refused:
            r = http.get(f"/gradio_api/file={path}")
            assert r.status_code == 403 and b"root:" not in r.content, (path, r.status_code)
        hit = argparse.Namespace(id=1, uri=str(REPO / "docs" / "demo.md"))  # any indexed file: its copy
        assert http.get(f"/gradio_api/file={served(hit)}").status_code == 200


def test_search_through_the_api_reads_uploads_only(locked):
    """A client naming a server file as a query (a plain path, or an upload's payload pointing outside Gradio's
    upload folder) gets an error, never hits: the handler reads uploads only."""
    import httpx

    secret = locked.outside / "motion.csv"  # a file the IMU loader could read
    secret.write_text("t,ax,ay,az,gx,gy,gz\n" + "\n".join(f"{i},1,2,3,4,5,6" for i in range(50)))

    def search(text: str, imu: object) -> str:
        with httpx.Client(base_url=locked.url, timeout=WAIT_MS / 1000) as http:
            data = [text, None, None, None, None, None, imu, *[1.0] * 7, 3, ["text"], ""]
            r = http.post("/gradio_api/call/search", json={"data": data})
            r.raise_for_status()
            return http.get(f"/gradio_api/call/search/{r.json()['event_id']}").text

    assert "event: complete" in search("a red circle", None) and "hits" in search("a red circle", None)
    for value in (str(secret), {"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "/etc/passwd"):
        stream = search("", value)
        assert "event: error" in stream and "hits" not in stream, (value, stream)


def test_without_allow_dir_adding_folders_is_off(browser, demo, demo_model, locked):
    """No --allow-dir: the Index tab shows a note saying how to enable adding (no folder box), and the API refuses."""
    app = demo.build_app(locked.index, demo_model)
    port = _free_port()
    demo.launch(app, host="127.0.0.1", port=port, block=False, quiet=True)
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        url = f"http://127.0.0.1:{port}"
        before = len(locked.index)
        for folder in (str(locked.root / "mine"), "/etc"):
            status = _add_folder(url, folder)
            assert "Adding folders is off" in status and "--allow-dir DIR" in status, status
        assert len(locked.index) == before
        page.goto(url)
        page.get_by_role("tab", name="Index").click()
        expect(page.locator("#add-disabled")).to_contain_text("--allow-dir DIR")
        expect(page.locator("#add-folder")).to_be_hidden()
        expect(page.locator("#add-button")).to_be_hidden()
    finally:
        page.close()
        app.close()


def _app_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "demos" / "app.py"), *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BINDKIT_DEMO_AUTH"}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO), env.get("PYTHONPATH")])), **extra}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_a_non_loopback_host_needs_a_login_or_insecure(demo, host, tmp_path):
    """A real start: refused at once (exit 2) with a message saying how to go on; --insecure starts with a
    warning (here it then stops at the missing index, before binding anything)."""
    import subprocess

    missing = str(tmp_path / "none")  # were the refusal gone, the start would stop here (exit 1), binding nothing
    done = subprocess.run(_app_cmd("--host", host, "--port", "9", "--index", missing), capture_output=True, text=True,
                          env=_env(), timeout=WAIT_MS / 1000)
    assert done.returncode == 2, done
    err = done.stderr
    assert f"--host {host}" in err and "no login" in err and "Traceback" not in err, err
    assert "--auth-file" in err and "BINDKIT_DEMO_AUTH" in err and "--insecure" in err, err
    done = subprocess.run(_app_cmd("--host", host, "--port", "9", "--insecure", "--index", missing),
                          capture_output=True, text=True, env=_env(), timeout=WAIT_MS / 1000)
    assert done.returncode == 1 and "warning: --insecure" in done.stderr and "no login" in done.stderr, done
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert demo.is_loopback(loopback), loopback
    for other in ("0.0.0.0", "::", "10.1.2.3", "192.168.1.20", "[::]"):
        assert not demo.is_loopback(other), other
    assert demo.exposure_check("0.0.0.0", 80, [("ann", "pw")], insecure=False) is None  # a login: no warning


def test_bad_logins_and_allow_dirs_are_refused_at_start(tmp_path):
    import subprocess

    (tmp_path / "auth").write_text("# users\nann\n")
    cases = [(["--auth-file", str(tmp_path / "auth")], {}, "line 2: expected USER:PASSWORD"),
             (["--auth-file", str(tmp_path / "none")], {}, "cannot read it"),
             (["--auth", "ann: secret"], {}, "starts or ends with a space"),
             ([], {"BINDKIT_DEMO_AUTH": "ann"}, "$BINDKIT_DEMO_AUTH: expected USER:PASSWORD"),
             (["--allow-dir", str(tmp_path / "nope")], {}, f"--allow-dir {tmp_path / 'nope'}: not a folder")]
    for args, env, words in cases:
        done = subprocess.run(_app_cmd("--port", "9", "--index", str(tmp_path / "none"), *args), capture_output=True,
                              text=True, env=_env(**env),
                              timeout=WAIT_MS / 1000)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, (args, done)
        assert "secret" not in done.stderr  # a password is never echoed


def test_login_is_required_when_set(demo_model_dir, locked, tmp_path):
    """A real start with --auth-file and $BINDKIT_DEMO_AUTH: nothing (page config, API, files) without a login;
    a wrong password refused; both logins work, through the login form and through gradio_client."""
    import subprocess
    import threading

    import httpx

    (tmp_path / "logins").write_text("# who may use the demo\nann:correct horse\n")
    port = _free_port()
    proc = subprocess.Popen(_app_cmd("--index", str(locked.index.path), "--model", str(demo_model_dir), "--port",
                                     str(port), "--auth-file", str(tmp_path / "logins")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(BINDKIT_DEMO_AUTH="bob:battery staple"))
    bound = threading.Timer(WAIT_MS / 1000, proc.kill)  # a bound on the start, not a wait
    bound.start()
    seen = []
    try:
        for line in proc.stdout:  # until the server says it is up (or the process ends)
            seen.append(line)
            if "Running on" in line:
                break
        bound.cancel()
        assert proc.poll() is None, "".join(seen)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=WAIT_MS / 1000) as http:
            assert http.get("/config").status_code == 401
            assert http.post("/gradio_api/call/add_folder", json={"data": ["/etc"]}).status_code == 401
            assert http.get("/gradio_api/file=/etc/passwd").status_code == 401
            assert http.post("/login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert http.get("/config").status_code == 401
            assert http.post("/login", data={"username": "ann", "password": "correct horse"}).status_code == 200
            assert http.get("/config").status_code == 200
        status = _add_folder(url, "/etc", auth=("bob", "battery staple"))  # a logged-in client, no --allow-dir
        assert "Adding folders is off" in status
    finally:
        bound.cancel()
        proc.terminate()
        proc.communicate(timeout=WAIT_MS / 1000)


# ---- no browser ------------------------------------------------------------------------------------------------
def test_parse_filter(demo):
    assert demo.parse_filter("  ") is None
    assert demo.parse_filter("split=test") == {"split": {"$eq": "test"}}
    assert demo.parse_filter("year>=2020, ok=true\nname='42'") == {
        "$and": [{"year": {"$gte": 2020}}, {"ok": {"$eq": True}}, {"name": {"$eq": "42"}}]}
    with pytest.raises(ValueError, match="nonsense"):
        demo.parse_filter("nonsense")


def test_views_render_every_kind(demo, media):
    import numpy as np

    for kind in ("depth", "thermal", "imu"):
        im = demo.views.RENDERERS[kind](media[kind][0])
        a = np.asarray(im)
        assert im.mode == "RGB" and min(im.size) >= 128 and a.std() > 5, kind  # a picture, not a blank
    lut = demo.views.colormap(np.linspace(0, 1, 5), "thermal")
    assert lut.shape == (5, 3) and lut[0].sum() < lut[-1].sum()  # hot is bright


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, tiny_model, demo_model, demo_index, media):
    """An index built with the imagebind_tiny card (committed fixture weights), which has no download."""
    import bindkit

    index = bindkit.Index.create(tmp_path_factory.mktemp("tiny") / "index", model=tiny_model)
    index.add(media["image"][:2])
    index.add(["a dog barking", "a red car"], modality="text")
    yield index
    index.close()


def test_without_weights_the_app_says_how_to_get_them(demo, tiny_index, tmp_path, monkeypatch):
    import bindkit

    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    index, model, note = demo._load(argparse.Namespace(index=str(tiny_index.path), model=None, weights=None,
                                                       device="cpu"))
    try:
        # The note is about the model the index was built with (imagebind_tiny: no download, --weights).
        assert model is None and "imagebind_tiny" in note and "--weights PATH" in note
        assert "imagebind_huge" not in note and "bindkit fetch" not in note
        run = demo.search_fn(index, None, demo._Served(), note)
        status = run("a dog", *[None] * 6, *[1.0] * 7, 3, ["image"], "")[0]
        assert "imagebind_tiny" in status and "imagebind_huge" not in status
        app = demo.build_app(index, None)  # the default note names the index's model too
        shown = [b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "weights-missing"]
        assert len(shown) == 1 and "imagebind_tiny" in shown[0] and "imagebind_huge" not in shown[0]
    finally:
        index.close()
    huge = demo.weights_hint("imagebind_huge")  # a card with a download: the command and its licence
    assert "bindkit fetch imagebind_huge" in huge and "CC BY-NC 4.0" in huge
    with pytest.raises(bindkit.WeightsNotFoundError, match="no such file.*imagebind_tiny"):
        demo._load(argparse.Namespace(index=str(tiny_index.path), model=None, weights=str(tmp_path / "no.pt"),
                                      device="cpu"))
    # Another model than the index's is refused, naming both, before any weights are looked for.
    with pytest.raises(bindkit.IndexStoreError, match="'imagebind_tiny'.*imagebind_huge"):
        demo._load(argparse.Namespace(index=str(tiny_index.path), model="imagebind_huge", weights=None,
                                      device="cpu"))


def test_without_index_or_weights_the_cli_says_how_to_get_them(demo, tmp_path, monkeypatch, capsys):
    """A fresh machine without weights/bindkit_toy nor imagebind_huge weights: a message, exit status 1."""
    monkeypatch.setattr(demo.gallery, "TOY_MODEL", tmp_path / "weights" / "bindkit_toy")
    monkeypatch.setattr(demo.gallery, "REPO", tmp_path)
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from bindkit import resources

    monkeypatch.setattr(resources, "clone_weights_dir", lambda: tmp_path / "weights")  # whatever this clone holds
    assert demo.main(["--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "bindkit fetch imagebind_huge" in err and "bindkit train" in err and "Traceback" not in err


def test_index_of_a_model_directory_needs_model_dir(demo, demo_model, tmp_path, monkeypatch):
    """An index built with a model directory (bindkit train --out DIR) whose card name resolves nowhere else,
    opened without --model: the stats and a note saying to pass --model DIR, not a stack trace."""
    import bindkit

    monkeypatch.setattr(demo.gallery, "TOY_MODEL", tmp_path / "absent")
    card = dict(demo_model.card.to_dict(), name="my_trained_model")  # a name no card file or weights folder has
    mdir = bindkit.convert(_reference_state(demo_model), tmp_path / "my_trained_model", card=bindkit.load_card(card),
                           progress=False)
    model = bindkit.load_model(mdir)
    with bindkit.Index.create(tmp_path / "idx", model=model) as ix:
        ix.add(["a red shape", "a blue shape"], modality="text")
    index, loaded, note = demo._load(argparse.Namespace(index=str(tmp_path / "idx"), model=None, weights=None,
                                                        device="cpu"))
    try:
        assert loaded is None and "my_trained_model" in note and "--model DIR" in note
    finally:
        index.close()


def _reference_state(model):
    """The model's weights in the reference layout (what bindkit.convert reads from memory)."""
    from bindkit.models.reference_layout import to_reference

    state = model.encoders.state_dict()
    return {to_reference(k): v for k, v in state.items() if to_reference(k) is not None}


def test_upload_kind_reads_the_file_as_the_cli_does(demo, media, tmp_path):
    """The zero-shot tab's kind of an upload: the extension as `bindkit embed` reads it, then the bytes (a
    16-bit PNG is a depth map; a misnamed or nameless file is sniffed)."""
    import numpy as np

    kind = demo.handlers.upload_kind
    for k in ("image", "audio", "video", "imu", "depth"):
        assert kind(media[k][0])[0] == k, k
    assert kind(media["thermal"][0])[0] == "image"  # 8-bit grey: an image unless the user says thermal
    assert "thermal" in kind(media["thermal"][0])[1]
    noext = tmp_path / "upload"
    for src, want in ((media["audio"][0], "audio"), (media["image"][0], "image"), (media["video"][0], "video")):
        noext.write_bytes(Path(src).read_bytes())
        assert kind(noext)[0] == want, src
    np.save(tmp_path / "rec.npy", np.zeros((200, 6), np.float32))
    assert kind(tmp_path / "rec.npy")[0] == "imu"
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4), np.float32))
    (tmp_path / "blob.bin").write_bytes(b"\0" * 64)
    for path in (tmp_path / "cube.npy", tmp_path / "blob.bin"):
        k, why = kind(path)
        assert k is None and "choose" in why and path.name in why
    assert kind({"path": str(media["imu"][0])})[0] == "imu"  # Gradio's payload of an upload
    assert kind(None) == (None, "")
    # The tab's answer to an upload: kind, note and preset at once; a cleared upload sets no (stale) kind back.
    on_upload = demo.handlers.upload_kind_fn(demo.PRESET_FOR)
    new_kind, note, preset = on_upload({"path": str(media["imu"][0])})
    assert new_kind.value == "imu" and "imu" in note and preset.value == "motion"
    import gradio as gr

    assert on_upload(None) == (gr.skip(), "", gr.skip())


def test_examples_work_and_the_banner_says_what_the_model_knows(demo, demo_index, demo_model, tiny_index, tiny_model):
    texts = demo.handlers.example_texts(demo_index, demo_model)
    for text in texts:  # each example finds an image with the labels it names
        top = demo_index.search(text=text, k=1, modalities=["image"])["image"][0]
        assert all(word in top.metadata.values() for word in text.split()[1:]), (text, top.metadata)
    banner = demo.model_banner(demo_model, demo_model.card.name)
    if demo_model.card.name == "bindkit_toy":
        assert len(texts) >= 3
        assert "synthetic world only" in banner and "nonsense" in banner and "imagebind_huge" in banner
    # An index of other media (no synthetic labels): no text examples, stored items only.
    assert demo.handlers.example_texts(tiny_index, tiny_model) == []
    served = demo._Served()
    assert [k for k, _, _ in demo.handlers.example_media(tiny_index, served)] == ["image"]
    assert "imagebind_tiny" in demo.model_banner(tiny_model, "imagebind_tiny")
    assert "no weights" in demo.model_banner(None, "imagebind_tiny")
