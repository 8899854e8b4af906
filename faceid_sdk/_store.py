"""The durable source of truth: identities and their templates in one SQLite file.

Every mutation runs in one transaction and is committed with ``synchronous=FULL`` in
WAL mode, so a call that returned has reached the disk: an acknowledged enrollment
survives a killed process or a power cut. The FAISS index is only a cache of this
store and can always be rebuilt from it (``faceid-sdk rebuild-index``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs
import numpy as np
import numpy.typing as npt

from .errors import (
    ApiKeyError,
    ModelMismatchError,
    ProtectionKeyError,
    StoreError,
    UnknownIdentityError,
)
from .keys import ApiKey, check_key_name, hash_secret, new_key, secret_matches
from .matching.digest import EMPTY_DIGEST, add_digests, format_digest, template_digest
from .vectors import FloatMatrix

__all__ = [
    "ANY_KEY",
    "ContentState",
    "IdentityRecord",
    "SQLiteStore",
    "StoredTemplates",
    "WriteResult",
    "api_key_from_row",
    "record_from_row",
    "stored_from_rows",
    "utc_now",
]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT,
    external_id  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    model_id     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector      BLOB NOT NULL,
    model_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_identity ON templates(identity_id);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""


@attrs.frozen
class IdentityRecord:
    """What the store knows about one enrolled identity (never its vectors)."""

    identity: str
    display_name: str | None
    external_id: str | None
    created_at: _dt.datetime
    updated_at: _dt.datetime
    model_id: str
    template_count: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (timestamps in ISO 8601, UTC)."""
        data = attrs.asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@attrs.frozen(repr=False)
class StoredTemplates:
    """Every template in the store: row ids, owning identity per row, and the vectors."""

    ids: np.ndarray
    identities: tuple[str, ...]
    vectors: FloatMatrix

    def __repr__(self) -> str:
        people = len(set(self.identities))
        return f"<StoredTemplates {len(self.ids)} templates of {people} identities>"


@attrs.frozen
class ContentState:
    """Where the store stands: its identity, mutation counter and content digest, read at once."""

    store_id: str
    sequence: int
    digest: str
    templates: int


@attrs.frozen(repr=False)
class WriteResult:
    """What one committed write did, as the store saw it inside its transaction."""

    new_ids: np.ndarray
    removed_ids: np.ndarray
    created: bool
    sequence: int


P = ParamSpec("P")
R = TypeVar("R")


_Read = Callable[Concatenate["SQLiteStore", P], R]


