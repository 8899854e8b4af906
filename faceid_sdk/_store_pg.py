"""The store of record on PostgreSQL, for many stateless servers on several hosts.

The same contract and guarantees as :class:`~faceid_sdk._store.SQLiteStore` (one schema of
identities, templates, meta and API keys; every mutation one transaction; a sequence and a
content digest moved in the same transaction), through psycopg 3. Writers serialize on the
``sequence`` row (``SELECT ... FOR UPDATE``), as SQLite's ``BEGIN IMMEDIATE`` does, so every
replica sees writes in sequence order and can apply the others' before it answers (the
Enroller's sync). Commits are durable as PostgreSQL's ``synchronous_commit`` makes them (on
by default: a returned call survives a crash of the database server).

Open with a URL: ``Enroller("postgresql://faceid@db/faceid", model_id, dim)`` or
``faceid-sdk serve --store postgresql://...``. Credentials are never printed: messages show
the URL without its password.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._store import (
    ANY_KEY,
    ContentState,
    IdentityRecord,
    StoredTemplates,
    WriteResult,
    api_key_from_row,
    record_from_row,
    stored_from_rows,
    utc_now,
)
from .errors import (
    ApiKeyError,
    BackendUnavailableError,
    InvalidIdentityError,
    ModelMismatchError,
    ProtectionKeyError,
    StoreError,
    UnknownIdentityError,
)
from .keys import ApiKey, check_key_name, hash_secret, new_key, secret_matches
from .matching.digest import EMPTY_DIGEST, add_digests, format_digest, template_digest
from .vectors import FloatMatrix

__all__ = ["PostgresStore", "is_postgres_url", "redact_url"]

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS faceid_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS faceid_identities ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " display_name TEXT, external_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
    " model_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS faceid_templates ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " identity_id BIGINT NOT NULL REFERENCES faceid_identities(id) ON DELETE CASCADE,"
    " vector BYTEA NOT NULL, model_id TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS faceid_templates_by_identity ON faceid_templates(identity_id)",
    "CREATE TABLE IF NOT EXISTS faceid_api_keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL"
    " UNIQUE, secret_hash TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL,"
    " revoked_at TEXT)",
)

_URL = re.compile(r"postgres(ql)?://", re.IGNORECASE)


def is_postgres_url(location: object) -> bool:
    """Whether *location* names a PostgreSQL store rather than an SQLite file."""
    return isinstance(location, str) and bool(_URL.match(location))


def redact_url(url: str) -> str:
    """*url* without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _connect(url: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise BackendUnavailableError(
            "a PostgreSQL store needs psycopg: pip install 'faceid-sdk[postgres]'"
        ) from exc
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to the store {redact_url(url)} ({str(exc).strip()[:200]}): check "
            "that PostgreSQL runs and the URL, user and database are right"
        ) from exc


class _Path(str):
    """The store's printable location (the URL without password), where SQLite has a path."""


