"""Tests of atomic_write_bytes: old or new content after any failure, never a mix."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from faceid_sdk._atomic import atomic_write_bytes, fsync_directory
from faceid_sdk.errors import StoreError


def test_writes_and_replaces(tmp_path: Path) -> None:
    """A new file is created and an existing one replaced, leaving no temporary file."""
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(str(target), bytearray(b"two"))
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_accepts_chunks_and_memoryviews(tmp_path: Path) -> None:
    """An iterable of chunks is written in order, without concatenating first."""
    target = tmp_path / "chunks.bin"
    atomic_write_bytes(target, [b"ab", memoryview(b"cd"), bytearray(b"ef")])
    assert target.read_bytes() == b"abcdef"


def test_private_mode_by_default(tmp_path: Path) -> None:
    """Files holding templates are created readable by their owner only, unless told otherwise."""
    target = tmp_path / "private.bin"
    atomic_write_bytes(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write_bytes(target, b"y", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_failure_keeps_old_content(tmp_path: Path, monkeypatch, failing: str) -> None:
    """If fsync or the rename fails, the old file is intact and the temporary file removed."""
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(failing, boom)
    with pytest.raises(StoreError, match="No space left") as info:
        atomic_write_bytes(target, b"new")
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_interrupt_cleans_up(tmp_path: Path, monkeypatch) -> None:
    """A KeyboardInterrupt mid-write propagates as is and leaves no temporary file."""
    target = tmp_path / "data.bin"

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_missing_directory(tmp_path: Path) -> None:
    """Writing into a directory that does not exist raises StoreError saying so."""
    with pytest.raises(StoreError, match="directory exists"):
        atomic_write_bytes(tmp_path / "nope" / "data.bin", b"x")


def test_fsync_directory(tmp_path: Path) -> None:
    """Syncing an existing directory works; a missing one raises StoreError."""
    fsync_directory(tmp_path)
    with pytest.raises(StoreError):
        fsync_directory(tmp_path / "missing")
