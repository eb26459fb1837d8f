"""HTTP tests of ``bindkit serve`` through a real uvicorn server on a free loopback port: Weaviate's
multi2vec-bind protocol, OpenAI embeddings, index search, errors, limits and the bearer token.

The model is imagebind_tiny with seeded random weights written like a converted folder (no ../shared needed).
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import torch

import bindkit
from bindkit.cli.serve import resolve_model_spec
from bindkit.modality import encoder_of
from bindkit.serve import Limits, ServeConfig, create_app
from serve_helpers import (ServerThread, b64, data_uri, depth_png, imu_csv, mp4, png, thermal_png, wav,
                           write_tiny_model)

KEYS = ("textVectors", "imageVectors", "audioVectors", "videoVectors", "imuVectors", "thermalVectors",
        "depthVectors")
LIMITS = Limits(max_body_bytes=1_000_000, max_items=12, max_pixels=100_000, max_audio_seconds=5.0,
                max_video_seconds=3.0)
TOKEN = "s3cret-token"
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny_random")


@pytest.fixture(scope="module")
def model(tiny_dir):
    card, weights = resolve_model_spec(str(tiny_dir), None)
    return bindkit.load_model(card, weights=weights)


@pytest.fixture(scope="module")
def media():
    """One generated file per media kind (as bytes)."""
    return {"image": png(), "audio": wav(1.0), "video": mp4(2.0), "depth": depth_png(), "thermal": thermal_png(),
            "imu": imu_csv()}


@pytest.fixture(scope="module")
def server(model):
    """Reference-scaled vectors, no token, small limits."""
    with ServerThread(create_app(ServeConfig(limits=LIMITS, max_batch=8), model=model)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def index_dir(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("index") / "idx"
    with bindkit.Index.create(path, model=model) as index:
        index.add(["a red square", "a blue circle", "a dog barking"], modality="text",
                  metadata=[{"n": 0}, {"n": 1}, {"n": 2}])
        index.add([png((200, 30, 30)), png((20, 30, 220))], modality="image", metadata=[{"n": 3}, {"n": 4}])
    return path


@pytest.fixture(scope="module")
def secure(model, index_dir):
    """Unit vectors, a bearer token, and a writable index."""
    config = ServeConfig(unit_vectors=True, token=TOKEN, limits=LIMITS, index_dir=str(index_dir), allow_writes=True)
    with ServerThread(create_app(config, model=model)) as s:
        yield s


@pytest.fixture(scope="module")
def sclient(secure):
    with httpx.Client(base_url=secure.url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def expected(model, kind: str, item, unit: bool = False) -> np.ndarray:
    """What Weaviate's container returns for one item: the unit vector times the modality's output scale;
    audio/video the mean over clips of (scale x the clip's unit vector), not renormalised."""
    if kind in ("audio", "video"):
        batch = bindkit.preprocess(kind, [item], model)[0]
        enc = model.encoders[encoder_of(kind)]
        with torch.inference_mode():
            clips = enc(batch)  # (clips, dim) unit vectors
        vec = clips.mean(dim=0).numpy()
    else:
        vec = model.embed(**{kind: [item]}, show_progress_bar=False, strict=True)[kind][0]
    if unit:
        return vec / np.linalg.norm(vec)
    scale = model.logit_scale(kind)
    return vec * (1.0 if scale is None else scale)


def vectorize(client, body) -> dict:
    r = client.post("/vectorize", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert list(out) == list(KEYS)
    return out


def assert_healthy(client) -> None:
    assert client.get("/.well-known/ready").status_code == 204
    out = vectorize(client, {"texts": ["still alive"]})
    assert len(out["textVectors"]) == 1


# ---- health and meta -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/.well-known/live", "/.well-known/ready"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_checks_answer_204_with_an_empty_body(client, path, method):
    r = client.request(method, path)
    assert r.status_code == 204
    assert r.content == b""


def test_meta_describes_the_model(client, model):
    meta = client.get("/meta").json()
    assert meta["model"] == "imagebind_tiny" and meta["dim"] == model.dim
    assert meta["modalities"] == ["text", "image", "audio", "video", "depth", "thermal", "imu"]
    assert meta["fingerprints"] == {enc: model.fingerprint(enc) for enc in model.modalities}
    assert meta["bindkit_version"] == bindkit.__version__
    assert meta["scales"]["audio"] == 20.0 and meta["scales"]["image"] == 1.0
    assert meta["limits"]["max_items"] == LIMITS.max_items


def test_openapi_docs_are_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/vectorize", "/v1/embeddings", "/meta", "/.well-known/ready"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# ---- /vectorize: each modality equals model.embed x the reference scale -------------------------------------------
@pytest.mark.parametrize("kind, key", [("image", "images"), ("audio", "audio"), ("video", "video"),
                                       ("depth", "depth"), ("thermal", "thermal"), ("imu", "imu")])
def test_vectorize_each_media_modality_matches_the_reference_scaling(client, model, media, kind, key):
    out = vectorize(client, {key: [b64(media[kind])]})
    got = np.asarray(out[f"{'image' if kind == 'image' else kind}Vectors"], np.float32)
    assert got.shape == (1, model.dim)
    np.testing.assert_allclose(got[0], expected(model, kind, media[kind]), atol=TOL, rtol=0)
    # and its direction is exactly bindkit's unit vector
    unit = model.embed(**{kind: [media[kind]]}, show_progress_bar=False, strict=True)[kind][0]
    np.testing.assert_allclose(got[0] / np.linalg.norm(got[0]), unit, atol=TOL, rtol=0)
    for other in KEYS:
        if other != f"{kind}Vectors":
            assert out[other] == []


def test_vectorize_text_is_scaled_by_the_learned_text_scale(client, model):
    out = vectorize(client, {"texts": ["a dog", "a photo of a cat"]})
    got = np.asarray(out["textVectors"], np.float32)
    want = model.embed(text=["a dog", "a photo of a cat"], show_progress_bar=False)["text"] * model.logit_scale("text")
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert model.logit_scale("text") == pytest.approx(1 / 0.07, rel=1e-5)  # random init: log(1/0.07)


def test_clip_averaged_vectors_are_not_renormalised(client, media):
    """Like the reference, audio is the mean of 20 x the clips' unit vectors: shorter than 20 when clips differ."""
    out = vectorize(client, {"audio": [b64(wav(4.0, freq=300.0))], "video": [b64(media["video"])]})
    assert np.linalg.norm(out["audioVectors"][0]) <= 20.0 + 1e-4
    assert np.linalg.norm(out["videoVectors"][0]) <= 1.0 + 1e-5


def test_mixed_request_keeps_input_order(client, model, media):
    red, blue = png((220, 20, 20)), png((20, 20, 220))
    body = {"texts": ["one", "two", "one"], "images": [b64(red), b64(blue), b64(red)],
            "imu": [b64(imu_csv(1)), b64(imu_csv(2))], "depth": [b64(depth_png(1))]}
    out = vectorize(client, body)
    assert [len(out[k]) for k in KEYS] == [3, 3, 0, 0, 2, 0, 1]
    img = np.asarray(out["imageVectors"], np.float32)
    np.testing.assert_allclose(img[0], expected(model, "image", red), atol=TOL, rtol=0)
    np.testing.assert_allclose(img[1], expected(model, "image", blue), atol=TOL, rtol=0)
    np.testing.assert_allclose(img[0], img[2], atol=TOL, rtol=0)
    assert not np.allclose(img[0], img[1], atol=1e-3)
    imu = np.asarray(out["imuVectors"], np.float32)
    np.testing.assert_allclose(imu[1], expected(model, "imu", imu_csv(2)), atol=TOL, rtol=0)
    txt = np.asarray(out["textVectors"], np.float32)
    np.testing.assert_allclose(txt[0], txt[2], atol=TOL, rtol=0)


def test_identical_requests_give_identical_vectors(client, media):
    body = {"texts": ["same"], "images": [b64(media["image"])], "thermal": [b64(media["thermal"])]}
    assert vectorize(client, body) == vectorize(client, body)


def test_empty_request_gets_seven_empty_lists(client):
    assert vectorize(client, {}) == {k: [] for k in KEYS}
    r = client.post("/vectorize", content=b"")
    assert r.status_code == 200 and r.json() == {k: [] for k in KEYS}
    assert vectorize(client, {"texts": [], "images": None}) == {k: [] for k in KEYS}


def test_body_without_content_type_is_read_as_json(client, model):
    body = json.dumps({"texts": ["no content type"]}).encode()
    r = client.post("/vectorize", content=body)
    assert "content-type" not in r.request.headers
    assert r.status_code == 200
    want = model.embed(text=["no content type"], show_progress_bar=False)["text"][0] * model.logit_scale("text")
    np.testing.assert_allclose(r.json()["textVectors"][0], want, atol=TOL, rtol=0)
    r = client.post("/vectorize", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200


def test_base64_with_line_breaks_and_data_uris_is_accepted(client, model, media):
    wrapped = base64.encodebytes(media["image"]).decode()  # MIME base64: a line break every 76 characters
    assert "\n" in wrapped
    out = vectorize(client, {"images": [wrapped, data_uri(media["image"], "image/png"), b64(media["image"])]})
    img = np.asarray(out["imageVectors"])
    np.testing.assert_allclose(img[0], img[2], atol=TOL, rtol=0)
    np.testing.assert_allclose(img[1], img[2], atol=TOL, rtol=0)


def test_jpeg_images_are_accepted(client, model):
    jpg = png((30, 160, 90), fmt="JPEG")
    out = vectorize(client, {"images": [b64(jpg)]})
    np.testing.assert_allclose(out["imageVectors"][0], expected(model, "image", jpg), atol=TOL, rtol=0)


# ---- bad input: a 4xx JSON error naming the item, the server still healthy ------------------------------------------
BAD = [
    ("not json", b"{texts: [", 400, "not valid JSON"),
    ("json array", b'["a dog"]', 422, "must be a JSON object"),
    ("texts not a list", b'{"texts": "a dog"}', 422, "texts"),
    ("number in texts", b'{"texts": ["ok", 7]}', 422, "texts[1]"),
    ("object in images", b'{"images": [{"url": "x"}]}', 422, "images[0]"),
    ("bad base64", b'{"images": ["iVBOR***"]}', 400, "images[0]: not valid base64"),
    ("base64 of nothing", b'{"images": [""]}', 422, "images[0]: empty input"),
    ("garbage image", json.dumps({"images": [b64(b"this is not an image at all")]}).encode(), 422, "images[0]"),
    ("truncated png", json.dumps({"images": [b64(png()[:60])]}).encode(), 422, "images[0]"),
    ("wav as image", json.dumps({"images": [b64(wav(0.5))]}).encode(), 422, "looks like a WAV"),
    ("png as audio", json.dumps({"audio": [b64(png())]}).encode(), 422, "audio[0]"),
    ("png as video", json.dumps({"video": [b64(png())]}).encode(), 422, "video[0]"),
    ("audio too short", json.dumps({"audio": [b64(wav(0.01))]}).encode(), 422, "too short"),
    ("imu without gyro", json.dumps({"imu": [b64(b"accel_x,accel_y,accel_z\n1,2,3\n4,5,6\n")]}).encode(), 422,
     "missing channel"),
    ("png as imu", json.dumps({"imu": [b64(png())]}).encode(), 422, "imu[0]"),
    ("second image bad", json.dumps({"images": [b64(png()), b64(b"nope")]}).encode(), 422, "images[1]"),
]


@pytest.mark.parametrize("name, body, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_json_error_naming_the_item(client, name, body, status, words):
    r = client.post("/vectorize", content=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err, str) and words in err
    assert "Traceback" not in err and "BytesIO" not in err
    assert_healthy(client)


def test_unknown_route_is_a_json_404(client):
    r = client.get("/nope")
    assert r.status_code == 404 and "error" in r.json()


# ---- limits -> 413 --------------------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413(client):
    r = client.post("/vectorize", content=json.dumps({"texts": ["x" * 1_200_000]}).encode())
    assert r.status_code == 413
    assert "--max-body-size" in r.json()["error"]
    assert_healthy(client)


def test_too_many_items_is_413(client):
    r = client.post("/vectorize", json={"texts": ["a"] * 9, "images": [b64(png())] * 4})
    assert r.status_code == 413 and "13 inputs" in r.json()["error"]
    assert_healthy(client)


@pytest.mark.parametrize("key, data, words", [
    ("images", lambda: png(size=(400, 300)), "120000 pixels"),
    ("depth", lambda: depth_png(size=(500, 400)), "--max-pixels"),
    ("audio", lambda: wav(6.0), "--max-audio-seconds"),
    ("video", lambda: mp4(4.0, fps=2), "--max-video-seconds"),
])
def test_media_over_a_limit_is_413_naming_the_item(client, key, data, words):
    r = client.post("/vectorize", json={"texts": ["fine"], key: [b64(data())]})
    assert r.status_code == 413, r.text
    assert r.json()["error"].startswith(f"{key}[0]:") and words in r.json()["error"]
    assert_healthy(client)


def test_decompression_bomb_is_refused_from_its_header(client):
    """A 30000 x 30000 PNG of one colour is a few hundred kB; decoding it would need 2.7 GB."""
    import zlib

    w = h = 30000
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * w for _ in range(200)), 9)  # only 200 rows: header lies
    def chunk(tag, data):
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00")
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    r = client.post("/vectorize", json={"images": [b64(bomb)]})
    assert r.status_code == 413 and "images[0]" in r.json()["error"]
    assert_healthy(client)


# ---- unit vectors, token ------------------------------------------------------------------------------------------
def test_unit_vectors_option_returns_bindkits_unit_vectors(sclient, model, media):
    out = sclient.post("/vectorize", json={"texts": ["a dog"], "audio": [b64(media["audio"])],
                                           "imu": [b64(media["imu"])]}).json()
    for kind, key, item in [("text", "textVectors", "a dog"), ("audio", "audioVectors", media["audio"]),
                            ("imu", "imuVectors", media["imu"])]:
        got = np.asarray(out[key][0], np.float32)
        want = model.embed(**{kind: [item]}, show_progress_bar=False, strict=True)[kind][0]
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
        assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)


def test_token_is_required_on_every_route_but_health_checks(secure):
    with httpx.Client(base_url=secure.url, timeout=60) as anon:
        assert anon.get("/.well-known/live").status_code == 204
        assert anon.get("/.well-known/ready").status_code == 204
        for method, path in [("GET", "/meta"), ("POST", "/vectorize"), ("POST", "/search"), ("GET", "/docs"),
                             ("GET", "/openapi.json")]:
            r = anon.request(method, path)
            assert r.status_code == 401, path
            assert "bearer token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = anon.post("/vectorize", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        r = anon.post("/v1/embeddings", json={"input": "x"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        ok = anon.post("/vectorize", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


# ---- OpenAI /v1/embeddings ------------------------------------------------------------------------------------------
def test_openai_request_shape_float_and_base64(client, model):
    r = client.post("/v1/embeddings", json={"model": "bindkit", "input": ["a dog", "a cat"],
                                            "encoding_format": "float"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == "bindkit"
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    want = model.embed(text=["a dog", "a cat"], show_progress_bar=False)["text"]
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], want, atol=TOL, rtol=0)
    r64 = client.post("/v1/embeddings", json={"model": "bindkit", "input": "a dog", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(r64.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, want[0], atol=TOL, rtol=0)


def test_openai_media_as_data_uris(client, model, media):
    for kind, mime in [("image", "image/png"), ("imu", "text/csv"), ("audio", "audio/wav")]:
        r = client.post("/v1/embeddings", json={"model": "m", "modality": kind,
                                                "input": [data_uri(media[kind], mime)]})
        assert r.status_code == 200, r.text
        want = model.embed(**{kind: [media[kind]]}, show_progress_bar=False, strict=True)[kind][0]
        np.testing.assert_allclose(r.json()["data"][0]["embedding"], want, atol=TOL, rtol=0)


@pytest.mark.parametrize("body, status, param", [
    ({"input": "x", "modality": "smell"}, 400, "modality"),
    ({"input": []}, 400, "input"),
    ({"input": [1, 2, 3]}, 400, "input"),  # token ids: see tests/test_serve_http.py
    ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "x", "dimensions": 7}, 400, "dimensions"),
    ({"input": ["data:image/png;base64,@@@"], "modality": "image"}, 400, "input[0]"),
    ({"model": "m"}, 422, "input"),
])
def test_openai_errors_have_openais_shape(client, body, status, param):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]
    assert_healthy(client)


