"""Enrollment: the durable store and the in-memory index, kept in step.

The store is the source of truth; the index is a cache saved next to it
(``<store>.index``) and verified on open against the store's mutation counter, its
template count, model id and dimension. Anything that does not match (a crash
between a commit and the index save, a foreign or corrupt file) is rebuilt from the
store, and :attr:`Enroller.index_status` says which happened.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._codec import FeatureCodec
from ._identity import normalize_identity
from ._match import Matcher
from ._store import IdentityRecord, SQLiteStore
from ._vectors import FloatMatrix, as_matrix, check_unit_norm
from .errors import FaceIDError, IndexFileError, InvalidFeatureError

__all__ = [
    "Enroller",
    "Enrollment",
    "PossibleDuplicateWarning",
    "RebuildReport",
    "index_path_for",
    "rebuild_index",
]


class PossibleDuplicateWarning(UserWarning):
    """A new template already matches a different enrolled identity."""


@attrs.frozen(repr=False)
class Enrollment:
    """The acknowledged (durable) result of an enroll or replace call."""

    identity: str
    template_ids: tuple[int, ...]
    created: bool
    replaced: int = 0
    #: Other identities that one of the new templates already matches (distance < threshold).
    conflicts: tuple[str, ...] = ()

    def __repr__(self) -> str:
        extra = f", conflicts={list(self.conflicts)}" if self.conflicts else ""
        verb = "created" if self.created else "updated"
        return f"<Enrollment {self.identity!r} {verb}, {len(self.template_ids)} templates{extra}>"


@attrs.frozen
class RebuildReport:
    """What :func:`rebuild_index` found and did."""

    index_path: str
    previous: str  # "ok", "missing", "stale", "corrupt"
    reason: str
    identities: int
    templates: int
    sequence: int
    checked: tuple[str, ...]


def index_path_for(store: str | os.PathLike[str]) -> Path:
    """Where the index cache of *store* lives: next to it, with ``.index`` appended."""
    path = Path(store)
    return path.with_name(path.name + ".index")


class Enroller:
    """Adds, replaces and removes identities durably and keeps :attr:`matcher` in step.

    >>> enroller = Enroller("faces.db", model_id="ffem-am-128-…", dim=128)  # doctest: +SKIP

    Every call returns only after the store's transaction is on disk. The index file
    is written by :meth:`close` (and :meth:`save_index`); after a crash it is stale and
    is rebuilt from the store on the next open.
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        model_id: str,
        dim: int,
        *,
        threshold: float = 0.5,
        index_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.codec = FeatureCodec(model_id, dim)
        self._store = SQLiteStore(store, model_id=model_id, dim=dim)
        self._index_path = Path(index_path) if index_path else index_path_for(store)
        self._lock = threading.RLock()
        self.matcher, self.index_status = _load_or_rebuild(
            self._store, self._index_path, threshold=threshold
        )
        self._closed = False

    @classmethod
    def open(cls, store: str | os.PathLike[str], **kwargs: Any) -> Enroller:
        """Open an existing store with the model id and dimension it was created for."""
        meta = SQLiteStore.read_meta(store)
        return cls(store, meta["model_id"], int(meta["dim"]), **kwargs)

    # -- properties -----------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._store.model_id

    @property
    def dim(self) -> int:
        return self._store.dim

    @property
    def store_path(self) -> Path:
        return self._store.path

    @property
    def index_path(self) -> Path:
        return self._index_path

    def __repr__(self) -> str:
        return (
            f"<Enroller {str(self._store.path)!r} model={self.model_id!r} "
            f"{len(self.matcher.identities)} identities, {len(self.matcher)} templates>"
        )

    # -- mutations ------------------------------------------------------------------------

    def enroll(
        self,
        identity: str,
        vectors: Any,
        *,
        display_name: str | None = None,
        external_id: str | None = None,
    ) -> Enrollment:
        """Add templates to *identity* (created when new); return once they are durable.

        *vectors* is one feature vector, a 2-D array of them, or encoded payloads
        (``bytes`` or base64url ``str``, one or a list) exactly as a client sends them:
        payloads are checked against this enroller's model id by its :attr:`codec`.
        Warns with :class:`PossibleDuplicateWarning` when a new template already matches
        another identity.
        """
        return self._write(identity, vectors, display_name, external_id, replace=False)

    def replace(
        self,
        identity: str,
        vectors: Any,
        *,
        display_name: str | None = None,
        external_id: str | None = None,
    ) -> Enrollment:
        """Replace every template of *identity* by *vectors* in one transaction."""
        return self._write(identity, vectors, display_name, external_id, replace=True)

    def remove(self, identity: str) -> int:
        """Remove *identity* and its templates durably; return how many templates went."""
        name = normalize_identity(identity)
        with self._lock:
            removed = self._store.remove(name)
            self.matcher.remove(name)
        return len(removed)

    def _write(
        self,
        identity: str,
        vectors: Any,
        display_name: str | None,
        external_id: str | None,
        *,
        replace: bool,
    ) -> Enrollment:
        name = normalize_identity(identity)
        matrix = self._coerce(vectors)
        with self._lock:
            conflicts = self._conflicts(name, matrix)
            created = name not in self.matcher
            new_ids, removed = self._store.add(
                name, matrix, display_name=display_name, external_id=external_id,
                replace=replace,
            )
            # The store has committed: bring the index in step. Vectors were validated
            # above, so adding them cannot fail on content.
            if len(removed):
                self.matcher.remove_templates(removed)
            self.matcher.add(name, matrix, ids=new_ids)
        if conflicts:
            warnings.warn(
                f"a new template of {name!r} already matches {', '.join(map(repr, conflicts))} "
                "(distance under the threshold): check that this is not the same person "
                "enrolled twice",
                PossibleDuplicateWarning,
                stacklevel=3,
            )
        return Enrollment(
            identity=name,
            template_ids=tuple(int(i) for i in new_ids),
            created=created,
            replaced=len(removed),
            conflicts=conflicts,
        )

    def _coerce(self, vectors: Any) -> FloatMatrix:
        if isinstance(vectors, (bytes, bytearray, memoryview, str)):
            vectors = [vectors]
        if isinstance(vectors, Sequence) and vectors and all(
            isinstance(v, (bytes, bytearray, memoryview, str)) for v in vectors
        ):
            decoded = [
                self.codec.decode_text(v) if isinstance(v, str) else self.codec.decode(v)
                for v in vectors
            ]
            return np.ascontiguousarray(np.stack(decoded), dtype=np.float32)
        matrix = as_matrix(vectors, self.dim)
        if len(matrix) == 0:
            raise InvalidFeatureError("vectors must hold at least one template (got none)",
                                      code="empty")
        check_unit_norm(matrix)
        return matrix

    def _conflicts(self, name: str, matrix: FloatMatrix) -> tuple[str, ...]:
        found: list[str] = []
        for result in self.matcher.identify_batch(matrix):
            if result.accepted and result.identity not in (name, None) and result.identity not in found:
                found.append(str(result.identity))
        return tuple(found)

    # -- reads ----------------------------------------------------------------------------

    def identities(self) -> list[IdentityRecord]:
        """Every enrolled identity with its metadata (never its vectors), sorted by name."""
        return self._store.identities()

    def get(self, identity: str) -> IdentityRecord:
        """The record of one identity; :class:`UnknownIdentityError` if absent."""
        return self._store.get(normalize_identity(identity))

    def __len__(self) -> int:
        return len(self.matcher.identities)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and identity in self.matcher

    # -- index file -----------------------------------------------------------------------

    def save_index(self) -> None:
        """Write the index cache atomically, stamped with the store's sequence number."""
        with self._lock:
            self.matcher.save(self._index_path, metadata=_manifest(self._store))

    def close(self) -> None:
        """Save the index cache and close the store. Safe to call twice."""
        if self._closed:
            return
        with self._lock:
            try:
                self.save_index()
            finally:
                self._store.close()
                self._closed = True

    def __enter__(self) -> Enroller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _manifest(store: SQLiteStore) -> dict[str, str | int]:
    return {"model_id": store.model_id, "sequence": store.sequence, "count": len(store)}


