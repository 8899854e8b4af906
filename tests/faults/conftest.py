"""Fixtures that inject faults: a tiny tmpfs (full disk) that can be remounted read-only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at tmp_path/mnt; skipped where mounting is not permitted."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    result = _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point))
    if result.returncode != 0:
        pytest.skip(f"mount not permitted here: {result.stderr.strip()[:200]}")
    try:
        yield mount_point
    finally:
        _run("umount", "-l", str(mount_point))


def remount(mount_point: Path, mode: str) -> None:
    """Remount the tmpfs 'ro' or 'rw' (skips the test if the kernel refuses)."""
    result = _run("mount", "-o", f"remount,{mode}", str(mount_point))
    if result.returncode != 0:
        pytest.skip(f"remount,{mode} not permitted: {result.stderr.strip()[:200]}")
