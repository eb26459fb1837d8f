"""The Gradio demo (demos/app.py), driven in a real browser (Debian's chromium through Playwright) against a real
HTTP server over a real index of the sample media embedded with the tiny fixture model."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("BINDKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Gradio's own deprecation noise (pandas) is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio")
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(ok: bool, why: str) -> None:
    if not ok:
        (pytest.fail if UNDER_CI else pytest.skip)(f"{why}; tests/setup.sh installs it")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
for _mod in ("gradio", "playwright"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"{_mod} is not installed (pip install -e '.[test]')", allow_module_level=True)


@pytest.fixture(scope="module")
def demo():
    """demos/app.py imported as a module (demos/ is not a package: it is what users run)."""
    spec = importlib.util.spec_from_file_location("bindkit_demo_app", REPO / "demos" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory, tiny_model, samples_dir):
    import bindkit

    index = bindkit.Index.create(tmp_path_factory.mktemp("demo") / "index", model=tiny_model)
    images = sorted((samples_dir / "image").glob("*.jpg"))
    group = {"bird": "animal", "dog": "animal", "car": "vehicle"}
    index.add([str(p) for p in images], metadata=[{"group": group[p.stem]} for p in images], strict=False)
    others = (sorted((samples_dir / "audio").glob("*.wav")) + sorted((samples_dir / "depth").glob("*.jpg"))[:2]
              + sorted((samples_dir / "thermal").glob("*.jpg"))[:2])
    result = index.add([str(p) for p in others], strict=False)
    assert not result.errors, result.errors
    index.add(["a dog barking", "a red car"], modality="text")
    yield index
    index.close()


@pytest.fixture(scope="module")
def server(demo, demo_index, tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = demo.build_app(demo_index, tiny_model)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    yield f"http://127.0.0.1:{port}"
    app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _need(os.path.isfile(CHROMIUM), f"{CHROMIUM} (Debian's chromium) is absent")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                   executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1280, "height": 1200})
        yield ctx
        ctx.close()


@pytest.fixture()
def page(browser, server):
    """A fresh page on the demo; fails the test if the page asked for anything beyond the local server."""
    pg = browser.new_page()
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url)
          if not r.url.startswith((server, "data:", f"blob:{server}")) else None)
    pg.set_default_timeout(15_000)
    pg.goto(server)
    pg.locator("#search").wait_for()
    yield pg
    pg.close()
    assert not outside, f"the demo page contacted other hosts: {outside}"


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


def _gallery(pg) -> list[str]:
    """Captions of the image gallery, best first ("1. dog.jpg · +0.123")."""
    return pg.locator("#image-results .caption-label").all_inner_texts()


def _players(pg) -> list[str]:
    """Labels of the visible audio players."""
    return [t.strip() for t in pg.locator("#audio-results .audio-hit [data-testid=block-label]").all_inner_texts()]


def _rows(pg) -> list[list[str]]:
    """Cells of the "other modalities" table, row by row (Gradio's Dataframe renders rows as role=row divs)."""
    return pg.locator("#other-results .virtual-row").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))")


def _names(captions: list[str]) -> list[str]:
    return [c.split(" · ")[0].split(". ", 1)[1] for c in captions]


def test_text_search_shows_hits_per_modality(page, demo_index, samples_dir):
    k = 2
    _search(page, "a dog", k=k)
    expected = demo_index.search(text="a dog", k=k)  # what the public API ranks; the UI must show the same
    captions = _gallery(page)
    assert _names(captions) == [Path(h.uri).name for h in expected["image"]]
    assert len(captions) == k and set(_names(captions)) <= {p.name for p in (samples_dir / "image").iterdir()}
    srcs = page.locator("#image-results img").evaluate_all("els => els.map(e => e.src)")
    assert [s.rsplit("/", 1)[1] for s in srcs] == _names(captions)  # the browser really got those files
    assert _names(_players(page)) == [Path(h.uri).name for h in expected["audio"]]
    rows = _rows(page)
    kinds = [r[0] for r in rows]
    assert sorted(set(kinds)) == ["depth", "text", "thermal"] and all(kinds.count(x) == k for x in set(kinds))
    depth = {p.name for p in (samples_dir / "depth").iterdir()}
    assert [Path(r[2]).name for r in rows if r[0] == "depth"] == [Path(h.uri).name for h in expected["depth"]]
    assert {Path(r[2]).name for r in rows if r[0] == "depth"} <= depth
    assert "imagebind_tiny" in page.locator("#index-stats").inner_text()
    page.screenshot(path="/tmp/demo.png", full_page=True)


def test_empty_query_is_a_message_not_a_crash(page):
    status = _search(page, "   ", expect="Empty query")
    assert "Empty query" in status
    assert _gallery(page) == [] and _players(page) == []
    # The app still answers after the error.
    assert "hits" in _search(page, "a car", k=1)
    assert len(_gallery(page)) == 1