class PostgresStore:
    """Identities and templates in a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, model_id: str, dim: int) -> None:
        self.url = url
        self.path = _Path(redact_url(url))
        self._lock = threading.RLock()
        self.last_write_sequence = -1
        self.model_id = model_id
        self.dim = dim
        self.expected_key_id: str | object | None = ANY_KEY
        self._db = _connect(url)
        with self._transaction(lock=False) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(7363138045)")  # one schema creator
            for statement in _SCHEMA:
                cur.execute(statement)
            self._init_meta(cur, model_id, dim)

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, lock: bool = True) -> Iterator[Any]:
        """One transaction; with *lock*, serialized against every other writer first."""
        import psycopg

        with self._lock:
            try:
                with self._db.transaction(), self._db.cursor() as cur:
                    if lock:
                        cur.execute("SELECT value FROM faceid_meta WHERE key = 'sequence' "
                                    "FOR UPDATE")
                    yield cur
            except psycopg.Error as exc:
                raise StoreError(
                    f"the store {self.path} could not be written ({str(exc).strip()[:200]}); "
                    "nothing from this call was stored and everything stored before is "
                    "intact. Check the database server, then retry"
                ) from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        import psycopg

        with self._lock:
            try:
                with self._db.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            except psycopg.Error as exc:
                raise StoreError(
                    f"the store {self.path} cannot be read ({str(exc).strip()[:200]}): check "
                    "the database server, then retry"
                ) from exc

    def _init_meta(self, cur: Any, model_id: str, dim: int) -> None:
        cur.execute("SELECT key, value FROM faceid_meta")
        meta = dict(cur.fetchall())
        if not meta:
            cur.executemany(
                "INSERT INTO faceid_meta(key, value) VALUES (%s, %s)",
                [("schema_version", str(SCHEMA_VERSION)), ("model_id", model_id),
                 ("dim", str(dim)), ("sequence", "0"), ("store_id", secrets.token_hex(16)),
                 ("content_digest", EMPTY_DIGEST)],
            )
            return
        if meta["model_id"] != model_id or int(meta["dim"]) != dim:
            raise ModelMismatchError(
                f"store {self.path} holds templates of model {meta['model_id']!r} (dim "
                f"{meta['dim']}), not {model_id!r} (dim {dim}): open it with that model id, or "
                "enroll everyone again into a new store for the new model",
                code="model_id",
            )

    @staticmethod
    def read_meta(url: str) -> dict[str, str]:
        """The store's metadata (model_id, dim, sequence...) without creating anything."""
        import psycopg

        db = _connect(url)
        try:
            with db.cursor() as cur:
                cur.execute("SELECT key, value FROM faceid_meta")
                meta = dict(cur.fetchall())
        except psycopg.errors.UndefinedTable:
            raise StoreError(f"no faceid-sdk store in {redact_url(url)}: enroll someone first, "
                             "or check the database name") from None
        except psycopg.Error as exc:
            raise StoreError(f"{redact_url(url)} is not a readable faceid-sdk store: "
                             f"{str(exc).strip()[:200]}") from exc
        finally:
            db.close()
        if "model_id" not in meta or "dim" not in meta:
            raise StoreError(f"no faceid-sdk store in {redact_url(url)}: enroll someone first")
        return meta

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM faceid_meta WHERE key = %s", (key,))
        return None if not rows else str(rows[0][0])

    def _set_meta(self, cur: Any, key: str, value: str) -> None:
        cur.execute("INSERT INTO faceid_meta(key, value) VALUES (%s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value", (key, value))

    def _shift_digest(self, cur: Any, added: int = 0, removed: int = 0) -> None:
        cur.execute("SELECT value FROM faceid_meta WHERE key = 'content_digest'")
        self._set_meta(cur, "content_digest", add_digests(cur.fetchone()[0], added, removed))

    def _digest_of_identity(self, cur: Any, identity_id: int) -> tuple[np.ndarray, int]:
        cur.execute("SELECT t.id, i.name, t.vector FROM faceid_templates t JOIN "
                    "faceid_identities i ON i.id = t.identity_id WHERE t.identity_id = %s",
                    (identity_id,))
        rows = cur.fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.array([np.frombuffer(bytes(r[2]), dtype="<f4") for r in rows],
                           dtype=np.float32).reshape(len(rows), self.dim)
        return ids, template_digest(ids.tolist(), [r[1] for r in rows], vectors)

    def _bump_sequence(self, cur: Any) -> None:
        cur.execute("UPDATE faceid_meta SET value = (value::bigint + 1)::text "
                    "WHERE key = 'sequence' RETURNING value")
        self.last_write_sequence = int(cur.fetchone()[0])

    def _check_key_id(self, cur: Any) -> None:
        if self.expected_key_id is ANY_KEY:
            return
        cur.execute("SELECT value FROM faceid_meta WHERE key = 'protection_key_id'")
        row = cur.fetchone()
        current = str(row[0]) if row and row[0] else None
        if current != self.expected_key_id:
            raise ProtectionKeyError(
                f"store {self.path} was re-keyed to "
                f"{'key id ' + current if current else 'no key'} by another process: nothing was "
                "written; reopen the store with its current key"
            )

    # -- reads ----------------------------------------------------------------------------

    @property
    def calibrated_threshold(self) -> float | None:
        value = self._meta("threshold")
        return None if value is None else float(value)

    def save_calibrated_threshold(self, value: float, note: str) -> None:
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"threshold must be a finite distance > 0 (got {value!r})")
        with self._transaction(lock=False) as cur:
            self._set_meta(cur, "threshold", repr(float(value)))
            self._set_meta(cur, "threshold_note", note)

    @property
    def sequence(self) -> int:
        return int(self._meta("sequence") or 0)

    def content_state(self) -> ContentState:
        with self._transaction(lock=False) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT key, value FROM faceid_meta WHERE key IN "
                        "('store_id', 'sequence', 'content_digest')")
            meta = dict(cur.fetchall())
            cur.execute("SELECT COUNT(*) FROM faceid_templates")
            count = int(cur.fetchone()[0])
        return ContentState(store_id=meta["store_id"], sequence=int(meta["sequence"]),
                            digest=meta["content_digest"], templates=count)

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM faceid_templates")[0][0])

    def template_id_snapshot(self) -> tuple[int, np.ndarray]:
        with self._transaction(lock=False) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT value FROM faceid_meta WHERE key = 'sequence'")
            sequence = int(cur.fetchone()[0])
            cur.execute("SELECT id FROM faceid_templates")
            ids = [r[0] for r in cur.fetchall()]
        return sequence, np.array(ids, dtype=np.int64)

    def _templates(self, where: str = "", params: Sequence[Any] = ()) -> StoredTemplates:
        rows = self._query(
            "SELECT t.id, i.name, t.vector FROM faceid_templates t JOIN faceid_identities i "
            f"ON i.id = t.identity_id {where} ORDER BY t.id", params)
        return stored_from_rows([(r[0], r[1], bytes(r[2])) for r in rows], self.dim)

    def templates_with_ids(self, ids: Sequence[int]) -> StoredTemplates:
        return self._templates("WHERE t.id = ANY(%s)", ([int(i) for i in ids],))

    def templates(self) -> StoredTemplates:
        return self._templates()

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and bool(
            self._query("SELECT 1 FROM faceid_identities WHERE name = %s", (identity,)))

    _RECORD = ("SELECT i.name, i.display_name, i.external_id, i.created_at, i.updated_at, "
               "i.model_id, COUNT(t.id) FROM faceid_identities i LEFT JOIN faceid_templates t "
               "ON t.identity_id = i.id ")

    def identities(self) -> list[IdentityRecord]:
        rows = self._query(self._RECORD + "GROUP BY i.id ORDER BY i.name")
        return [record_from_row(tuple(row)) for row in rows]

    def get(self, identity: str) -> IdentityRecord:
        rows = self._query(self._RECORD + "WHERE i.name = %s GROUP BY i.id", (identity,))
        if not rows:
            raise UnknownIdentityError(f"identity {identity!r} is not enrolled")
        return record_from_row(tuple(rows[0]))

    @property
    def store_id(self) -> str:
        return str(self._meta("store_id"))

    @property
    def protection_key_id(self) -> str | None:
        return self._meta("protection_key_id") or None

    def integrity_check(self, *, quick: bool = False) -> str:
        """PostgreSQL checks its own pages; here: every template has this store's size."""
        rows = self._query("SELECT COUNT(*) FROM faceid_templates WHERE length(vector) <> %s",
                           (4 * self.dim,))
        bad = int(rows[0][0])
        return "ok" if bad == 0 else f"{bad} templates do not hold {self.dim} float32 values"

    # -- writes ---------------------------------------------------------------------------

    def add(self, identity: str, vectors: FloatMatrix, *, display_name: str | None = None,
            external_id: str | None = None, replace: bool = False) -> WriteResult:
        now = utc_now().isoformat()
        blobs = [np.ascontiguousarray(v, dtype="<f4").tobytes() for v in vectors]
        with self._transaction() as cur:
            self._check_key_id(cur)
            cur.execute("SELECT id FROM faceid_identities WHERE name = %s", (identity,))
            row = cur.fetchone()
            removed = np.empty(0, dtype=np.int64)
            created = row is None
            if row is None:
                cur.execute(
                    "INSERT INTO faceid_identities(name, display_name, external_id, created_at, "
                    "updated_at, model_id) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    (identity, display_name, external_id, now, now, self.model_id))
                identity_id = int(cur.fetchone()[0])
            else:
                identity_id = int(row[0])
                if replace:
                    removed, gone = self._digest_of_identity(cur, identity_id)
                    cur.execute("DELETE FROM faceid_templates WHERE identity_id = %s",
                                (identity_id,))
                    self._shift_digest(cur, removed=gone)
                cur.execute(
                    "UPDATE faceid_identities SET updated_at = %s, display_name = "
                    "COALESCE(%s, display_name), external_id = COALESCE(%s, external_id) "
                    "WHERE id = %s", (now, display_name, external_id, identity_id))
            new_ids = []
            for blob in blobs:
                cur.execute("INSERT INTO faceid_templates(identity_id, vector, model_id, "
                            "created_at) VALUES (%s, %s, %s, %s) RETURNING id",
                            (identity_id, blob, self.model_id, now))
                new_ids.append(int(cur.fetchone()[0]))
            self._shift_digest(cur, added=template_digest(new_ids, [identity] * len(new_ids),
                                                          vectors))
            self._bump_sequence(cur)
        return WriteResult(new_ids=np.array(new_ids, dtype=np.int64), removed_ids=removed,
                           created=created, sequence=self.last_write_sequence)

    def add_many(self, batch: Sequence[tuple[str, FloatMatrix]]) -> int:
        """Import new identities with their templates in one transaction (bulk loads, the
        benchmarks): one sequence step, the digest moved by everything written. Every name
        must be new. Returns the number of templates written."""
        now = utc_now().isoformat()
        with self._transaction() as cur:
            self._check_key_id(cur)
            names = [name for name, _ in batch]
            cur.execute("SELECT name FROM faceid_identities WHERE name = ANY(%s)", (names,))
            taken = [r[0] for r in cur.fetchall()]
            if taken:
                raise InvalidIdentityError(
                    f"add_many imports new identities only ({taken[0]!r} exists): enroll "
                    "further templates through the Enroller")
            cur.executemany(
                "INSERT INTO faceid_identities(name, created_at, updated_at, model_id) "
                "VALUES (%s, %s, %s, %s)", [(name, now, now, self.model_id) for name in names])
            cur.execute("SELECT id, name FROM faceid_identities WHERE name = ANY(%s)", (names,))
            ids = dict((name, identity_id) for identity_id, name in cur.fetchall())
            rows = [(ids[name], np.ascontiguousarray(v, dtype="<f4").tobytes(), self.model_id,
                     now) for name, vectors in batch for v in np.atleast_2d(vectors)]
            cur.executemany("INSERT INTO faceid_templates(identity_id, vector, model_id, "
                            "created_at) VALUES (%s, %s, %s, %s)", rows)
            cur.execute("SELECT t.id, i.name, t.vector FROM faceid_templates t JOIN "
                        "faceid_identities i ON i.id = t.identity_id WHERE i.name = ANY(%s)",
                        (names,))
            written = cur.fetchall()
            vectors = np.array([np.frombuffer(bytes(r[2]), dtype="<f4") for r in written],
                               dtype=np.float32).reshape(len(written), self.dim)
            self._shift_digest(cur, added=template_digest([r[0] for r in written],
                                                          [r[1] for r in written], vectors))
            self._bump_sequence(cur)
        return len(written)

    def remove(self, identity: str) -> np.ndarray:
        with self._transaction() as cur:
            cur.execute("SELECT id FROM faceid_identities WHERE name = %s", (identity,))
            row = cur.fetchone()
            if row is None:
                raise UnknownIdentityError(f"identity {identity!r} is not enrolled")
            removed, gone = self._digest_of_identity(cur, int(row[0]))
            cur.execute("DELETE FROM faceid_identities WHERE id = %s", (row[0],))
            self._shift_digest(cur, removed=gone)
            self._bump_sequence(cur)
        return removed

    def rekey(self, transform: npt.NDArray[np.float64], *, old_key_id: str | None,
              new_key_id: str | None) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT value FROM faceid_meta WHERE key = 'protection_key_id'")
            row = cur.fetchone()
            current = str(row[0]) if row and row[0] else None
            if current != old_key_id:
                raise ProtectionKeyError(
                    f"store {self.path} is keyed with "
                    f"{'key id ' + current if current else 'no key (raw templates)'}, not "
                    f"{'key id ' + old_key_id if old_key_id else 'no key'}: give the key the "
                    "store was protected with as the old key")
            cur.execute("SELECT t.id, i.name, t.vector FROM faceid_templates t JOIN "
                        "faceid_identities i ON i.id = t.identity_id ORDER BY t.id")
            rows = cur.fetchall()
            rotated = np.empty((len(rows), self.dim), dtype=np.float32)
            for k, (template_id, _, blob) in enumerate(rows):
                vector = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float64) @ transform
                rotated[k] = vector
                cur.execute("UPDATE faceid_templates SET vector = %s WHERE id = %s",
                            (np.ascontiguousarray(vector, dtype="<f4").tobytes(), template_id))
            digest = template_digest([r[0] for r in rows], [r[1] for r in rows], rotated)
            self._set_meta(cur, "content_digest", format_digest(digest))
            self._set_meta(cur, "protection_key_id", new_key_id or "")
            self._bump_sequence(cur)
        if self.expected_key_id is not ANY_KEY:
            self.expected_key_id = new_key_id
        return len(rows)

    # -- API keys -------------------------------------------------------------------------

    def add_api_key(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        check_key_name(name)
        key_id, secret, text = new_key()
        now = utc_now()
        with self._transaction(lock=False) as cur:
            cur.execute("SELECT 1 FROM faceid_api_keys WHERE name = %s", (name,))
            if cur.fetchone():
                raise ApiKeyError(f"a key named {name!r} exists: revoke it first or pick "
                                  "another name")
            cur.execute("INSERT INTO faceid_api_keys(key_id, name, secret_hash, scopes, "
                        "created_at) VALUES (%s, %s, %s, %s, %s)",
                        (key_id, name, hash_secret(secret), ",".join(scopes), now.isoformat()))
        return ApiKey(name=name, key_id=key_id, scopes=scopes, created_at=now), text

    _KEY = "SELECT name, key_id, scopes, created_at, revoked_at FROM faceid_api_keys "

    def api_keys(self) -> list[ApiKey]:
        return [api_key_from_row(tuple(r)) for r in self._query(self._KEY + "ORDER BY name")]

    def has_active_api_keys(self) -> bool:
        return bool(self._query("SELECT 1 FROM faceid_api_keys WHERE revoked_at IS NULL LIMIT 1"))

    def api_key(self, name: str) -> ApiKey:
        rows = self._query(self._KEY + "WHERE name = %s", (name,))
        if not rows:
            raise ApiKeyError(f"no key named {name!r}: `faceid-sdk keys list` shows them")
        return api_key_from_row(tuple(rows[0]))

    def revoke_api_key(self, name: str) -> ApiKey:
        self.api_key(name)
        with self._transaction(lock=False) as cur:
            cur.execute("UPDATE faceid_api_keys SET revoked_at = %s WHERE name = %s AND "
                        "revoked_at IS NULL", (utc_now().isoformat(), name))
        return self.api_key(name)

    def authenticate(self, key_id: str, secret: str) -> ApiKey | None:
        rows = self._query(
            "SELECT name, key_id, scopes, created_at, revoked_at, secret_hash FROM "
            "faceid_api_keys WHERE key_id = %s", (key_id,))
        if not rows or rows[0][4] is not None or not secret_matches(secret, rows[0][5]):
            return None
        return api_key_from_row(tuple(rows[0][:5]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