def _reads(method: _Read[P, R]) -> _Read[P, R]:
    """Map SQLite errors of a read to :class:`StoreError` (exit 74, HTTP 503)."""

    @functools.wraps(method)
    def wrapper(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(
                f"the store {str(self.path)!r} cannot be read ({exc}): it may be damaged. Run "
                "`faceid-sdk rebuild-index` to check it, and restore it from a backup if the "
                "check fails"
            ) from exc

    return wrapper


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


class SQLiteStore:
    """Identities and templates in one SQLite database, one transaction per mutation.

    The store records the model id and dimension it was created for and refuses to be
    opened for another: templates of two models must never be compared.
    """

    def __init__(self, path: str | os.PathLike[str], *, model_id: str, dim: int) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        #: The sequence number this connection's last committed write produced (-1: none).
        self.last_write_sequence = -1
        if not self.path.exists():
            # Templates are biometric data: create the file owner-only (SQLite gives its
            # -wal and -shm files the database file's permissions).
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store {str(self.path)!r} ({exc.strerror or exc}): check "
                    "that the directory exists and is writable"
                ) from exc
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a returned call is on disk.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._init_meta(model_id, dim)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the store {str(self.path)!r}: {exc}. Check that the path is a "
                "faceid-sdk store (an SQLite file) on a writable disk"
            ) from exc
        self.model_id = model_id
        self.dim = dim
        #: The template key id every write must find in the store (set by the Enroller);
        #: ``ANY_KEY`` skips the check. Another process that re-keyed the store meanwhile
        #: makes writes fail instead of mixing templates of two keys.
        self.expected_key_id: str | object | None = ANY_KEY

    # -- plumbing -------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _init_meta(self, model_id: str, dim: int) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self._db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("model_id", model_id),
                    ("dim", str(dim)),
                    ("sequence", "0"),
                    ("store_id", secrets.token_hex(16)),
                    ("content_digest", EMPTY_DIGEST),
                ],
            )
            return
        if int(meta.get("schema_version", "0")) != SCHEMA_VERSION:
            raise StoreError(
                f"store {str(self.path)!r} has schema version {meta.get('schema_version')!r}, "
                f"this faceid-sdk reads version {SCHEMA_VERSION}: upgrade faceid-sdk"
            )
        if "store_id" not in meta:
            # Stores made before index files named their store: give this one a name now.
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('store_id', ?)", (secrets.token_hex(16),)
            )
        missing = [key for key in ("model_id", "dim", "sequence") if key not in meta]
        if missing:
            raise StoreError(
                f"store {str(self.path)!r} has lost its {', '.join(missing)} record: the file is "
                "damaged. Restore it from a backup"
            )
        if "content_digest" not in meta:
            # Stores made before content digests: compute this one's once, now.
            rows = self._db.execute(
                "SELECT t.id, i.name, t.vector FROM templates t "
                "JOIN identities i ON i.id = t.identity_id"
            ).fetchall()
            digest = template_digest(
                (r[0] for r in rows), [r[1] for r in rows],
                np.array([np.frombuffer(r[2], dtype="<f4") for r in rows]).reshape(-1, dim),
            )
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('content_digest', ?)",
                (format_digest(digest),),
            )
        if meta["model_id"] != model_id or int(meta["dim"]) != dim:
            raise ModelMismatchError(
                f"store {str(self.path)!r} holds templates of model {meta['model_id']!r} "
                f"(dim {meta['dim']}), not {model_id!r} (dim {dim}): open it with that model id, "
                "or enroll everyone again into a new store for the new model",
                code="model_id",
            )

    @staticmethod
    def read_meta(path: str | os.PathLike[str]) -> dict[str, str]:
        """Return the store's metadata (model_id, dim, sequence) without opening it for writing."""
        if not Path(path).exists():
            raise StoreError(f"no store at {str(path)!r}: enroll someone first, or check the path")
        try:
            db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{str(path)!r} is not a readable faceid-sdk store ({exc}): check the path, or "
                "restore the store from a backup if it is damaged"
            ) from exc
        missing = [key for key in ("model_id", "dim") if key not in meta]
        if missing or not str(meta.get("dim", "")).isdigit():
            raise StoreError(
                f"{str(path)!r} is not a readable faceid-sdk store: its "
                f"{' and '.join(missing) or 'dim'} "
                "record is missing or damaged. Check the path, or restore the store from a backup"
            )
        return meta

    def _shift_digest(self, added: int = 0, removed: int = 0) -> None:
        # Caller holds a transaction.
        row = self._db.execute("SELECT value FROM meta WHERE key = 'content_digest'").fetchone()
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'content_digest'",
            (add_digests(row[0], added, removed),),
        )

    def _digest_of_rows(self, where: str, params: tuple[Any, ...]) -> tuple[np.ndarray, int]:
        """Ids and digest of the templates selected by *where* (caller holds a transaction)."""
        rows = self._db.execute(
            "SELECT t.id, i.name, t.vector FROM templates t "
            f"JOIN identities i ON i.id = t.identity_id WHERE {where}", params
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.array([np.frombuffer(r[2], dtype="<f4") for r in rows], dtype=np.float32)
        return ids, template_digest(ids.tolist(), [r[1] for r in rows],
                                    vectors.reshape(len(rows), self.dim))

    def _bump_sequence(self) -> None:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'sequence'"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
        self.last_write_sequence = int(row[0])

    def _identity_row(self, identity: str) -> tuple[int, ...] | None:
        row = self._db.execute("SELECT id FROM identities WHERE name = ?", (identity,)).fetchone()
        return tuple(row) if row else None

    # -- reads ------------------------------------------------------------------------------

    @property
    @_reads
    def calibrated_threshold(self) -> float | None:
        """The threshold ``faceid-sdk calibrate --save`` stored for this deployment, if any."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'threshold'").fetchone()
        return None if row is None else float(row[0])

    def save_calibrated_threshold(self, value: float, note: str) -> None:
        """Store the deployment's own threshold (and how it was measured) in one transaction."""
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"threshold must be a finite distance > 0 (got {value!r})")
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [("threshold", repr(float(value))), ("threshold_note", note)],
            )

    @property
    @_reads
    def sequence(self) -> int:
        """A counter bumped by every committed mutation (the index file records the one it saw)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
        return int(row[0])

    @_reads
    def content_state(self) -> ContentState:
        """Store id, sequence, content digest and template count, from one snapshot."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                meta = dict(self._db.execute(
                    "SELECT key, value FROM meta WHERE key IN "
                    "('store_id', 'sequence', 'content_digest')"
                ).fetchall())
                count = int(self._db.execute("SELECT COUNT(*) FROM templates").fetchone()[0])
            finally:
                self._db.execute("COMMIT")
        return ContentState(store_id=meta["store_id"], sequence=int(meta["sequence"]),
                            digest=meta["content_digest"], templates=count)

    @_reads
    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    @_reads
    def template_id_snapshot(self) -> tuple[int, np.ndarray]:
        """``(sequence, ids of every template)``, read from one consistent snapshot."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                row = self._db.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
                ids = [r[0] for r in self._db.execute("SELECT id FROM templates")]
            finally:
                self._db.execute("COMMIT")
        return int(row[0]), np.array(ids, dtype=np.int64)

    @_reads
    def templates_with_ids(self, ids: Sequence[int]) -> StoredTemplates:
        """The templates among *ids* that exist, ordered by id."""
        rows: list[Any] = []
        wanted = [int(i) for i in ids]
        with self._lock:
            for lo in range(0, len(wanted), 500):
                chunk = wanted[lo : lo + 500]
                rows += self._db.execute(
                    "SELECT t.id, i.name, t.vector FROM templates t "
                    "JOIN identities i ON i.id = t.identity_id "
                    f"WHERE t.id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
        rows.sort(key=lambda r: r[0])
        return stored_from_rows(rows, self.dim)

    def __contains__(self, identity: object) -> bool:
        with self._lock:
            return isinstance(identity, str) and self._identity_row(identity) is not None

    @_reads
    def identities(self) -> list[IdentityRecord]:
        """Every identity, sorted by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT i.name, i.display_name, i.external_id, i.created_at, i.updated_at, "
                "i.model_id, COUNT(t.id) FROM identities i LEFT JOIN templates t "
                "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name"
            ).fetchall()
        return [record_from_row(row) for row in rows]

    @_reads
    def get(self, identity: str) -> IdentityRecord:
        """The record of *identity*, or :class:`UnknownIdentityError`."""
        with self._lock:
            row = self._db.execute(
                "SELECT i.name, i.display_name, i.external_id, i.created_at, i.updated_at, "
                "i.model_id, COUNT(t.id) FROM identities i LEFT JOIN templates t "
                "ON t.identity_id = i.id WHERE i.name = ? GROUP BY i.id",
                (identity,),
            ).fetchone()
        if row is None:
            raise UnknownIdentityError(f"identity {identity!r} is not enrolled")
        return record_from_row(row)

    @_reads
    def templates(self) -> StoredTemplates:
        """Every template, ordered by id (what the index is rebuilt from)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t.id, i.name, t.vector FROM templates t "
                "JOIN identities i ON i.id = t.identity_id ORDER BY t.id"
            ).fetchall()
        return stored_from_rows(rows, self.dim)

    # -- writes -----------------------------------------------------------------------------

    def add(
        self,
        identity: str,
        vectors: FloatMatrix,
        *,
        display_name: str | None = None,
        external_id: str | None = None,
        replace: bool = False,
    ) -> WriteResult:
        """Store *vectors* for *identity* in one durable transaction.

        Creates the identity when new (``created`` says whether this call did, as seen inside
        the transaction, so two processes creating one name cannot both be told so). With
        ``replace=True`` its previous templates are deleted in the same transaction.
        """
        now = utc_now().isoformat()
        blobs = [np.ascontiguousarray(v, dtype="<f4").tobytes() for v in vectors]
        with self._transaction():
            self._check_key_id()
            row = self._identity_row(identity)
            removed = np.empty(0, dtype=np.int64)
            created = row is None
            if row is None:
                cursor = self._db.execute(
                    "INSERT INTO identities(name, display_name, external_id, created_at, "
                    "updated_at, model_id) VALUES (?, ?, ?, ?, ?, ?)",
                    (identity, display_name, external_id, now, now, self.model_id),
                )
                identity_id = int(cursor.lastrowid or 0)
            else:
                identity_id = row[0]
                if replace:
                    removed, gone = self._digest_of_rows("t.identity_id = ?", (identity_id,))
                    self._db.execute("DELETE FROM templates WHERE identity_id = ?", (identity_id,))
                    self._shift_digest(removed=gone)
                self._db.execute(
                    "UPDATE identities SET updated_at = ?, "
                    "display_name = COALESCE(?, display_name), "
                    "external_id = COALESCE(?, external_id) WHERE id = ?",
                    (now, display_name, external_id, identity_id),
                )
            new_ids = []
            for blob in blobs:
                cursor = self._db.execute(
                    "INSERT INTO templates(identity_id, vector, model_id, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (identity_id, blob, self.model_id, now),
                )
                new_ids.append(int(cursor.lastrowid or 0))
            self._shift_digest(added=template_digest(new_ids, [identity] * len(new_ids), vectors))
            self._bump_sequence()
            sequence = self.last_write_sequence
        return WriteResult(new_ids=np.array(new_ids, dtype=np.int64), removed_ids=removed,
                           created=created, sequence=sequence)

    def remove(self, identity: str) -> np.ndarray:
        """Delete *identity* and its templates durably; return the removed template ids."""
        with self._transaction():
            row = self._identity_row(identity)
            if row is None:
                raise UnknownIdentityError(f"identity {identity!r} is not enrolled")
            removed, gone = self._digest_of_rows("t.identity_id = ?", (row[0],))
            self._db.execute("DELETE FROM identities WHERE id = ?", (row[0],))
            self._shift_digest(removed=gone)
            self._bump_sequence()
        return removed

    @property
    @_reads
    def store_id(self) -> str:
        """A random name given to this store at creation: an index file of another store,
        even one with the same model, sequence and count, carries another name."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        return str(row[0])

    @property
    @_reads
    def protection_key_id(self) -> str | None:
        """Fingerprint of the key the stored templates are rotated with; ``None`` if raw.

        Only the fingerprint is stored, never the key: a copy of the database alone holds
        rotated vectors and no way to undo the rotation.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'protection_key_id'"
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def rekey(
        self, transform: npt.NDArray[np.float64], *, old_key_id: str | None,
        new_key_id: str | None,
    ) -> int:
        """Multiply every template by *transform* and record *new_key_id*, in one transaction.

        Refuses (:class:`ProtectionKeyError`) unless the store is keyed with *old_key_id*
        right now, so a retried or concurrent rotation can never rotate twice. A crash
        leaves either every template under the old key or every one under the new.
        Returns the number of templates rewritten.
        """
        with self._transaction():
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'protection_key_id'"
            ).fetchone()
            current = str(row[0]) if row and row[0] else None
            if current != old_key_id:
                raise ProtectionKeyError(
                    f"store {str(self.path)!r} is keyed with "
                    f"{'key id ' + current if current else 'no key (raw templates)'}, not "
                    f"{'key id ' + old_key_id if old_key_id else 'no key'}: give the key the "
                    "store was protected with as the old key"
                )
            rows = self._db.execute("SELECT id, vector FROM templates ORDER BY id").fetchall()
            for template_id, blob in rows:
                vector = np.frombuffer(blob, dtype="<f4").astype(np.float64) @ transform
                self._db.execute(
                    "UPDATE templates SET vector = ? WHERE id = ?",
                    (np.ascontiguousarray(vector, dtype="<f4").tobytes(), template_id),
                )
            _, digest = self._digest_of_rows("1", ())
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'content_digest'",
                             (format_digest(digest),))
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('protection_key_id', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (new_key_id or "",),
            )
            self._bump_sequence()
        if self.expected_key_id is not ANY_KEY:
            self.expected_key_id = new_key_id
        return len(rows)

    def _check_key_id(self) -> None:
        # Caller holds a transaction.
        if self.expected_key_id is ANY_KEY:
            return
        row = self._db.execute("SELECT value FROM meta WHERE key = 'protection_key_id'").fetchone()
        current = str(row[0]) if row and row[0] else None
        if current != self.expected_key_id:
            raise ProtectionKeyError(
                f"store {str(self.path)!r} was re-keyed to "
                f"{'key id ' + current if current else 'no key'} by another process: nothing was "
                "written; reopen the store with its current key"
            )

    # -- API keys (not gallery content: they move neither the sequence nor the digest) ----

    def add_api_key(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        """Store a new key; return its record and the key text (shown once, never stored)."""
        check_key_name(name)
        key_id, secret, text = new_key()
        now = utc_now()
        with self._transaction():
            taken = self._db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone()
            if taken:
                raise ApiKeyError(f"a key named {name!r} exists: revoke it first or pick "
                                  "another name")
            self._db.execute(
                "INSERT INTO api_keys(key_id, name, secret_hash, scopes, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key_id, name, hash_secret(secret), ",".join(scopes), now.isoformat()),
            )
        return ApiKey(name=name, key_id=key_id, scopes=scopes, created_at=now), text

    @_reads
    def api_keys(self) -> list[ApiKey]:
        """Every key, active and revoked, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, key_id, scopes, created_at, revoked_at FROM api_keys ORDER BY name"
            ).fetchall()
        return [api_key_from_row(row) for row in rows]

    @_reads
    def has_active_api_keys(self) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone()
        return row is not None

    def revoke_api_key(self, name: str) -> ApiKey:
        """Revoke the key called *name* (kept, marked revoked); :class:`ApiKeyError` if none."""
        with self._transaction():
            row = self._db.execute(
                "SELECT name, key_id, scopes, created_at, revoked_at FROM api_keys "
                "WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ApiKeyError(f"no key named {name!r}: `faceid-sdk keys list` shows them")
            if row[4] is None:
                self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?",
                                 (utc_now().isoformat(), name))
        return self.api_key(name)

    @_reads
    def api_key(self, name: str) -> ApiKey:
        with self._lock:
            row = self._db.execute(
                "SELECT name, key_id, scopes, created_at, revoked_at FROM api_keys "
                "WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ApiKeyError(f"no key named {name!r}: `faceid-sdk keys list` shows them")
        return api_key_from_row(row)

    @_reads
    def authenticate(self, key_id: str, secret: str) -> ApiKey | None:
        """The active key with *key_id* whose secret is *secret*, else ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, key_id, scopes, created_at, revoked_at, secret_hash FROM api_keys "
                "WHERE key_id = ?", (key_id,)).fetchone()
        if row is None or row[4] is not None or not secret_matches(secret, row[5]):
            return None
        return api_key_from_row(row[:5])

    @_reads
    def integrity_check(self, *, quick: bool = False) -> str:
        """Run SQLite's own integrity check (``quick``: without checking index contents,
        O(file size)); return ``'ok'`` or its complaint."""
        pragma = "quick_check" if quick else "integrity_check"
        with self._lock:
            return str(self._db.execute(f"PRAGMA {pragma}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


ANY_KEY = object()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the store's lock; SQLite errors -> StoreError."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._lock.acquire()
        try:
            self._store._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._store._lock.release()
            raise _store_error(self._store, exc) from exc

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        db = self._store._db
        try:
            if exc is None:
                db.execute("COMMIT")
            else:
                db.execute("ROLLBACK")
        except sqlite3.Error as commit_exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise _store_error(self._store, commit_exc) from commit_exc
        finally:
            self._store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(self._store, exc) from exc


def _store_error(store: SQLiteStore, exc: sqlite3.Error) -> StoreError:
    return StoreError(
        f"the store {str(store.path)!r} could not be written ({exc}); nothing from this call "
        "was stored and everything stored before is intact. Free disk space or fix the "
        "file's permissions, then retry"
    )


def stored_from_rows(rows: list[Any], dim: int) -> StoredTemplates:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.empty((len(rows), dim), dtype=np.float32)
    for i, row in enumerate(rows):
        vectors[i] = np.frombuffer(row[2], dtype="<f4")
    return StoredTemplates(ids=ids, identities=tuple(r[1] for r in rows), vectors=vectors)


def api_key_from_row(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        name=row[0], key_id=row[1], scopes=tuple(s for s in row[2].split(",") if s),
        created_at=_dt.datetime.fromisoformat(row[3]),
        revoked_at=None if row[4] is None else _dt.datetime.fromisoformat(row[4]),
    )


def record_from_row(row: tuple[Any, ...]) -> IdentityRecord:
    return IdentityRecord(
        identity=row[0],
        display_name=row[1],
        external_id=row[2],
        created_at=_dt.datetime.fromisoformat(row[3]),
        updated_at=_dt.datetime.fromisoformat(row[4]),
        model_id=row[5],
        template_count=int(row[6]),
    )