def test_filter_and_result_modalities(page):
    for kind in ("audio", "depth", "text", "thermal"):  # keep only "image"
        page.locator("#result-kinds label", has_text=kind).click()
    _search(page, "a dog", k=5, where="group=vehicle")
    assert _names(_gallery(page)) == ["car.jpg"]  # the only item whose metadata matches
    assert _players(page) == [] and _rows(page) == []


def test_image_upload_composes_and_bad_upload_is_reported(page, samples_dir, tmp_path):
    page.locator("#query-image input[type=file]").set_input_files(str(samples_dir / "image" / "dog.jpg"))
    page.locator("#query-image img").wait_for()
    _search(page, "", k=3)
    top = _gallery(page)[0]
    assert _names([top]) == ["dog.jpg"] and "+1.000" in top  # the image finds itself (cosine 1)

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    page.goto(page.url)  # a fresh page: no image query any more
    page.get_by_text("Other query file").click()
    page.locator("#query-other input[type=file]").set_input_files(str(bad))
    page.locator("#query-other").get_by_text("broken.mp4").first.wait_for()
    status = _search(page, "a dog", expect="broken.mp4")
    assert "⚠️" in status and "video" in status


def _unreadable_image(kind: str, samples_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """(file, words the status must show) for an image query the demo cannot use."""
    if kind == "wav_renamed":
        path = tmp_path / "sound.png"
        path.write_bytes((samples_dir / "audio" / "dog.wav").read_bytes())
        return path, "not a readable image"
    if kind == "truncated_jpeg":  # greyscale: Gradio's own preprocessing would decode it to convert it to RGB
        from PIL import Image

        path = tmp_path / "cut.jpg"
        Image.open(samples_dir / "image" / "dog.jpg").convert("L").save(path, quality=90)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "truncated"
    from PIL import Image

    path = tmp_path / "bomb.png"  # 10000 x 10000 1-bit: 12 kB on disk, 300 MB once decoded as RGB
    Image.new("1", (10_000, 10_000)).save(path)
    return path, "decompression bomb"


@pytest.mark.parametrize("kind", ["wav_renamed", "truncated_jpeg", "decompression_bomb"])
def test_unreadable_image_query_gets_a_clear_message(page, samples_dir, tmp_path, kind):
    path, words = _unreadable_image(kind, samples_dir, tmp_path)
    page.locator("#query-image input[type=file]").set_input_files(str(path))
    status = _search(page, "a dog", expect=path.name)  # waits until the status names the upload
    assert status.startswith("⚠️") and words in status and "image" in status, status
    assert "/tmp" not in status and str(path.parent) not in status  # the name, not the server's temp path
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert path.name in toast.inner_text()
    assert page.get_by_text("Error", exact=True).count() == 0  # no bare error badge anywhere
    page.goto(page.url)  # the app still answers
    assert "hits" in _search(page, "a car", k=1)


def test_parse_filter(demo):
    assert demo.parse_filter("  ") is None
    assert demo.parse_filter("split=test") == {"split": {"$eq": "test"}}
    assert demo.parse_filter("year>=2020, ok=true\nname='42'") == {
        "$and": [{"year": {"$gte": 2020}}, {"ok": {"$eq": True}}, {"name": {"$eq": "42"}}]}
    with pytest.raises(ValueError, match="nonsense"):
        demo.parse_filter("nonsense")


def test_without_weights_the_app_says_how_to_get_them(demo, demo_index, tmp_path, monkeypatch):
    import bindkit

    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    index, model, note = demo._load(argparse.Namespace(index=str(demo_index.path), model=None, weights=None,
                                                       device="cpu"))
    try:
        # The note is about the model the index was built with (imagebind_tiny: no download, --weights).
        assert model is None and "imagebind_tiny" in note and "--weights PATH" in note
        assert "imagebind_huge" not in note and "bindkit fetch" not in note
        run = demo.search_fn(index, None, demo._Served(), note)
        status = run("a dog", None, None, None, "video", 3, ["image"], "")[0]
        assert "imagebind_tiny" in status and "imagebind_huge" not in status
        app = demo.build_app(index, None)  # the default note names the index's model too
        shown = [b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "weights-missing"]
        assert len(shown) == 1 and "imagebind_tiny" in shown[0] and "imagebind_huge" not in shown[0]
    finally:
        index.close()
    huge = demo.weights_hint("imagebind_huge")  # a card with a download: the command and its licence
    assert "bindkit fetch imagebind_huge" in huge and "CC BY-NC 4.0" in huge
    with pytest.raises(bindkit.WeightsNotFoundError, match="no such file.*imagebind_tiny"):
        demo._load(argparse.Namespace(index=str(demo_index.path), model=None, weights=str(tmp_path / "no.pt"),
                                      device="cpu"))
    # Another model than the index's is refused, naming both, before any weights are looked for.
    with pytest.raises(bindkit.IndexStoreError, match="'imagebind_tiny'.*imagebind_huge"):
        demo._load(argparse.Namespace(index=str(demo_index.path), model="imagebind_huge", weights=None,
                                      device="cpu"))