def test_openai_python_client(secure, model, media):
    openai = pytest.importorskip("openai")
    oc = openai.OpenAI(base_url=secure.url + "/v1", api_key=TOKEN, max_retries=0)
    res = oc.embeddings.create(model="bindkit", input=["a dog", "a cat"])  # the client asks for base64
    want = model.embed(text=["a dog", "a cat"], show_progress_bar=False)["text"]
    np.testing.assert_allclose([d.embedding for d in res.data], want, atol=TOL, rtol=0)
    res = oc.embeddings.create(model="bindkit", input=[data_uri(media["image"], "image/png")],
                               encoding_format="float", extra_body={"modality": "image"})
    np.testing.assert_allclose(res.data[0].embedding, model.embed(image=[media["image"]],
                               show_progress_bar=False)["image"][0], atol=TOL, rtol=0)
    bad = openai.OpenAI(base_url=secure.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="bindkit", input="x")
    with pytest.raises(openai.BadRequestError) as exc:
        oc.embeddings.create(model="bindkit", input="x", extra_body={"modality": "smell"})
    assert "smell" in str(exc.value)


# ---- /search, /add, /remove -----------------------------------------------------------------------------------------
def test_search_by_text_image_and_both(sclient, model):
    r = sclient.post("/search", json={"text": "a red square", "k": 2})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert set(res) == {"text", "image"}
    assert res["text"][0]["text"] == "a red square" and res["text"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert len(res["image"]) == 2 and {"id", "score", "uri", "metadata"} <= set(res["image"][0])
    red = png((200, 30, 30))
    res = sclient.post("/search", json={"image": b64(red), "k": 1, "modalities": ["image"]}).json()["results"]
    assert list(res) == ["image"] and res["image"][0]["metadata"] == {"n": 3}
    assert res["image"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    both = sclient.post("/search", json={"text": "a red square", "image": b64(red), "weights": {"text": 0.5},
                                         "k": 3, "where": {"n": {"$gte": 1}}}).json()["results"]
    assert all(h["metadata"]["n"] >= 1 for hits in both.values() for h in hits)


def test_search_errors(sclient, client):
    assert sclient.post("/search", json={}).status_code == 422
    r = sclient.post("/search", json={"text": "x", "weights": {"audio": 1}})
    assert r.status_code == 422 and "weights" in r.json()["error"]
    r = sclient.post("/search", json={"image": "@@@"})
    assert r.status_code == 400 and r.json()["error"].startswith("image:")
    r = sclient.post("/search", json={"text": "x", "modalities": ["smell"]})
    assert r.status_code == 422 and "smell" in r.json()["error"]
    r = sclient.post("/search", json={"text": "x", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]
    assert client.post("/search", json={"text": "x"}).status_code == 404  # no --index on that server
    assert client.post("/add", json={"items": []}).status_code == 404


def test_add_then_search_then_remove(sclient):
    r = sclient.post("/add", json={"items": [{"modality": "text", "text": "a green triangle", "metadata": {"n": 9}},
                                             {"modality": "thermal", "data": b64(thermal_png(5))}]})
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    assert len(ids) == 2
    hits = sclient.post("/search", json={"text": "a green triangle", "k": 1,
                                         "modalities": ["text"]}).json()["results"]["text"]
    assert hits[0]["id"] == ids[0]
    bad = sclient.post("/add", json={"items": [{"modality": "image", "data": b64(b"not an image")}]})
    assert bad.status_code == 422 and bad.json()["error"].startswith("items[0]")
    assert sclient.post("/remove", json={}).status_code == 422
    assert sclient.post("/remove", json={"ids": ids}).json() == {"removed": 2}
    hits = sclient.post("/search", json={"text": "a green triangle", "k": 5,
                                         "modalities": ["text"]}).json()["results"]["text"]
    assert ids[0] not in [h["id"] for h in hits]
