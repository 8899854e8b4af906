"""The store is the root of trust: an index that is not exactly the store's is never believed.

Forged manifests (checksums recomputed), restored copies of the store, a store behind its
index (lost writes), a FIFO at the index path and orphaned temporaries from a killed save.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk import Enroller, StoreError, rebuild_index
from faceid_sdk._enroll import index_path_for
from faceid_sdk.cli import main
from faceid_sdk.testing import near, unit_vectors

from ..conftest import DIM, MODEL_ID

PREAMBLE = struct.Struct("<8sII32s")


def _make_store(path: Path) -> np.ndarray:
    templates = unit_vectors(4, DIM, seed=7)
    with Enroller(path, MODEL_ID, DIM) as enroller:
        enroller.enroll("p0", templates[0:2])
        enroller.enroll("p1", templates[2:4])
    return templates


def _rewrite_manifest(index: Path, edit) -> None:
    """Edit an index file's manifest and recompute its SHA-256, as a forger with write access
    to the index (not to the store) would."""
    data = index.read_bytes()
    magic, version, length, _ = PREAMBLE.unpack_from(data)
    manifest = json.loads(data[PREAMBLE.size:PREAMBLE.size + length])
    edit(manifest)
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    head = PREAMBLE.pack(magic, version, len(raw), hashlib.sha256(raw).digest())
    index.write_bytes(head + raw + data[PREAMBLE.size + length:])


def test_forged_manifest_is_detected_and_rebuilt(tmp_path: Path) -> None:
    """Swap two people's template ids in the manifest: p1's face must not become p0's."""
    store = tmp_path / "faces.db"
    templates = _make_store(store)

    def swap(manifest: dict) -> None:
        ids = manifest["identities"]
        ids["p0"], ids["p1"] = ids["p1"], ids["p0"]

    _rewrite_manifest(index_path_for(store), swap)
    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status == "mismatch"
        assert enroller.identify(near(templates[2], 0.1, seed=1)).identity == "p1"
        assert enroller.verify(near(templates[2], 0.1, seed=1), "p0").accepted is False
    _rewrite_manifest(index_path_for(store), swap)
    report_before = rebuild_index(store)
    assert report_before.previous == "mismatch" and "altered" in report_before.reason
    assert rebuild_index(store).previous == "ok"


def test_restored_store_copy_with_the_same_sequence_is_not_believed(tmp_path: Path) -> None:
    """A backup restored over the store, at the index's sequence but with other content."""
    store = tmp_path / "faces.db"
    templates = _make_store(store)
    backup = tmp_path / "backup.db"
    shutil.copy(store, backup)
    with Enroller(store, MODEL_ID, DIM) as enroller:  # one write each way: same sequence
        enroller.enroll("p2", unit_vectors(1, DIM, seed=8))
    with Enroller(backup, MODEL_ID, DIM, index_path=tmp_path / "scratch.index") as other:
        other.replace("p0", near(templates[0], 0.05, seed=3))
    shutil.copy(backup, store)  # same store id, same sequence as the saved index
    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status == "mismatch"
        assert "p2" not in enroller and enroller.matcher.template_count("p0") == 1


def test_store_behind_its_index_is_refused_loudly(tmp_path: Path) -> None:
    """Acknowledged writes missing from the store (an older copy restored, a lost WAL) are an
    error with exit 74, never silently served; rebuild-index accepts the store as it is."""
    store = tmp_path / "faces.db"
    _make_store(store)
    older = tmp_path / "older.db"
    shutil.copy(store, older)
    with Enroller(store, MODEL_ID, DIM) as enroller:
        enroller.enroll("p2", unit_vectors(1, DIM, seed=8))  # the index now knows p2
    shutil.copy(older, store)
    with pytest.raises(StoreError, match="acknowledged writes are missing"):
        Enroller(store, MODEL_ID, DIM)
    result = CliRunner().invoke(main, ["list", "--store", str(store)])
    assert result.exit_code == 74
    assert "acknowledged writes are missing" in result.output and "Traceback" not in result.output
    report = rebuild_index(store)
    assert report.previous == "ahead"
    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status == "ok" and "p2" not in enroller


