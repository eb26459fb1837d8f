"""The rough edges of ``bindkit serve`` that HTTP clients hit (issue 19, item 7), through a real uvicorn server on a
free loopback port: modality inferred from ``data:`` URIs, URLs refused unfetched, token arrays (LangChain's
default) answered with the fix, ``/docs`` and ``/redoc`` without internet, ids as JSON strings, the access log
and Prometheus metrics at ``/metrics``."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

import bindkit
from bindkit.cli.serve import resolve_model_spec
from bindkit.serve import ServeConfig, create_app
from serve_helpers import ServerThread, b64, data_uri, mp4, png, thermal_png, wav, write_tiny_model

REPO = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token"
TOL = 1e-5
ACCESS = "bindkit.serve.access"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    card, weights = resolve_model_spec(str(write_tiny_model(tmp_path_factory.mktemp("model") / "tiny")), None)
    return bindkit.load_model(card, weights=weights)


@pytest.fixture(scope="module")
def index_dir(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("index") / "idx"
    with bindkit.Index.create(path, model=model) as index:
        index.add(["a red square", "a blue circle"], modality="text", metadata=[{"n": 0}, {"n": 1}])
    return path


@pytest.fixture(scope="module")
def server(model, index_dir):
    """No token, a writable index."""
    with ServerThread(create_app(ServeConfig(index_dir=str(index_dir), allow_writes=True), model=model)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def embed(model, kind: str, item) -> np.ndarray:
    return model.embed(**{kind: [item]}, show_progress_bar=False, strict=True)[kind][0]


def embeddings(client, body: dict) -> list[np.ndarray]:
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 200, r.text
    return [np.asarray(d["embedding"], np.float32) for d in r.json()["data"]]


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


# ---- data: URIs: the modality from the MIME type ---------------------------------------------------------------------
@pytest.mark.parametrize("kind, mime, make", [("image", "image/png", png), ("image", "image/jpeg",
                                                                           lambda: png(fmt="JPEG")),
                                              ("audio", "audio/wav", wav), ("video", "video/mp4", mp4)])
def test_data_uri_without_modality_is_embedded_as_its_mime_type_says(client, model, kind, mime, make):
    item = make()
    uri = data_uri(item, mime)
    [got] = embeddings(client, {"input": [uri]})
    np.testing.assert_allclose(got, embed(model, kind, item), atol=TOL, rtol=0)
    # before: the data URI itself was embedded as text (cosine 1.0 with the text embedding of the string)
    assert float(got @ embed(model, "text", uri)) < 0.99


def test_mixed_inputs_keep_their_order_and_only_texts_count_as_tokens(client, model):
    image, sound = png((20, 200, 40)), wav(1.0, freq=300.0)
    texts_only = client.post("/v1/embeddings", json={"input": ["a dog", "a cat"]}).json()["usage"]["prompt_tokens"]
    r = client.post("/v1/embeddings", json={"input": ["a dog", data_uri(image, "image/png"), "a cat",
                                                      data_uri(sound, "audio/wav")]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    got = [np.asarray(d["embedding"]) for d in body["data"]]
    for vec, (kind, item) in zip(got, [("text", "a dog"), ("image", image), ("text", "a cat"), ("audio", sound)]):
        np.testing.assert_allclose(vec, embed(model, kind, item), atol=TOL, rtol=0)
    assert body["usage"]["prompt_tokens"] == texts_only > 0


@pytest.mark.parametrize("uri", ["data:text/plain;base64," + b64(b"a dog barking"), "data:text/plain,a%20dog%20barking",
                                 "data:text/plain;charset=utf-8;base64," + b64(b"a dog barking")])
def test_text_plain_data_uri_is_the_text_it_carries(client, model, uri):
    [got] = embeddings(client, {"input": uri})
    np.testing.assert_allclose(got, embed(model, "text", "a dog barking"), atol=TOL, rtol=0)


def test_explicit_modality_still_decides(client, model):
    depth = thermal_png(3)  # a PNG: without "modality" it would be an image
    [got] = embeddings(client, {"input": [data_uri(depth, "image/png")], "modality": "thermal"})
    np.testing.assert_allclose(got, embed(model, "thermal", depth), atol=TOL, rtol=0)
    text = "data:image/png;base64,AAAA"
    [got] = embeddings(client, {"input": text, "modality": "text"})  # asked for: the string as text
    np.testing.assert_allclose(got, embed(model, "text", text), atol=TOL, rtol=0)


@pytest.mark.parametrize("text", ["data: the new oil", "data:, a comma", "see https://example.com for more"])
def test_text_that_only_looks_like_a_uri_is_text(client, model, text):
    [got] = embeddings(client, {"input": text})
    np.testing.assert_allclose(got, embed(model, "text", text), atol=TOL, rtol=0)


@pytest.mark.parametrize("uri, words", [("data:text/csv;base64,YSxiCjEsMgo=", "data:text/csv"),
                                        ("data:application/octet-stream;base64,AAAA", "application/octet-stream")])
def test_data_uri_of_a_kind_that_cannot_be_inferred_asks_for_modality(client, uri, words):
    err = openai_error(client.post("/v1/embeddings", json={"input": ["fine", uri]}), 400)
    assert err["param"] == "input[1]" and words in err["message"] and '"modality"' in err["message"]


# ---- URLs are refused, never fetched ---------------------------------------------------------------------------------
@pytest.fixture()
def bait():
    """A loopback HTTP server counting the requests it gets: a URL the bindkit server must never fetch."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png())

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/cat.png", hits
    srv.shutdown()
    srv.server_close()


