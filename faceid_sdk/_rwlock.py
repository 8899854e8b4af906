"""A readers-writer lock: many concurrent readers, one exclusive writer, writers first.

FAISS releases the GIL during a search, so several searches really do run at once;
``IndexIDMap2.remove_ids`` compacts the flat storage in place, so a search running
during a removal would read freed or shifted memory. Readers therefore share the
lock and mutations take it alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """Writer-preferring readers-writer lock; not reentrant (never nest acquisitions).

    A waiting writer blocks new readers, so a steady stream of searches cannot
    starve an enrollment forever.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def __repr__(self) -> str:
        return f"<RWLock readers={self._readers} writer={self._writer}>"

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared for the duration of the ``with`` block."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively for the duration of the ``with`` block."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
