"""A full disk and a read-only disk: a clear StoreError, nothing acknowledged lost, store opens."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import Enroller, StoreError, rebuild_index
from faceid_sdk._enroll import IndexCacheWarning
from faceid_sdk.testing import unit_vectors

from .conftest import remount

MODEL_ID = "fault-model-128"
DIM = 128


def _vectors(i: int) -> np.ndarray:
    return unit_vectors(4, DIM, seed=i)


def _check_all_present(store: Path, acked: list[int]) -> None:
    """Every acknowledged identity is stored and identified from each of its templates."""
    enroller = Enroller(store, MODEL_ID, DIM)
    try:
        names = {r.identity for r in enroller.identities()}
        assert {f"p{i}" for i in acked} <= names
        for i in acked:
            results = enroller.identify_batch(_vectors(i))
            assert all(r.identity == f"p{i}" and r.accepted for r in results)
    finally:
        enroller._store.close()  # no index save: the disk may still be full


def test_full_disk_is_a_clear_error_and_loses_nothing(small_fs: Path) -> None:
    """Enroll until a 1 MiB disk is full: StoreError, the store still opens with every ack."""
    store = small_fs / "faces.db"
    filler = small_fs / "filler"  # deleted later to "free disk space"
    filler.write_bytes(b"\0" * 400_000)
    acked: list[int] = []
    enroller = Enroller(store, MODEL_ID, DIM)
    error: StoreError | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(10_000):
            try:
                enroller.enroll(f"p{i}", _vectors(i))
            except StoreError as exc:
                error = exc
                break
            acked.append(i)
    assert error is not None, "the disk never filled"
    message = str(error)
    assert "could not be written" in message and "Free disk space" in message
    assert "nothing from this call was stored" in message
    assert len(acked) > 10
    # The failed call left no trace in the matcher either.
    assert f"p{len(acked)}" not in enroller and len(enroller) == len(acked)
    # Saving the index cache fails cleanly too: a warning, not an error (the index is only
    # a cache, everything acknowledged is in the store), and no temporary file behind.
    with pytest.warns(IndexCacheWarning, match="next open rebuilds"):
        enroller.close()
    assert not [p for p in small_fs.iterdir() if p.name.endswith(".tmp")]
    # Still full: the store opens (the index is rebuilt in memory) and holds every ack.
    _check_all_present(store, acked)
    # Free space: writing works again and the index file can be saved.
    filler.unlink()
    with Enroller(store, MODEL_ID, DIM) as reopened:
        reopened.remove(f"p{acked[0]}")
        reopened.remove(f"p{acked[1]}")
        reopened.enroll("late", _vectors(99_999))
    assert rebuild_index(store).previous == "ok"
    _check_all_present(store, acked[2:])
    print(f"\nfull disk: {len(acked)} enrollments acknowledged before ENOSPC, 0 lost")


def test_read_only_disk_is_a_clear_error_and_loses_nothing(small_fs: Path) -> None:
    """On a read-only remount, writes fail with StoreError and every stored identity survives."""
    store = small_fs / "faces.db"
    acked = list(range(5))
    with Enroller(store, MODEL_ID, DIM) as enroller:
        for i in acked:
            enroller.enroll(f"p{i}", _vectors(i))
    remount(small_fs, "ro")
    try:
        try:
            enroller = Enroller(store, MODEL_ID, DIM)
        except StoreError as exc:
            # SQLite may refuse to open a WAL database it cannot write: also a clear error.
            assert "writable disk" in str(exc) or "could not be written" in str(exc)
            print("\nread-only disk: refused at open with StoreError")
        else:
            with pytest.raises(StoreError, match="could not be written"):
                enroller.enroll("new", _vectors(50))
            with pytest.raises(StoreError):
                enroller.remove("p0")
            assert len(enroller) == len(acked)
            with pytest.raises(StoreError):
                enroller.close()
            print("\nread-only disk: opened; enroll, remove and index save refused")
    finally:
        remount(small_fs, "rw")
    _check_all_present(store, acked)
