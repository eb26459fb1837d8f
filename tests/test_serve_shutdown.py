"""SIGTERM with a short --graceful-timeout: a request still running when it runs out is answered with a JSON 503
(not uvicorn's text/plain 500), and the server exits without waiting for that request's work."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve_helpers import read_response, wait_ready, write_tiny_model
from test_serve_cli import _env, _free_port

PROC_TCP = Path("/proc/net/tcp")


def _server_has_read(server_port: int, client_port: int) -> bool:
    """Whether the server's end of our loopback connection has read everything we sent (its receive queue is
    empty), from the kernel's table: the request is then in the server's hands, not in a buffer."""
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return int(queues.split(":")[1], 16) == 0
    return False


@pytest.mark.skipif(not PROC_TCP.is_file(), reason="needs Linux's /proc/net/tcp to see that the request was read")
def test_graceful_timeout_answers_in_flight_requests_with_json_503_and_exits(tmp_path):
    folder = write_tiny_model(tmp_path / "tiny")
    port = _free_port()
    # --max-wait-ms 60000: a lone request waits a minute for its batch to fill, so it is in flight at SIGTERM
    proc = subprocess.Popen([sys.executable, "-m", "bindkit", "serve", "--model", str(folder), "--port", str(port),
                             "--max-wait-ms", "60000", "--graceful-timeout", "2"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc=proc)
        body = json.dumps({"texts": ["a dog"]}).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        with sock:
            sock.sendall(b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            client_port = sock.getsockname()[1]
            while not _server_has_read(port, client_port):  # polls a state; the pause only spares the CPU
                assert proc.poll() is None
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            status, headers, raw = read_response(sock)
        assert status == 503, raw
        assert headers["content-type"] == "application/json" and headers.get("retry-after")
        assert "shutting down" in json.loads(raw)["error"]
        # it exits after the graceful timeout, long before the request's minute would have passed
        assert proc.wait(timeout=45) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err, err[-3000:]
        assert "POST /vectorize 503 items=1 " in err, err[-3000:]  # the access log tells what the client got
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