def test_deleted_wal_with_unsaved_index_is_caught(tmp_path: Path) -> None:
    """Writes committed to the WAL after the index was saved, WAL deleted: the store went back
    in time below the index's sequence: refused, not served."""
    store = tmp_path / "faces.db"
    _make_store(store)
    enroller = Enroller(store, MODEL_ID, DIM)
    enroller._store._db.execute("PRAGMA wal_autocheckpoint=0")
    enroller.enroll("p2", unit_vectors(1, DIM, seed=8))
    enroller.save_index()
    # Kill without a checkpoint: copy the database file alone, as if the -wal were deleted.
    lost = tmp_path / "lost.db"
    shutil.copy(store, lost)
    shutil.copy(index_path_for(store), index_path_for(lost))
    enroller.close()
    with pytest.raises(StoreError, match="acknowledged writes are missing"):
        Enroller(lost, MODEL_ID, DIM)


def test_a_fifo_at_the_index_path_does_not_hang_anything(tmp_path: Path) -> None:
    store = tmp_path / "faces.db"
    templates = _make_store(store)
    index = index_path_for(store)
    index.unlink()
    os.mkfifo(index)
    probe = tmp_path / "probe.npy"
    np.save(probe, templates[:1])
    env = {**os.environ, "FACEID_STORE": str(store)}
    for args in (["info"], ["identify", "--vectors", str(probe)], ["rebuild-index"]):
        done = subprocess.run([sys.executable, "-m", "faceid_sdk", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert index.is_file()
    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status == "ok"


def test_orphaned_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A save killed mid-write leaves `.faces.db.index.*.tmp` holding templates: cleaned at
    the next open; a temporary a live writer holds (locked) or just made is left alone."""
    import fcntl

    store = tmp_path / "faces.db"
    _make_store(store)
    index = index_path_for(store)
    orphan = tmp_path / f".{index.name}.abc123.tmp"
    orphan.write_bytes(index.read_bytes())
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    live = tmp_path / f".{index.name}.live.tmp"
    live.write_bytes(b"being written")
    os.utime(live, (old, old))
    young = tmp_path / f".{index.name}.young.tmp"
    young.write_bytes(b"just made")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        Enroller(store, MODEL_ID, DIM).close()
        assert not orphan.exists()
        assert live.exists() and young.exists()


def test_garbled_store_is_exit_74_without_traceback(tmp_path: Path) -> None:
    """A damaged SQLite page is a store error (exit 74), not 'not recognised' (exit 1)."""
    store = tmp_path / "faces.db"
    templates = _make_store(store)
    with Enroller(store, MODEL_ID, DIM) as enroller:
        for i in range(40):
            enroller.enroll(f"x{i}", unit_vectors(2, DIM, seed=100 + i))
    db = sqlite3.connect(store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    index_path_for(store).unlink()  # every command must read the templates
    data = bytearray(store.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the first
        data[offset:offset + 100] = b"\xff" * 100
    store.write_bytes(bytes(data))
    probe = tmp_path / "probe.npy"
    np.save(probe, templates[:1])
    for args in (["identify", "--vectors", str(probe)], ["list"], ["rebuild-index"]):
        result = CliRunner().invoke(main, [*args, "--store", str(store)])
        assert result.exit_code == 74, (args, result.output)
        assert "Traceback" not in result.output and "store" in result.output
    # The server refuses to start rather than answer from what still reads.
    served = subprocess.run([sys.executable, "-m", "faceid_sdk", "serve", "--store", str(store),
                             "--port", "0"], capture_output=True, text=True, timeout=120)
    assert served.returncode == 74, served.stderr
    assert "Traceback" not in served.stderr