def _build_matcher(store: SQLiteStore, threshold: float) -> Matcher:
    matcher = Matcher(store.dim, threshold=threshold)
    stored = store.templates()
    by_identity: dict[str, list[int]] = {}
    for row, name in enumerate(stored.identities):
        by_identity.setdefault(name, []).append(row)
    for name, rows in by_identity.items():
        matcher.add(name, stored.vectors[rows], ids=stored.ids[rows])
    return matcher


def _load_or_rebuild(
    store: SQLiteStore, index_path: Path, *, threshold: float
) -> tuple[Matcher, str]:
    """Load the index cache if it matches the store exactly, else rebuild it from the store."""
    if not index_path.exists():
        return _build_matcher(store, threshold), "missing"
    try:
        matcher = Matcher.load(index_path, expect=_manifest(store))
    except IndexFileError as exc:
        status = "stale" if "sequence" in str(exc) or "count" in str(exc) else "corrupt"
        return _build_matcher(store, threshold), status
    if matcher.threshold != threshold:
        # The file was saved with another threshold: decisions must use the caller's.
        return _build_matcher(store, threshold), "ok"
    return matcher, "ok"


def rebuild_index(
    store: str | os.PathLike[str],
    *,
    index_path: str | os.PathLike[str] | None = None,
    threshold: float = 0.5,
) -> RebuildReport:
    """Rebuild the index file of *store* from the store alone, atomically.

    Checks SQLite's integrity, that every stored template has the store's dimension and a
    unit norm, and reports what the previous index file was (ok, missing, stale, corrupt).
    The new file replaces the old one in one rename: a crash leaves one or the other.
    """
    meta = SQLiteStore.read_meta(store)
    db = SQLiteStore(store, model_id=meta["model_id"], dim=int(meta["dim"]))
    target = Path(index_path) if index_path else index_path_for(store)
    try:
        integrity = db.integrity_check()
        if integrity != "ok":
            raise FaceIDError(
                f"SQLite integrity check of {str(store)!r} failed: {integrity}. Restore the store "
                "from a backup; the index cannot be trusted to be rebuilt from it"
            )
        previous, reason = "missing", "no index file"
        if target.exists():
            try:
                Matcher.load(target, expect=_manifest(db))
                previous, reason = "ok", "index matched the store"
            except IndexFileError as exc:
                previous = "stale" if "sequence" in str(exc) or "count" in str(exc) else "corrupt"
                reason = str(exc)
        stored = db.templates()
        if len(stored.ids):
            check_unit_norm(stored.vectors, name="stored templates")
        matcher = _build_matcher(db, threshold)
        matcher.save(target, metadata=_manifest(db))
        return RebuildReport(
            index_path=str(target),
            previous=previous,
            reason=reason,
            identities=len(matcher.identities),
            templates=len(matcher),
            sequence=db.sequence,
            checked=(
                "sqlite integrity_check",
                f"{len(stored.ids)} templates have dim {db.dim}",
                "every template is finite and unit-norm",
                f"model id {db.model_id}",
            ),
        )
    finally:
        db.close()
