"""The serve command on a real socket: uvicorn, HTTP, shutdown that saves the index."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from server_helpers import API, DIM, MODEL_ID, near, unit

from faceid_sdk import FeatureCodec

SERVE = "import sys; from faceid_sdk._cli_server import serve; sys.exit(serve())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_over_real_http(tmp_path):
    """`serve` answers over HTTP on 127.0.0.1 and saves the index file when stopped."""
    port = free_port()
    store = tmp_path / "faces.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--store", str(store), "--model-id", MODEL_ID,
         "--dim", str(DIM), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}{API}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not start within 30 s"
            time.sleep(0.2)
        rng = np.random.default_rng(7)
        codec = FeatureCodec(MODEL_ID, DIM)
        face = unit(rng)[0]
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/model").json()["model_id"] == MODEL_ID
            r = http.post("/enroll", json={"identity": "alice",
                                           "features": [codec.encode_text(face)]})
            assert r.status_code == 201, r.text
            r = http.post("/identify", json={"features": codec.encode_text(near(face, rng))})
            assert r.json()["identity"] == "alice"
            assert "distance" not in r.json()
            r = http.post("/identify", content=b"\xff\xd8\xff" + bytes(64),
                          headers={"content-type": "image/jpeg"})
            assert r.status_code == 415
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert '"event":"identify"' in stderr and '"decision":"recognised"' in stderr
    assert (tmp_path / "faces.db.index").exists()
