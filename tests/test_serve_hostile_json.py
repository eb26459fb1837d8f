"""A body that parses never gets a 500: filters over the limits of bindkit.index.where, JSON nested 100,000 deep, an
integer of 5,001 digits — each is a 4xx with a message that says what is wrong (real uvicorn server, real index)."""

from __future__ import annotations

import httpx
import pytest

import bindkit
from bindkit.cli.serve import resolve_model_spec
from bindkit.serve import ServeConfig, create_app
from serve_helpers import ServerThread, write_tiny_model


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tiny = write_tiny_model(tmp_path_factory.mktemp("model") / "tiny_random")
    card, weights = resolve_model_spec(str(tiny), None)
    model = bindkit.load_model(card, weights=weights, modalities=["text"])
    path = tmp_path_factory.mktemp("index") / "idx"
    with bindkit.Index.create(path, model=model) as index:
        index.add(["a red square", "a blue circle"], modality="text", metadata=[{"n": 0}, {"n": 1}])
    config = ServeConfig(index_dir=str(path), allow_writes=True)
    with ServerThread(create_app(config, model=model)) as server, \
            httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def _nested(depth: int) -> dict:
    w: dict = {"n": 0}
    for _ in range(depth):
        w = {"$and": [w]}
    return w


@pytest.mark.parametrize("where, words", [
    ({"n": {"$in": list(range(600))}}, "at most 256 values in one $in"),
    ({"$or": [{"n": i} for i in range(500)]}, "at most 256 filters in one $or"),
    (_nested(150), "at most 32 levels"),
    ({"n": 2**63}, "integer SQLite can store"),
    ({"n": {"$gt": -(2**64)}}, "integer SQLite can store"),
])
@pytest.mark.parametrize("route", ["/search", "/remove"])
def test_filters_over_a_limit_are_422_with_the_limit(client, route, where, words):
    body = {"text": "a red square", "where": where} if route == "/search" else {"where": where}
    r = client.post(route, json=body)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]


def test_a_filter_at_the_limits_is_answered(client):
    r = client.post("/search", json={"text": "a red square", "where": {"$or": [_nested(31), {"n": {"$in":
                                     list(range(256))}}]}})
    assert r.status_code == 200, r.text
    assert {h["metadata"]["n"] for h in r.json()["results"]["text"]} == {0, 1}


def _deep(n: int) -> bytes:
    return b'{"text": "a", "where": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize("route", ["/search", "/vectorize", "/v1/embeddings", "/add", "/remove"])
def test_json_nested_100000_deep_is_400(client, route):
    r = client.post(route, content=_deep(100_000))
    assert r.status_code == 400, r.text
    body = r.json()
    message = body["error"]["message"] if route.startswith("/v1/") else body["error"]
    assert "too deeply" in message


@pytest.mark.parametrize("route", ["/search", "/v1/embeddings"])
def test_json_nested_900_deep_parses_and_is_a_4xx(client, route):
    r = client.post(route, content=_deep(900))
    assert 400 <= r.status_code < 500, r.text


def test_an_integer_of_5001_digits_is_400_naming_the_digit_limit(client):
    r = client.post("/v1/embeddings", content=b'{"input": "a dog", "dimensions": ' + b"7" * 5001 + b"}")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "4300 digits" in err["message"]
    assert "set_int_max_str_digits" not in err["message"]  # advice for the server's code, not for the client
    r = client.post("/v1/embeddings", json={"input": "a dog", "dimensions": 10**300})
    assert r.status_code == 400 and "dimensions" in r.text


def test_metadata_nested_deep_is_a_4xx_and_the_server_stays_healthy(client):
    meta: dict = {"x": 1}
    for _ in range(900):
        meta = {"a": meta}
    r = client.post("/add", json={"items": [{"modality": "text", "text": "deep", "metadata": meta}]})
    assert r.status_code < 500, r.text
    assert client.post("/search", json={"text": "a red square"}).status_code == 200


# ---- tokens that no client could send are refused at start ---------------------------------------------------
@pytest.mark.parametrize("token", [" s3cret", "s3cret ", "s3 cret", "pässword", "tok\n", ""])
def test_unusable_tokens_are_refused_by_create_app(token):
    from bindkit.errors import ArgumentError

    with pytest.raises(ArgumentError, match="ServeConfig.token"):
        create_app(ServeConfig(token=token), loader=lambda: None)


@pytest.mark.parametrize("how", ["--token", "env"])
def test_cli_refuses_an_unusable_token_before_loading_anything(how):
    import subprocess
    import sys

    from test_serve_cli import _env

    env = _env(BINDKIT_TOKEN="pässword") if how == "env" else _env()
    args = ["--token", "s3cret "] if how == "--token" else []
    r = subprocess.run([sys.executable, "-m", "bindkit", "serve", "--model", "imagebind_tiny", *args],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert ("$BINDKIT_TOKEN" if how == "env" else "--token") in r.stderr
    assert ("non-ASCII" if how == "env" else "whitespace") in r.stderr and "Traceback" not in r.stderr
    assert "loading" not in r.stderr  # refused before the server starts
