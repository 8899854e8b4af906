"""Atomic file replacement: after a crash the path holds the old bytes or the new, never a mix."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .errors import StoreError

Chunk = bytes | bytearray | memoryview

__all__ = ["atomic_write_bytes", "fsync_directory", "remove_orphaned_temporaries"]

# A temporary file younger than this is never taken for an orphan: it may be between its
# creation and its writer's lock.
_ORPHAN_MIN_AGE_SECONDS = 10.0


def atomic_write_bytes(
    path: str | os.PathLike[str], data: Chunk | Iterable[Chunk], *, mode: int = 0o600
) -> None:
    """Replace the file at *path* with *data* atomically and durably.

    Writes a temporary file in the same directory (``os.replace`` is only atomic within
    one file system), flushes and fsyncs it, renames it over *path*, then fsyncs the
    directory so the rename itself survives power loss. The file is created with
    *mode* (default ``0o600``: index files hold biometric templates). *data* may also be
    an iterable of chunks, so a large file need not be concatenated in memory first. On
    any error the temporary file is removed, *path* is untouched, and
    :class:`StoreError` says why.
    """
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StoreError(
            f"cannot create a temporary file next to {target!r} ({exc.strerror or exc}): "
            "check that the directory exists and is writable"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            if fcntl is not None:
                # Held until the rename: remove_orphaned_temporaries leaves locked files alone.
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                for chunk in data:
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StoreError(
                f"cannot write {target!r} ({exc.strerror or exc}): the previous file, if any, "
                "is intact; free disk space or fix permissions and retry"
            ) from exc
        raise
    fsync_directory(directory)


def remove_orphaned_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files a killed :func:`atomic_write_bytes` of *path* left behind.

    Only files that no live writer holds (each writer locks its temporary file until the
    rename) and that are older than a few seconds are removed; returns what was removed.
    Index temporaries hold templates, so they must not linger.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    removed = []
    for candidate in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if time.time() - info.st_mtime < _ORPHAN_MIN_AGE_SECONDS:
                continue
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a writer is still at it
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename or a new file) to disk, where the OS allows it."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open directories; NTFS journals renames
        return
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StoreError(
            f"cannot open directory {os.fspath(directory)!r} to fsync it: {exc}"
        ) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (certain network mounts) refuse fsync on directories; the data
        # file itself is already synced, so this is the best the platform offers.
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise StoreError(f"cannot fsync directory {os.fspath(directory)!r}: {exc}") from exc
    finally:
        os.close(fd)