def test_urls_are_refused_with_a_clear_400_and_never_fetched(client, bait):
    url, hits = bait
    err = openai_error(client.post("/v1/embeddings", json={"input": url}), 400)
    assert "not fetched" in err["message"] and "data:" in err["message"] and err["param"] == "input"
    err = openai_error(client.post("/v1/embeddings", json={"input": [url], "modality": "image"}), 400)
    assert "not fetched" in err["message"] and err["param"] == "input[0]"
    r = client.post("/vectorize", json={"images": [url]})
    assert r.status_code == 400 and r.json()["error"].startswith("images[0]: http:// URLs are not fetched")
    r = client.post("/search", json={"image": url.replace("http:", "https:")})
    assert r.status_code == 400 and "https:// URLs are not fetched" in r.json()["error"]
    r = client.post("/add", json={"items": [{"modality": "image", "data": "file:///etc/passwd"}]})
    assert r.status_code == 400 and "file:// URLs are not fetched" in r.json()["error"]
    assert hits == []
    [got] = embeddings(client, {"input": url, "modality": "text"})  # a URL as text, when asked for
    assert got.shape == (client.get("/meta").json()["dim"],)
    assert hits == []


# ---- token arrays: LangChain's default -------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [[1, 2, 3], [[40, 1093, 264], [2], []]])
def test_token_arrays_get_a_400_naming_langchains_setting(client, tokens):
    err = openai_error(client.post("/v1/embeddings", json={"input": tokens}), 400)
    assert err["param"] == "input" and "check_embedding_ctx_length=False" in err["message"]
    assert "token ids" in err["message"]


def test_mixed_lists_are_still_a_422_naming_the_item(client):
    err = openai_error(client.post("/v1/embeddings", json={"input": ["a dog", 7]}), 422)
    assert err["param"] == "input[1]"


def _offline_tiktoken(monkeypatch) -> None:
    """tiktoken downloads its vocabularies on first use, and tests have no internet: give LangChain a byte-level
    tiktoken encoding (built here) instead of cl100k_base. What LangChain sends is unchanged: lists of token ids."""
    import tiktoken

    enc = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                            special_tokens={})
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda name: enc)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: enc)


