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


def wait_until_healthy(proc: subprocess.Popen[str], base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"server did not start within {seconds:g} s"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str], seconds: float) -> str:
    """SIGINT, as Ctrl-C would; return stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    return stderr


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
        wait_until_healthy(proc, base, 30)
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
        stderr = stop(proc, 20)
    assert proc.returncode == 0, stderr
    assert '"event":"identify"' in stderr and '"decision":"recognised"' in stderr
    assert (tmp_path / "faces.db.index").exists()


@pytest.mark.slow
def test_workers_share_one_gallery(tmp_path):
    """`serve --workers 2`: whichever process answers, it sees the other's enrollments
    and removals at once (each request on a fresh connection, so both workers answer)."""
    port = free_port()
    store = tmp_path / "faces.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--store", str(store), "--model-id", MODEL_ID,
         "--dim", str(DIM), "--port", str(port), "--log-level", "warning", "--rate", "0",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}{API}"
    rng = np.random.default_rng(11)
    codec = FeatureCodec(MODEL_ID, DIM)
    faces = unit(rng, 12)
    try:
        wait_until_healthy(proc, base, 60)
        for round_, face in enumerate(faces):
            name = f"person-{round_}"
            r = httpx.post(f"{base}/enroll", json={"identity": name,
                                                   "features": [codec.encode_text(face)]})
            assert r.status_code == 201, r.text
            for _ in range(4):  # fresh connections: any worker may answer
                r = httpx.post(f"{base}/identify", json={"features": codec.encode_text(face)})
                assert r.json()["identity"] == name, (round_, r.text)
            r = httpx.delete(f"{base}/identities/{name}")
            assert r.status_code == 200, r.text
            for _ in range(4):
                r = httpx.post(f"{base}/identify", json={"features": codec.encode_text(face)})
                assert r.json()["identity"] is None, (round_, r.text)
    finally:
        stderr = stop(proc, 30)
    assert proc.returncode == 0, stderr


def test_workers_refuse_challenges(tmp_path):
    """Nonces live in one process: --workers 2 with --require-challenge is a usage error."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE, "--store", str(tmp_path / "s.db"), "--model-id",
         MODEL_ID, "--dim", str(DIM), "--workers", "2", "--require-challenge"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "--require-challenge" in result.stderr
