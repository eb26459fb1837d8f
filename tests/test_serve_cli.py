"""``bindkit serve`` as users start it: a subprocess on a free port, the model loaded from a converted folder,
the token from $BINDKIT_TOKEN, graceful shutdown on SIGTERM, and the refusal to expose an open server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

import bindkit
from serve_helpers import b64, imu_csv, png, wait_ready, write_tiny_model

REPO = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BINDKIT_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_non_loopback_host_without_token_needs_insecure():
    r = subprocess.run([sys.executable, "-m", "bindkit", "serve", "--host", "0.0.0.0", "--model", "imagebind_tiny"],
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--insecure" in r.stderr and "BINDKIT_TOKEN" in r.stderr


def test_missing_model_folder_card_is_explained(tmp_path):
    (tmp_path / "weights_only").mkdir()
    r = subprocess.run([sys.executable, "-m", "bindkit", "serve", "--model", str(tmp_path / "weights_only"),
                        "--port", str(_free_port())], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "card.json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_serves_a_converted_folder_and_shuts_down_gracefully(tmp_path):
    folder = write_tiny_model(tmp_path / "tiny")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bindkit", "serve", "--model", str(folder), "--port", str(port),
                             "--max-wait-ms", "200"],
                            env=_env(BINDKIT_TOKEN="tok"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, proc=proc)
        auth = {"Authorization": "Bearer tok"}
        assert httpx.get(url + "/meta").status_code == 401
        meta = httpx.get(url + "/meta", headers=auth).json()
        assert meta["model"] == "imagebind_tiny" and meta["weights"] == str(folder)
        body = {"texts": ["a dog"], "images": [b64(png())], "imu": [b64(imu_csv())]}
        r = httpx.post(url + "/vectorize", json=body, headers=auth, timeout=120)
        assert r.status_code == 200
        model = bindkit.load_model(folder / "card.json", weights=folder)
        want = model.embed(image=[png()], show_progress_bar=False)["image"][0]
        np.testing.assert_allclose(r.json()["imageVectors"][0], want, atol=1e-5, rtol=0)

        # SIGTERM while a request waits for its batch (--max-wait-ms 200): it is still answered
        result: dict = {}

        def call() -> None:
            result["r"] = httpx.post(url + "/vectorize", json=body, headers=auth, timeout=120)

        t = threading.Thread(target=call)
        t.start()
        t.join(0.1)
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert result["r"].status_code == 200
        assert len(result["r"].json()["imuVectors"]) == 1
        assert proc.wait(60) == 0
        # one access-log line per request on stderr (the health checks polled by wait_ready are DEBUG)
        log = [line for line in proc.stderr.read().splitlines() if "items=" in line]
        assert [line.split()[1:4] for line in log] == [["GET", "/meta", "401"], ["GET", "/meta", "200"],
                                                        ["POST", "/vectorize", "200"], ["POST", "/vectorize", "200"]]
        assert log[2].startswith("INFO:") and " items=3 " in log[2] and "ms client=127.0.0.1:" in log[2]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