def test_langchain_openai_embeddings(server, model, monkeypatch):
    lc = pytest.importorskip("langchain_openai")
    openai = pytest.importorskip("openai")
    _offline_tiktoken(monkeypatch)
    default = lc.OpenAIEmbeddings(model="bindkit", base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        default.embed_documents(["a dog", "a cat"])
    assert "check_embedding_ctx_length=False" in str(exc.value)
    fixed = lc.OpenAIEmbeddings(model="bindkit", base_url=server.url + "/v1", api_key="unused", max_retries=0,
                                check_embedding_ctx_length=False)
    got = fixed.embed_documents(["a dog", "a cat"])
    want = model.embed(text=["a dog", "a cat"], show_progress_bar=False)["text"]
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(fixed.embed_query("a dog"), want[0], atol=TOL, rtol=0)


# ---- /docs and /redoc offline ----------------------------------------------------------------------------------------
_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']|redoc\s+spec-url=["']([^"']+)""")


@pytest.mark.parametrize("page, assets", [("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
                                          ("/redoc", {"redoc.standalone.js"})])
def test_docs_pages_reference_only_this_server(client, page, assets):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "://" not in html, f"{page} names another host: " + \
        ", ".join(re.findall(r"[a-z]+://[^\s\"'<>]+", html))
    refs = {next(g for g in m if g) for m in _REF.findall(html)}
    assert {r.rpartition("/")[2] for r in refs} >= assets | {"openapi.json"}
    for ref in refs:
        assert ref.startswith("/"), f"{page}: {ref} is not a path on this server"
        got = client.get(ref)
        assert got.status_code == 200, ref
        if ref.endswith(".js"):
            assert "javascript" in got.headers["content-type"] and len(got.content) > 100_000, ref
        elif ref.endswith(".css"):
            assert got.headers["content-type"].startswith("text/css") and len(got.content) > 10_000, ref
    assert client.get("/docs/assets/nope.js").status_code == 404
    assert "#/$defs/" not in client.get("/openapi.json").text  # references the pages could not resolve


def test_docs_assets_are_served_before_the_model_is_ready(model):
    """The pages and their assets answer while the model loads (the rest answers 503)."""
    loaded = threading.Event()

    def loader():
        loaded.wait(120)
        return model

    app = create_app(ServeConfig(), loader=loader)
    with ServerThread(app, ready=False) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        try:
            assert c.get("/meta").status_code == 503
            for path in ["/docs", "/redoc", "/docs/assets/swagger-ui.css", "/openapi.json", "/metrics"]:
                assert c.get(path).status_code == 200, path
        finally:
            loaded.set()


CHROMIUM = os.environ.get("BINDKIT_CHROMIUM", "/usr/bin/chromium")


def test_docs_render_in_a_browser_that_cannot_reach_other_hosts(server):
    """Headless Chromium with every request to another host refused: Swagger UI lists the routes and ReDoc
    renders, from this server's files alone."""
    if not os.path.isfile(CHROMIUM):
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{CHROMIUM} is absent; tests/setup.sh installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)  # a bound on waiting on a loaded machine, not a measurement

            def route(r):
                if r.request.url.startswith((server.url + "/", "data:", f"blob:{server.url}/")):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(server.url + "/docs")
            page.locator(".opblock-summary-path", has_text="/v1/embeddings").first.wait_for()
            page.goto(server.url + "/redoc")
            page.locator("h1", has_text="bindkit serve").first.wait_for()
        finally:
            browser.close()
    assert outside == []


# ---- ids as strings --------------------------------------------------------------------------------------------------
def test_ids_are_json_strings_and_accepted_as_strings_or_numbers(client):
    r = client.post("/add", json={"items": [{"modality": "text", "text": f"item {i}", "metadata": {"g": "ids"}}
                                            for i in range(3)]})
    assert r.status_code == 200, r.text
    assert re.search(r'"ids":\["\d+","\d+","\d+"\]', r.text), r.text
    ids = r.json()["ids"]
    r = client.post("/search", json={"text": "item 0", "k": 10, "modalities": ["text"], "where": {"g": "ids"}})
    hits = r.json()["results"]["text"]
    assert all(isinstance(h["id"], str) for h in hits) and set(ids) == {h["id"] for h in hits}
    assert re.search(r'"id":"\d+"', r.text)
    # What a JavaScript client did with numbers: JSON.parse rounds a 64-bit id to a double, removing nothing.
    as_double = int(float(ids[0]))
    assert as_double != int(ids[0])
    assert client.post("/remove", json={"ids": [as_double]}).json() == {"removed": 0}
    assert client.post("/remove", json={"ids": [ids[0]]}).json() == {"removed": 1}  # a string, as returned
    assert client.post("/remove", json={"ids": [int(ids[1])]}).json() == {"removed": 1}  # a number, exact
    assert client.post("/remove", json={"ids": [ids[2]], "where": {"g": "ids"}}).json() == {"removed": 1}


@pytest.mark.parametrize("ids, words", [(["12a"], "ids[0]: an item id is a whole number"),
                                        ([1, "-3"], "ids[1]"), ([str(2**63)], "[0, 2**63)"),
                                        ([5.551846404524732e18], "send ids as the strings"),
                                        ([True], "ids[0]")])
def test_bad_ids_are_a_422_naming_the_id(client, ids, words):
    r = client.post("/remove", json={"ids": ids})
    assert r.status_code == 422 and words in r.json()["error"], r.text


def test_weaviate_routes_carry_no_ids(client):
    out = client.post("/vectorize", json={"texts": ["a dog"]}).json()
    assert list(out) == ["textVectors", "imageVectors", "audioVectors", "videoVectors", "imuVectors",
                         "thermalVectors", "depthVectors"]
    assert all(isinstance(x, float) for x in out["textVectors"][0])
    assert "id" not in client.get("/meta").json()


# ---- curl examples: bodies from files --------------------------------------------------------------------------------
def test_the_curl_example_of_serving_md_sends_a_large_image(server, model, tmp_path):
    """docs/serving.md's /vectorize example, run as written (its host:port pointed at the test server) with a
    500 KB dog.jpg: the base64 goes through a file, not the command line ("Argument list too long")."""
    if not (shutil.which("curl") and shutil.which("python")):
        pytest.skip("curl and python are needed")
    lines = (REPO / "docs" / "serving.md").read_text(encoding="utf-8").splitlines()
    example = [line for line in lines if "body.json" in line and line.startswith(("python -c", "curl"))]
    assert any("--data-binary @body.json" in line for line in example), "the example no longer posts body.json"
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (700, 600, 3), np.uint8)).save(tmp_path / "dog.jpg", quality=95)
    assert (tmp_path / "dog.jpg").stat().st_size > 200_000  # its base64 is over twice the ~96 KB that -d "$(...)" takes
    script = "\n".join(line.split("  #")[0].replace("localhost:8000", server.url.removeprefix("http://"))
                       for line in example)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["textVectors"]) == 1 and len(out["imageVectors"]) == 1
    want = embed(model, "image", (tmp_path / "dog.jpg").read_bytes())
    np.testing.assert_allclose(out["imageVectors"][0], want, atol=TOL, rtol=0)


