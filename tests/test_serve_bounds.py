"""Bounds of ``bindkit serve`` under hostile clients (issue 19, items 1 and 2), through a real uvicorn server on a
loopback port and raw sockets: media whose headers lie are refused while decoding (413), a request's decoded
bytes are budgeted, idle and slow clients are cut off by the header and body timeouts, request bytes in flight
are capped (a request waits for room), connections past the cap are refused — and ``/.well-known/live`` keeps
answering throughout. Nothing here waits a fixed time: every wait is on an event, with generous timeouts."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

import bindkit
from bindkit.cli.serve import resolve_model_spec
from bindkit.serve import Limits, ServeConfig, ServerBounds, create_app
from hostile_media import lying_audio
from serve_helpers import ServerThread, b64, png, write_tiny_model

WAIT = 60.0  # upper bound of any wait on the server (never reached when the code is right)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = write_tiny_model(tmp_path_factory.mktemp("model") / "tiny_random")
    card, weights = resolve_model_spec(str(folder), None)
    return bindkit.load_model(card, weights=weights)


def serve(model, limits: Limits | None = None, **bounds) -> ServerThread:
    return ServerThread(create_app(ServeConfig(limits=limits or Limits(), bounds=ServerBounds(**bounds)), model=model))


def live(url: str) -> int:
    return httpx.get(url + "/.well-known/live", timeout=WAIT).status_code


def raw(port: int, data: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    if data:
        s.sendall(data)
    return s


def read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a timeout here fails the test)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_audio_whose_header_understates_its_length_is_413_while_decoding(model):
    data = lying_audio(60.0, claimed_seconds=1.0, rate=8000)  # passes the header check of --max-audio-seconds 5
    with serve(model, Limits(max_audio_seconds=5.0)) as srv:
        r = httpx.post(srv.url + "/vectorize", json={"audio": [b64(data)]}, timeout=WAIT)
        assert r.status_code == 413, r.text
        assert "audio[0]" in r.json()["error"] and "counted while decoding" in r.json()["error"]
        assert "--max-audio-seconds" in r.json()["error"]
        ok = httpx.post(srv.url + "/vectorize", json={"audio": [b64(lying_audio(3.0, 3.0))]}, timeout=WAIT)
        assert ok.status_code == 200, ok.text


def test_decoded_bytes_of_a_request_are_budgeted(model):
    image = png(size=(640, 480))  # 921,600 bytes decoded
    with serve(model, Limits(max_decoded_bytes=2_000_000)) as srv:
        r = httpx.post(srv.url + "/vectorize", json={"images": [b64(image)] * 3}, timeout=WAIT)
        assert r.status_code == 413, r.text
        assert "--max-decoded-size" in r.json()["error"]
        assert httpx.post(srv.url + "/vectorize", json={"images": [b64(image)] * 2}, timeout=WAIT).status_code == 200


def test_idle_and_slow_clients_are_cut_off_while_live_answers(model):
    with serve(model, header_timeout=1.0, body_timeout=1.0) as srv:
        idle = [raw(srv.port) for _ in range(200)]
        trickle = raw(srv.port, b"POST /vectorize HTTP/1.1\r\nHo")  # headers never finished
        slow = raw(srv.port, b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"texts\"")
        assert all(live(srv.url) == 204 for _ in range(5))
        answer = read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"--body-timeout" in answer
        assert read_all(trickle) == b""  # closed by the header timeout
        for s in idle:
            assert read_all(s) == b""
            s.close()
        trickle.close()
        slow.close()
        assert live(srv.url) == 204


def test_request_bytes_in_flight_are_capped_and_a_request_waits_for_room(model):
    body = json.dumps({"texts": ["x" * 100] * 8, "pad": "y" * 200_000}).encode()
    with serve(model, Limits(max_body_bytes=1_000_000), max_inflight_bytes=300_000, body_timeout=2.0,
               queue_timeout=WAIT) as srv:
        # A declares 250,000 bytes, sends a few and stalls: it holds its reservation until its body timeout
        stalled = raw(srv.port, b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 250000\r\n\r\n{")
        deadline = time.monotonic() + WAIT
        while httpx.get(srv.url + "/meta", timeout=WAIT).json()["bounds"]["inflight_bytes"] < 250_000:
            assert time.monotonic() < deadline, "the stalled request never reserved its bytes"
        events: list[tuple[str, int]] = []
        done = threading.Event()

        def post() -> None:
            r = httpx.post(srv.url + "/vectorize", content=body, timeout=WAIT)
            events.append(("waiting request", r.status_code))
            done.set()

        t = threading.Thread(target=post)
        t.start()
        assert live(srv.url) == 204  # answered while a request waits for room
        answer = read_all(stalled)
        events.append(("stalled request", int(answer.split()[1])))
        assert done.wait(WAIT)
        t.join(WAIT)
        # the waiting request (250 KB + 250 KB > 300 KB) got room only once the stalled one was cut off
        assert events == [("stalled request", 408), ("waiting request", 200)]
        assert httpx.get(srv.url + "/meta", timeout=WAIT).json()["bounds"]["inflight_bytes"] == 0
        stalled.close()


def test_connections_past_the_cap_are_refused_and_live_answers_again(model):
    with serve(model, max_connections=8, header_timeout=WAIT) as srv:
        held = [raw(srv.port) for _ in range(8)]
        extra = raw(srv.port)
        answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503") and b"--max-connections" in answer, answer[:200]
        extra.close()
        for s in held:
            s.close()
        deadline = time.monotonic() + WAIT
        while True:  # the server notices the closed sockets on its own schedule
            try:
                if live(srv.url) == 204:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline


def test_body_larger_than_the_inflight_cap_still_passes_alone(model):
    body = json.dumps({"texts": ["a dog"], "pad": "y" * 50_000}).encode()
    with serve(model, max_inflight_bytes=10_000) as srv:
        r = httpx.post(srv.url + "/vectorize", content=body, timeout=WAIT)
        assert r.status_code == 200, r.text


def test_cli_bounds_options_are_checked_and_documented():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = subprocess.run([sys.executable, "-m", "bindkit", "serve", "--header-timeout", "0"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--header-timeout" in r.stderr and "more than 0" in r.stderr
    help_text = subprocess.run([sys.executable, "-m", "bindkit", "serve", "--help"], env=env, capture_output=True,
                               text=True, timeout=120).stdout
    for option in ("--max-decoded-size", "--max-connections", "--max-inflight-size", "--header-timeout",
                   "--body-timeout", "--queue-timeout", "--keep-alive-timeout"):
        assert option in help_text


def test_add_is_bounded_by_the_same_per_request_decode_budget(model, tmp_path):
    """``/add`` decodes through the index, in its own threads: the request's budget reaches them (413 naming
    the item, nothing added), as on the embedding routes."""
    path = tmp_path / "idx"
    bindkit.Index.create(path, model=model).close()
    image = png(size=(640, 480))  # 921,600 bytes decoded
    config = ServeConfig(limits=Limits(max_decoded_bytes=2_000_000, max_audio_seconds=5.0), index_dir=str(path),
                         allow_writes=True)
    with ServerThread(create_app(config, model=model)) as srv:
        items = [{"modality": "image", "data": b64(png((10 * i, 30, 30), size=(640, 480)))} for i in range(3)]
        r = httpx.post(srv.url + "/add", json={"items": items}, timeout=WAIT)
        assert r.status_code == 413, r.text
        assert "items[2]" in r.json()["error"] and "--max-decoded-size" in r.json()["error"], r.text
        lying = {"modality": "audio", "data": b64(lying_audio(60.0, claimed_seconds=1.0, rate=8000))}
        r = httpx.post(srv.url + "/add", json={"items": [{"modality": "text", "text": "a dog"}, lying]},
                       timeout=WAIT)
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert "items[1]" in error and "counted while decoding" in error and "--max-audio-seconds" in error, error
        ok = httpx.post(srv.url + "/add", json={"items": [{"modality": "image", "data": b64(image)}] * 2},
                        timeout=WAIT)
        assert ok.status_code == 200, ok.text
    with bindkit.Index.open(path, model=model) as index:
        assert len(index) == 1  # only the accepted request's image (the same file twice: one item)


def test_header_deadlines_are_spread_so_idle_connections_do_not_reconnect_in_one_burst():
    import random

    from bindkit.serve.bounds import HEADER_TIMEOUT_SPREAD, header_deadline

    rng = random.Random(0)
    deadlines = [header_deadline(10.0, rng) for _ in range(1000)]
    assert min(deadlines) >= 10.0 and max(deadlines) <= 10.0 * (1 + HEADER_TIMEOUT_SPREAD)
    assert max(deadlines) - min(deadlines) > 10.0 * HEADER_TIMEOUT_SPREAD / 2  # not one instant for all
