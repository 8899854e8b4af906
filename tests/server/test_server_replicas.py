"""Two `serve` processes on one store answer what actually happened, and SIGTERM saves.

The races of the hostile campaign, against real processes on loopback: one replica enrolls a
name while the other deletes it (the delete's answer must match the final state), and both
create one name at once (exactly one is told ``created``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from server_helpers import API, DIM, MODEL_ID, unit
from test_server_live import SERVE, free_port, wait_until_healthy

from faceid_sdk import Enroller, FeatureCodec
from faceid_sdk.matching import read_manifest


def _start(store, port, cwd):
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, "--store", str(store), "--model-id", MODEL_ID,
         "--dim", str(DIM), "--port", str(port), "--log-level", "warning", "--rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )


def _stop(proc, sig=signal.SIGINT, seconds=30.0) -> str:
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    return stderr


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store(request, tmp_path):
    """One store for several replicas: an SQLite file (one host) or PostgreSQL (many)."""
    if request.param == "sqlite":
        location = str(tmp_path / "faces.db")
    else:
        location = request.getfixturevalue("postgres_url")
    Enroller(location, MODEL_ID, DIM).close()
    return location


@pytest.mark.slow
def test_two_replicas_answer_what_happened(tmp_path, shared_store):
    store = shared_store
    ports = [free_port(), free_port()]
    procs = [_start(store, port, tmp_path) for port in ports]
    codec = FeatureCodec(MODEL_ID, DIM)
    rng = np.random.default_rng(3)
    mismatches, double_creates = [], []
    try:
        bases = [f"http://127.0.0.1:{port}{API}" for port in ports]
        for proc, base in zip(procs, bases, strict=True):
            wait_until_healthy(proc, base, 60)
        a, b = (httpx.Client(base_url=base, timeout=10) for base in bases)
        with a, b, ThreadPoolExecutor(2) as pool:
            for round_ in range(60):
                body = {"identity": "x", "features": [codec.encode_text(unit(rng)[0])]}
                enrolled = pool.submit(a.post, "/enroll", json=body)
                deleted = pool.submit(b.delete, "/identities/x")
                assert enrolled.result().status_code in (200, 201)
                status = deleted.result().status_code
                assert status in (200, 404), deleted.result().text
                present = any(r["identity"] == "x"
                              for r in a.get("/identities").json()["identities"])
                if (status == 404) != present:
                    mismatches.append((round_, status, present))
                if present:
                    assert b.delete("/identities/x").status_code == 200
                name = f"y{round_}"
                first = {"identity": name, "features": [codec.encode_text(unit(rng)[0])]}
                second = {"identity": name, "features": [codec.encode_text(unit(rng)[0])]}
                answers = [f.result().json() for f in (pool.submit(a.post, "/enroll", json=first),
                                                       pool.submit(b.post, "/enroll", json=second))]
                if sum(answer["created"] for answer in answers) != 1:
                    double_creates.append((round_, answers))
    finally:
        for proc in procs:
            _stop(proc)
    assert not mismatches, f"delete answers contradicting the store: {mismatches}"
    assert not double_creates, f"a name created twice: {double_creates}"


@pytest.mark.slow
def test_a_killed_replica_loses_nothing_acknowledged(tmp_path, shared_store):
    """SIGKILL one replica right after it acknowledged writes: the other has every one."""
    ports = [free_port(), free_port()]
    procs = [_start(shared_store, port, tmp_path) for port in ports]
    codec = FeatureCodec(MODEL_ID, DIM)
    rng = np.random.default_rng(11)
    faces = unit(rng, 20)
    try:
        bases = [f"http://127.0.0.1:{port}{API}" for port in ports]
        for proc, base in zip(procs, bases, strict=True):
            wait_until_healthy(proc, base, 60)
        with httpx.Client(base_url=bases[0], timeout=10) as a:
            for i, face in enumerate(faces):
                body = {"identity": f"k{i}", "features": [codec.encode_text(face)]}
                assert a.post("/enroll", json=body).status_code == 201
        procs[0].kill()
        procs[0].wait(timeout=10)
        with httpx.Client(base_url=bases[1], timeout=10) as b:
            for i, face in enumerate(faces):
                answer = b.post("/identify", json={"features": codec.encode_text(face)}).json()
                assert answer["identity"] == f"k{i}", answer
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
    with Enroller.open(shared_store) as enroller:
        assert len(enroller) == len(faces)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signals_shut_down_cleanly_and_save_the_index(tmp_path, sig):
    """`docker stop` and `systemctl stop` send SIGTERM: it must save like Ctrl-C."""
    store = tmp_path / "faces.db"
    port = free_port()
    proc = _start(store, port, tmp_path)
    base = f"http://127.0.0.1:{port}{API}"
    codec = FeatureCodec(MODEL_ID, DIM)
    try:
        wait_until_healthy(proc, base, 60)
        face = unit(np.random.default_rng(1))[0]
        body = {"identity": "alice", "features": [codec.encode_text(face)]}
        assert httpx.post(f"{base}/enroll", json=body, timeout=10).status_code == 201
    finally:
        stderr = _stop(proc, sig)
    assert proc.returncode == 0, stderr
    index = tmp_path / "faces.db.index"
    assert index.exists(), stderr
    assert read_manifest(index).metadata["sequence"] == 1
    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status == "ok" and "alice" in enroller


@pytest.mark.slow
def test_serve_answers_from_a_milvus_gallery(tmp_path):
    """`serve --index milvus`: the gallery lives in Milvus (milvus-lite here), the store stays
    the store of record, and a write made while the server was down is reconciled at start."""
    pytest.importorskip("milvus_lite", reason="needs faceid-sdk[milvus]")
    store = tmp_path / "faces.db"
    rng = np.random.default_rng(5)
    alice, bob = unit(rng, 2)
    codec = FeatureCodec(MODEL_ID, DIM)
    for round_ in range(2):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "--store", str(store), "--model-id", MODEL_ID,
             "--dim", str(DIM), "--port", str(port), "--log-level", "warning", "--rate", "0",
             "--index", "milvus"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}{API}"
        try:
            wait_until_healthy(proc, base, 90)
            with httpx.Client(base_url=base, timeout=20) as http:
                if round_ == 0:
                    r = http.post("/enroll", json={"identity": "alice",
                                                   "features": [codec.encode_text(alice)]})
                    assert r.status_code == 201, r.text
                answer = http.post("/identify", json={"features": codec.encode_text(alice)})
                assert answer.json()["identity"] == "alice"
                answer = http.post("/identify", json={"features": codec.encode_text(bob)})
                assert answer.json()["recognised"] is (round_ == 1), answer.text
        finally:
            stderr = _stop(proc)
        assert proc.returncode == 0, stderr
        assert (tmp_path / "faces.db.milvus.db").exists()
        if round_ == 0:
            # Written by another process with the flat index while the server is down.
            with Enroller(store, MODEL_ID, DIM) as enroller:
                enroller.enroll("bob", bob)