# ---- access log ------------------------------------------------------------------------------------------------------
def test_one_access_log_line_per_request(client, caplog):
    caplog.set_level(logging.DEBUG, logger=ACCESS)
    calls = [("POST", "/v1/embeddings", {"input": ["a", "b", "c"]}, 200, 3),
             ("POST", "/vectorize", {"texts": ["a"], "images": [b64(png())]}, 200, 2),
             ("POST", "/v1/embeddings", {"input": [1, 2]}, 400, None),
             ("GET", "/meta", None, 200, None),
             ("GET", "/no/such/route", None, 404, None),
             ("GET", "/.well-known/live", None, 204, None)]
    caplog.clear()
    for method, path, body, status, _ in calls:
        assert client.request(method, path, json=body).status_code == status
    records = [r for r in caplog.records if r.name == ACCESS]
    assert len(records) == len(calls)
    for rec, (method, path, _, status, items) in zip(records, calls):
        assert (rec.method, rec.path, rec.status, rec.items) == (method, path, status, items)
        assert rec.ms > 0
        assert rec.getMessage().startswith(f"{method} {path} {status} items={'-' if items is None else items} ")
        assert re.search(r" \d+\.\dms client=127\.0\.0\.1:\d+$", rec.getMessage())
    assert records[4].route == "other" and records[0].route == "/v1/embeddings"
    assert [r.levelno for r in records] == [logging.INFO] * 5 + [logging.DEBUG]  # probes: DEBUG


