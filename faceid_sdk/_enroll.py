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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._codec import FeatureCodec
from ._defaults import Threshold, resolve_threshold
from ._identity import normalize_identity
from ._match import Candidate, Identification, Matcher
from ._protect import TemplateProtector, protector_from_environment, rekey_matrix
from ._store import IdentityRecord, SQLiteStore, StoredTemplates
from ._vectors import FloatMatrix, as_matrix, check_unit_norm
from .errors import FaceIDError, IndexFileError, InvalidFeatureError, ProtectionKeyError

__all__ = [
    "Enroller",
    "Enrollment",
    "PossibleDuplicateWarning",
    "RebuildReport",
    "index_path_for",
    "open_or_create",
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


#: Matcher kinds an Enroller can serve with: exact flat scan, or FAISS HNSW / IVF.
INDEX_KINDS = ("flat", "hnsw", "ivf")


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

    With ``protector=`` (a :class:`~faceid_sdk.TemplateProtector`) every template is
    rotated with a secret key before it is stored or indexed, and :meth:`identify`,
    :meth:`verify` and :meth:`candidates` rotate queries the same way, so decisions are
    unchanged. The store records only the key's fingerprint and refuses a wrong key.
    Match through these methods, not through :attr:`matcher` directly: the matcher holds
    protected templates and would compare them with raw queries.

    ``index="hnsw"`` or ``"ivf"`` searches through a :class:`~faceid_sdk.ApproxMatcher`
    (``index_options`` are its keyword arguments, such as ``ef_search``) for galleries of
    100k templates and more; the store and the index file are the same either way.
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        model_id: str,
        dim: int,
        *,
        threshold: float | str | None = None,
        index_path: str | os.PathLike[str] | None = None,
        protector: TemplateProtector | None = None,
        runner_up: bool = False,
        index: str = "flat",
        index_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._index_kind = _check_index(index, index_options)
        self._index_options = dict(index_options or {})
        self.codec = FeatureCodec(model_id, dim)
        self._store = SQLiteStore(store, model_id=model_id, dim=dim)
        try:
            _check_protection(self._store, protector)
        except BaseException:
            self._store.close()
            raise
        self._store.expected_key_id = None if protector is None else protector.key_id
        #: The decision threshold in force and where it came from (see resolve_threshold).
        self.threshold: Threshold = resolve_threshold(
            threshold, model_id=model_id, stored=self._store.calibrated_threshold
        )
        self._index_path = Path(index_path) if index_path else index_path_for(store)
        self._lock = threading.RLock()
        # The store sequence the matcher reflects; read before building it, so a write by
        # another process during the build is applied by the first _sync().
        self._synced = self._store.sequence
        # identity -> display name; replaced (not mutated) whenever the store changes.
        self._display_names: dict[str, str | None] = {}
        try:
            matcher, self.index_status = _load_or_rebuild(
                self._store, self._index_path, threshold=self.threshold.value,
                runner_up=runner_up,
                index=self._index_kind, options=self._index_options,
            )
        except BaseException:
            self._store.close()
            raise
        # One attribute for both, swapped in one assignment by rotate_key: a concurrent
        # query never pairs the new key with the old templates.
        self._state: tuple[TemplateProtector | None, Matcher] = (protector, matcher)
        self._closed = False

    @classmethod
    def open(cls, store: str | os.PathLike[str], **kwargs: Any) -> Enroller:
        """Open an existing store with the model id and dimension it was created for.

        A store whose templates are protected needs its key: ``protector=``, else the key
        file in ``$FACEID_TEMPLATE_KEY_FILE`` or the hex key in ``$FACEID_TEMPLATE_KEY``
        (read only for protected stores).
        """
        meta = SQLiteStore.read_meta(store)
        dim = int(meta["dim"])
        if kwargs.get("protector") is None and meta.get("protection_key_id"):
            kwargs["protector"] = protector_from_environment(dim)
        return cls(store, meta["model_id"], dim, **kwargs)

    # -- properties -----------------------------------------------------------------------

    @property
    def matcher(self) -> Matcher:
        """The in-memory index. With a protector its templates are rotated: match through
        :meth:`identify` and :meth:`verify`, which rotate the query too."""
        return self._state[1]

    @property
    def protector(self) -> TemplateProtector | None:
        """The template protection in force, or ``None`` when templates are stored raw."""
        return self._state[0]

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
            self._sync()
            removed = self._store.remove(name)
            self.matcher.remove(name)
            self._advance()
        return len(removed)

    def sync(self) -> int:
        """Apply what other processes committed to the store since the index last saw it.

        Several processes may share one store (server workers, a CLI enrolling while the
        server runs): every read and write here calls this first, at the cost of reading
        one SQLite row when nothing changed. Returns how many templates were added or
        removed. A store re-keyed by another process raises :class:`ProtectionKeyError`:
        reopen it with the new key.
        """
        with self._lock:
            return self._sync()

    def _sync(self) -> int:
        # Caller holds self._lock.
        if self._store.sequence == self._synced:
            return 0
        sequence, stored = self._store.template_id_snapshot()
        if self._store.protection_key_id != self._store.expected_key_id:
            raise ProtectionKeyError(
                f"the store {str(self._store.path)!r} was re-keyed by another process: reopen "
                "it with the new key (restart the server with the new $FACEID_TEMPLATE_KEY_FILE)"
            )
        matcher = self.matcher
        current = matcher.all_template_ids()
        gone = np.setdiff1d(current, stored, assume_unique=True)
        new = np.setdiff1d(stored, current, assume_unique=True)
        if len(gone):
            matcher.remove_templates(gone)
        if len(new):
            _add_stored(matcher, self._store.templates_with_ids(new.tolist()))
        self._synced = sequence
        self._display_names = {}
        return len(gone) + len(new)

    def _advance(self) -> None:
        # After our own write: if nobody else wrote since we were in step, we still are.
        self._display_names = {}
        if self._store.last_write_sequence == self._synced + 1:
            self._synced += 1

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
        raw = self._coerce(vectors)
        with self._lock:
            self._sync()
            protector = self.protector
            matrix = raw if protector is None else protector.protect(raw)
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
            self._advance()
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
            other = result.identity
            if result.accepted and other not in (name, None) and other not in found:
                found.append(str(result.identity))
        return tuple(found)

    # -- matching (queries are protected like the templates) --------------------------------

    def _query(self, vector: Any, name: str) -> tuple[Matcher, FloatMatrix]:
        if self._store.sequence != self._synced:
            with self._lock:
                self._sync()
        if isinstance(vector, (bytes, bytearray, memoryview)):
            vector = self.codec.decode(vector)
        elif isinstance(vector, str):
            vector = self.codec.decode_text(vector)
        protector, matcher = self._state
        matrix = as_matrix(vector, self.dim, name=name)
        if len(matrix):
            check_unit_norm(matrix, name=name)
        return matcher, (matrix if protector is None else protector.protect(matrix, name=name))

    def identify(self, vector: Any) -> Identification:
        """1:N search of one query (a vector or an encoded payload), protected if need be."""
        matcher, query = self._query(vector, "query")
        return matcher.identify(query)

    def identify_batch(self, vectors: Any) -> list[Identification]:
        """:meth:`identify` for each row of a matrix, in one search."""
        matcher, queries = self._query(vectors, "queries")
        return matcher.identify_batch(queries)

    def verify(self, vector: Any, identity: str) -> Identification:
        """1:1 check of one query against the claimed *identity* only."""
        matcher, query = self._query(vector, "query")
        return matcher.verify(query, identity)

    def candidates(self, vector: Any, k: int = 5) -> list[Candidate]:
        """Up to *k* nearest distinct identities, for a human review list."""
        matcher, query = self._query(vector, "query")
        return matcher.candidates(query, k=k)

    # -- template protection ----------------------------------------------------------------

    def rotate_key(self, new: TemplateProtector | None) -> int:
        """Re-key every stored template from the current protector to *new*, durably.

        One store transaction rewrites every template (``None`` removes protection; from an
        unprotected store, *new* protects it). Nobody enrolls again: the rotation between
        two keys is itself a rotation, so raw vectors never exist during the change. The
        index is rebuilt from the store and saved. Returns the number of templates
        re-keyed. After a leak: rotate, then destroy the old key.
        """
        if new is not None and not isinstance(new, TemplateProtector):
            raise ProtectionKeyError(
                f"new must be a TemplateProtector or None (got {type(new).__name__})"
            )
        with self._lock:
            self._sync()
            old, matcher = self._state
            if old == new:
                return 0
            transform = rekey_matrix(old, new, self.dim)
            count = self._store.rekey(
                transform,
                old_key_id=None if old is None else old.key_id,
                new_key_id=None if new is None else new.key_id,
            )
            rebuilt = _build_matcher(
                self._store, matcher.threshold, reject_ambiguous=matcher.reject_ambiguous,
                runner_up=matcher.runner_up, index=self._index_kind,
                options=self._index_options,
            )
            self._state = (new, rebuilt)
            # Rebuilt from the store after our commit: at least that recent.
            self._synced = self._store.last_write_sequence
            self.save_index()
        return count

    # -- reads ----------------------------------------------------------------------------

    def save_calibrated_threshold(self, value: float, note: str) -> None:
        """Keep *value* as this store's own threshold (``faceid-sdk calibrate --save``).

        Every later open of the store (CLI, ``serve``, the SDK) uses it unless a threshold is
        given explicitly; this Enroller keeps the one it was opened with.
        """
        self._store.save_calibrated_threshold(value, note)

    def identities(self) -> list[IdentityRecord]:
        """Every enrolled identity with its metadata (never its vectors), sorted by name."""
        return self._store.identities()

    def get(self, identity: str) -> IdentityRecord:
        """The record of one identity; :class:`UnknownIdentityError` if absent."""
        return self._store.get(normalize_identity(identity))

    def display_name(self, identity: str) -> str | None:
        """The display name of *identity* (``None`` if it has none), from an in-memory
        cache that follows the store; :class:`UnknownIdentityError` if absent."""
        name = normalize_identity(identity)
        cache = self._display_names
        if name not in cache:
            record = self._store.get(name)
            if self._store.sequence == self._synced:  # do not cache across a change
                cache[name] = record.display_name
            return record.display_name
        return cache[name]

    def __len__(self) -> int:
        return len(self.matcher.identities)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and identity in self.matcher

    # -- index file -----------------------------------------------------------------------

    def save_index(self) -> None:
        """Write the index cache atomically, stamped with the store's sequence number."""
        with self._lock:
            self._sync()
            # Stamped with the sequence the matcher reflects, not the store's latest: if
            # another process wrote meanwhile, the file is stale and is rebuilt at open.
            manifest = _manifest(self._store)
            manifest["sequence"] = self._synced
            manifest["count"] = len(self.matcher)
            self.matcher.save(self._index_path, metadata=manifest)

    def close(self) -> None:
        """Save the index cache and close the store. Safe to call twice."""
        if self._closed:
            return
        with self._lock:
            try:
                self.save_index()
            except ProtectionKeyError:
                pass  # re-keyed elsewhere: this index is obsolete; the next open rebuilds it
            finally:
                self._store.close()
                self._closed = True

    def __enter__(self) -> Enroller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_or_create(
    store: str | os.PathLike[str],
    *,
    model_id: str | None = None,
    dim: int | None = None,
    threshold: float | str | None = None,
    index: str = "flat",
    index_options: Mapping[str, Any] | None = None,
    runner_up: bool = False,
) -> Enroller:
    """Open *store*, or create it for *model_id*/*dim* (default: the shipped model).

    *index* picks the matcher the Enroller searches with (``"flat"``, ``"hnsw"`` or
    ``"ivf"``; see :data:`INDEX_KINDS`), *index_options* its keyword arguments.

    A new store is protected with the key named by ``$FACEID_TEMPLATE_KEY_FILE`` or
    ``$FACEID_TEMPLATE_KEY`` when one is set, so setting the key before the first
    enrollment is enough to protect every template from the start.
    """
    if Path(store).exists():
        return Enroller.open(store, threshold=threshold, index=index,
                             index_options=index_options, runner_up=runner_up)
    if model_id is None or dim is None:
        from ._defaults import default_model_info

        info = default_model_info()
        model_id, dim = model_id or info.model_id, dim or info.dim
    return Enroller(store, model_id, dim, threshold=threshold,
                    protector=protector_from_environment(dim), index=index,
                    index_options=index_options, runner_up=runner_up)


def _manifest(store: SQLiteStore) -> dict[str, str | int]:
    return {
        "model_id": store.model_id,
        "sequence": store.sequence,
        "count": len(store),
        # Another store's file can agree on everything above; never on these two.
        "store_id": store.store_id,
        "protection_key_id": store.protection_key_id or "",
    }


def _check_protection(store: SQLiteStore, protector: TemplateProtector | None) -> None:
    """Refuse a missing or wrong key; key a new, empty store with *protector*."""
    if protector is not None and not isinstance(protector, TemplateProtector):
        raise ProtectionKeyError(
            f"protector must be a TemplateProtector (got {type(protector).__name__}): use "
            "TemplateProtector.from_key_file(path, dim)"
        )
    if protector is not None and protector.dim != store.dim:
        raise ProtectionKeyError(
            f"protector dim must be the store's dim {store.dim} (got {protector.dim}): build "
            f"it with TemplateProtector.from_key_file(path, {store.dim})"
        )
    stored = store.protection_key_id
    given = None if protector is None else protector.key_id
    if stored == given:
        return
    if stored is None and protector is not None:
        if len(store) == 0:
            store.rekey(np.eye(store.dim), old_key_id=None, new_key_id=protector.key_id)
            return
        raise ProtectionKeyError(
            f"store {str(store.path)!r} holds {len(store)} unprotected templates, and a "
            "protector was given: protect them first with `faceid-sdk rotate-key "
            "--new-key-file KEY` (Enroller.rotate_key), or open the store without a key"
        )
    if protector is None:
        raise ProtectionKeyError(
            f"store {str(store.path)!r} holds templates protected with key id {stored}: give "
            "that key (protector=TemplateProtector.from_key_file(path, dim), --key-file, or "
            "$FACEID_TEMPLATE_KEY_FILE)"
        )
    raise ProtectionKeyError(
        f"store {str(store.path)!r} is keyed with key id {stored}, the key given has id "
        f"{given}: use the key the store was protected with (a rotated-out key no longer works)"
    )


def _check_index(index: object, options: Mapping[str, Any] | None) -> str:
    if index not in INDEX_KINDS:
        raise InvalidFeatureError(
            f"index must be one of {', '.join(INDEX_KINDS)} (got {index!r}): flat is exact; "
            "hnsw and ivf are approximate, for large galleries (docs/scaling.md)",
            code="index",
        )
    if index == "flat" and options:
        raise InvalidFeatureError(
            f"index_options apply to hnsw and ivf only (got {sorted(options)} with flat)",
            code="index",
        )
    return str(index)


def _adopt(flat: Matcher, index: str, options: Mapping[str, Any]) -> Matcher:
    """*flat* itself, or an approximate matcher built over its gallery in one go."""
    if index == "flat":
        return flat
    from ._match_ann import ApproxMatcher

    return ApproxMatcher.from_matcher(flat, index=index, **options)


def _build_matcher(
    store: SQLiteStore, threshold: float, *, reject_ambiguous: bool = False,
    runner_up: bool = False, index: str = "flat", options: Mapping[str, Any] | None = None,
) -> Matcher:
    matcher = Matcher(store.dim, threshold=threshold, reject_ambiguous=reject_ambiguous,
                      runner_up=runner_up)
    _add_stored(matcher, store.templates())
    return _adopt(matcher, index, options or {})


def _add_stored(matcher: Matcher, stored: StoredTemplates) -> None:
    """Add stored templates to *matcher* under their store ids, one call per identity."""
    by_identity: dict[str, list[int]] = {}
    for row, name in enumerate(stored.identities):
        by_identity.setdefault(name, []).append(row)
    for name, rows in by_identity.items():
        matcher.add(name, stored.vectors[rows], ids=stored.ids[rows])


def _load_or_rebuild(
    store: SQLiteStore, index_path: Path, *, threshold: float, runner_up: bool = False,
    index: str = "flat", options: Mapping[str, Any] | None = None,
) -> tuple[Matcher, str]:
    """Load the index cache if it matches the store exactly, else rebuild it from the store."""
    options = options or {}

    def rebuilt() -> Matcher:
        return _build_matcher(store, threshold, runner_up=runner_up, index=index,
                              options=options)

    if not index_path.exists():
        return rebuilt(), "missing"
    try:
        matcher = Matcher.load(index_path, expect=_manifest(store))
    except IndexFileError as exc:
        status = "stale" if "sequence" in str(exc) or "count" in str(exc) else "corrupt"
        return rebuilt(), status
    if matcher.threshold != threshold or matcher.runner_up != runner_up:
        # Saved with other settings: decisions must follow the caller's.
        return rebuilt(), "ok"
    return _adopt(matcher, index, options), "ok"


def rebuild_index(
    store: str | os.PathLike[str],
    *,
    index_path: str | os.PathLike[str] | None = None,
    threshold: float | str | None = None,
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
        chosen = resolve_threshold(threshold, model_id=meta["model_id"],
                                   stored=db.calibrated_threshold)
        matcher = _build_matcher(db, chosen.value)
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