def test_gate_answers_are_logged_too(model, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)
    with ServerThread(create_app(ServeConfig(token=TOKEN), model=model)) as s:
        caplog.clear()
        assert httpx.post(s.url + "/vectorize", json={}).status_code == 401
    [rec] = [r for r in caplog.records if r.name == ACCESS]
    assert (rec.route, rec.status) == ("/vectorize", 401)


# ---- Prometheus metrics ----------------------------------------------------------------------------------------------
def _scrape(c: httpx.Client, **kw) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics", **kw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def test_metrics_count_requests_latency_items_and_batches(client):
    pytest.importorskip("prometheus_client")
    before = _scrape(client)
    assert client.post("/vectorize", json={"texts": ["a", "b", "c"]}).status_code == 200
    assert client.post("/vectorize", json={"texts": 5}).status_code == 422
    assert client.get("/scanner/probe.php").status_code == 404
    after = _scrape(client)

    def grew(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("bindkit_http_requests_total", route="/vectorize", method="POST", status=200) == 1
    assert grew("bindkit_http_requests_total", route="/vectorize", method="POST", status=422) == 1
    assert grew("bindkit_http_requests_total", route="other", method="GET", status=404) == 1
    assert grew("bindkit_http_request_duration_seconds_count", route="/vectorize") == 2
    assert grew("bindkit_http_request_duration_seconds_sum", route="/vectorize") > 0
    assert grew("bindkit_http_request_items_sum", route="/vectorize") == 3
    assert grew("bindkit_batch_size_count", modality="text") >= 1
    assert grew("bindkit_batch_size_sum", modality="text") == 3
    assert grew("bindkit_forward_seconds_count", modality="text") >= 1
    assert _value(after, "bindkit_batcher_queue_depth") == 0
    assert _value(after, "bindkit_model_ready") == 1
    assert _value(after, "bindkit_http_requests_in_progress") == 1  # the scrape itself
    assert _value(after, "process_resident_memory_bytes") > 0


def test_batcher_queue_depth_is_a_gauge(model):
    """Jobs submitted to a batcher that has not started wait in its queue: the gauge reads them."""
    pytest.importorskip("prometheus_client")
    from bindkit.serve.batching import DynamicBatcher
    from bindkit.serve.observe import Metrics

    batcher = DynamicBatcher(model, max_batch=8, max_wait_ms=0)
    metrics = Metrics(lambda: True)
    metrics.watch(batcher)
    items = bindkit.preprocess("text", ["a", "b", "c"], model)

    async def scenario():
        jobs = [asyncio.ensure_future(batcher.submit("text", [t])) for t in items]
        for _ in range(1000):
            if batcher.queue_depth() == 3:
                break
            await asyncio.sleep(0)  # let each submit put its job
        depth = metrics.registry.get_sample_value("bindkit_batcher_queue_depth")
        batcher.start()
        await asyncio.gather(*jobs)
        return depth

    try:
        assert asyncio.run(scenario()) == 3
    finally:
        batcher.stop()
    assert metrics.registry.get_sample_value("bindkit_batcher_queue_depth") == 0
    assert metrics.registry.get_sample_value("bindkit_batch_size_sum", {"modality": "text"}) == 3


def test_metrics_need_the_token_unless_public(model):
    pytest.importorskip("prometheus_client")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ServerThread(create_app(ServeConfig(token=TOKEN), model=model)) as s, httpx.Client(base_url=s.url) as c:
        assert c.get("/metrics").status_code == 401
        assert _value(_scrape(c, headers=auth), "bindkit_http_requests_total", route="/metrics", method="GET",
                      status=401) == 1
    with ServerThread(create_app(ServeConfig(token=TOKEN, metrics_public=True), model=model)) as s, \
            httpx.Client(base_url=s.url) as c:
        assert _value(_scrape(c), "bindkit_model_ready") == 1
        assert c.get("/meta").status_code == 401  # only /metrics is public
