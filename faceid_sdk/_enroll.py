"""Enrollment: the durable store and the gallery that searches it, kept in step.

The store is the root of trust; a FAISS gallery's index file (``<store>.index``) is only a
cache, believed when it is this store's (store id, model, key), at the store's sequence,
and when the digest of what it actually holds equals the store's content digest. Anything
else is rebuilt from the store and :attr:`Enroller.index_status` says why (``missing``,
``stale``, ``foreign``, ``mismatch``, ``format``, ``corrupt``). An index *ahead* of its
store means acknowledged writes were lost (a deleted WAL, an older backup restored): that
is refused loudly (:class:`~faceid_sdk.StoreError`), never served, until
``faceid-sdk rebuild-index`` accepts the store as it is.

Decisions follow one :class:`~faceid_sdk.DecisionPolicy` (:attr:`Enroller.policy`), the
same for the SDK, the CLI and the server.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._atomic import remove_orphaned_temporaries
from ._codec import FeatureCodec
from ._defaults import REJECT_AMBIGUOUS, Threshold, resolve_threshold
from ._protect import TemplateProtector, protector_from_environment, rekey_matrix
from ._store import IdentityRecord, StoredTemplates
from ._stores import (
    Store,
    describe,
    is_postgres_url,
    open_store,
    read_store_meta,
    store_exists,
)
from .errors import (
    IndexFileError,
    InvalidFeatureError,
    ProtectionKeyError,
    StoreError,
)
from .identity import check_text, normalize_identity
from .keys import ApiKey, check_key_name, parse_key, resolve_scopes
from .matching import (
    Candidate,
    DecisionPolicy,
    Gallery,
    Identification,
    Matcher,
    read_manifest,
)
from .vectors import FloatMatrix, as_matrix, check_unit_norm

__all__ = [
    "INDEX_KINDS",
    "Enroller",
    "Enrollment",
    "IndexCacheWarning",
    "PossibleDuplicateWarning",
    "RebuildReport",
    "index_path_for",
    "open_or_create",
    "rebuild_index",
]


class PossibleDuplicateWarning(UserWarning):
    """A new template already matches a different enrolled identity."""


class IndexCacheWarning(UserWarning):
    """The index cache could not be written; the store is intact and the next open rebuilds."""


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
    previous: str  # "ok", "missing", "stale", "ahead", "foreign", "mismatch", "format", "corrupt"
    reason: str
    identities: int
    templates: int
    sequence: int
    checked: tuple[str, ...]


#: Gallery backends an Enroller can serve with: exact flat scan, FAISS HNSW / IVF, Milvus
#: (milvus-lite next to the store, or a server given by URI in ``index_options["uri"]``).
INDEX_KINDS = ("flat", "hnsw", "ivf", "milvus")


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
    ``index="milvus"`` keeps the gallery in Milvus (``index_options``: ``uri``, default a
    milvus-lite file next to the store, and the other arguments of ``MilvusMatcher``),
    reconciled with the store on open and kept in step after.

    Decisions: ``policy=`` a :class:`~faceid_sdk.DecisionPolicy`, or the parts of one:
    ``threshold`` (resolved by :func:`~faceid_sdk.resolve_threshold`), ``reject_ambiguous``
    (default :data:`~faceid_sdk._defaults.REJECT_AMBIGUOUS`, the same as the CLI's and the
    server's) and ``runner_up``.
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
        reject_ambiguous: bool = REJECT_AMBIGUOUS,
        runner_up: bool = False,
        policy: DecisionPolicy | None = None,
        index: str = "flat",
        index_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._index_kind = _check_index(index, index_options)
        self._index_options = dict(index_options or {})
        self.codec = FeatureCodec(model_id, dim)
        self._store = open_store(store, model_id=model_id, dim=dim)
        self._closed = True  # until the gallery is ready: close() must not save anything
        try:
            _check_protection(self._store, protector)
            self._store.expected_key_id = None if protector is None else protector.key_id
            #: The decision threshold in force and where it came from (see resolve_threshold).
            self.threshold: Threshold = resolve_threshold(
                policy.threshold if policy is not None and threshold is None else threshold,
                model_id=model_id, stored=self._store.calibrated_threshold,
            )
            if policy is None:
                policy = DecisionPolicy(self.threshold.value, reject_ambiguous=reject_ambiguous,
                                        runner_up=runner_up)
            #: How every answer is decided (identify, verify, the server's, the CLI's).
            self.policy: DecisionPolicy = policy.evolve(threshold=self.threshold.value)
            # A PostgreSQL store has no folder to keep a cache in: its replicas build their
            # galleries from it (or take an explicit index_path).
            self._index_path: Path | None = (
                Path(index_path) if index_path else
                None if is_postgres_url(store) else index_path_for(store))
            self._lock = threading.RLock()
            # identity -> display name; replaced (not mutated) whenever the store changes.
            self._display_names: dict[str, str | None] = {}
            if self._index_path is not None:
                remove_orphaned_temporaries(self._index_path)
            matcher, self.index_status, self._synced = _open_gallery(
                self._store, self._index_path, self.policy, self._index_kind,
                self._index_options,
            )
        except BaseException:
            self._store.close()
            raise
        # One attribute for both, swapped in one assignment by rotate_key: a concurrent
        # query never pairs the new key with the old templates.
        self._state: tuple[TemplateProtector | None, Gallery] = (protector, matcher)
        self._closed = False

    @classmethod
    def open(cls, store: str | os.PathLike[str], **kwargs: Any) -> Enroller:
        """Open an existing store with the model id and dimension it was created for.

        A store whose templates are protected needs its key: ``protector=``, else the key
        file in ``$FACEID_TEMPLATE_KEY_FILE`` or the hex key in ``$FACEID_TEMPLATE_KEY``
        (read only for protected stores).
        """
        meta = read_store_meta(store)
        dim = int(meta["dim"])
        if kwargs.get("protector") is None and meta.get("protection_key_id"):
            kwargs["protector"] = protector_from_environment(dim)
        return cls(store, meta["model_id"], dim, **kwargs)

    # -- properties -----------------------------------------------------------------------

    @property
    def matcher(self) -> Gallery:
        """The gallery (a :class:`~faceid_sdk.Matcher` unless ``index="milvus"``). With a
        protector its templates are rotated: match through :meth:`identify` and
        :meth:`verify`, which rotate the query too."""
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
    def store_path(self) -> Path | str:
        return self._store.path

    @property
    def index_path(self) -> Path | None:
        """The index cache file, or ``None`` (a PostgreSQL store without one)."""
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
            # What the store removed, by id: another process may have enrolled this name
            # after our last sync, so the gallery need not know every one of these ids.
            self.matcher.remove_templates(removed)
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
        changed = _apply_ids(self.matcher, self._store, stored)
        self._synced = sequence
        self._display_names = {}
        return changed

    def _advance(self) -> None:
        # After our own write: if nobody else wrote since we were in step, we still are;
        # otherwise apply the others' writes now, so the next answer reflects them.
        self._display_names = {}
        if self._store.last_write_sequence == self._synced + 1:
            self._synced += 1
        else:
            self._sync()

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
        if display_name is not None:
            check_text(display_name, field="display_name")
        if external_id is not None:
            check_text(external_id, field="external_id")
        raw = self._coerce(vectors)
        with self._lock:
            self._sync()
            protector = self.protector
            matrix = raw if protector is None else protector.protect(raw)
            conflicts = self._conflicts(name, matrix)
            written = self._store.add(
                name, matrix, display_name=display_name, external_id=external_id,
                replace=replace,
            )
            new_ids, removed, created = written.new_ids, written.removed_ids, written.created
            # The store has committed: bring the gallery in step (another process may have
            # written since our sync: _advance catches up with it). Vectors were validated
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
        """Other identities a new template is under the threshold of (ambiguous or not)."""
        found: list[str] = []
        threshold = self.policy.threshold
        for vector in matrix:
            for candidate in self.matcher.candidates(vector, k=2):
                other = candidate.identity
                if candidate.distance < threshold and other != name and other not in found:
                    found.append(other)
        return tuple(found)

    # -- matching (queries are protected like the templates) --------------------------------

    def _query(self, vector: Any, name: str) -> tuple[Gallery, FloatMatrix]:
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
            sequence = self._store.content_state().sequence
            rebuilt = _build_gallery(self._store, self.policy, self._index_kind,
                                     self._index_options, reuse=matcher)
            self._state = (new, rebuilt)
            # Rebuilt from the store after our commit: at least that recent.
            self._synced = sequence
            self.save_index()
        return count

    # -- reads ----------------------------------------------------------------------------

    def save_calibrated_threshold(self, value: float, note: str) -> None:
        """Keep *value* as this store's own threshold (``faceid-sdk calibrate --save``).

        Every later open of the store (CLI, ``serve``, the SDK) uses it unless a threshold is
        given explicitly; this Enroller keeps the one it was opened with.
        """
        self._store.save_calibrated_threshold(value, note)

    # -- API keys ---------------------------------------------------------------------------

    def create_api_key(self, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
        """A new key for a service: its record and the key text, which is shown only now."""
        return self._store.add_api_key(check_key_name(name), resolve_scopes(scopes))

    def api_keys(self) -> list[ApiKey]:
        """Every key (active and revoked), never a secret."""
        return self._store.api_keys()

    def revoke_api_key(self, name: str) -> ApiKey:
        """Revoke a key at once (every server on this store refuses it from its next request)."""
        return self._store.revoke_api_key(name)

    def has_api_keys(self) -> bool:
        """Whether any key is active: then every scoped operation needs one."""
        return self._store.has_active_api_keys()

    def authenticate(self, key: str) -> ApiKey | None:
        """The active key *key* is, or ``None`` (malformed, unknown, wrong secret, revoked)."""
        parsed = parse_key(key)
        return None if parsed is None else self._store.authenticate(*parsed)

    def check_store(self) -> None:
        """Raise :class:`~faceid_sdk.StoreError` unless SQLite's quick check passes.

        ``serve`` runs it before answering anyone: a damaged page must stop the server with a
        clear error, not let it answer from whatever part of the file still reads.
        """
        verdict = self._store.integrity_check(quick=True)
        if verdict != "ok":
            raise StoreError(
                f"the store {str(self._store.path)!r} is damaged (SQLite: {verdict}): restore it "
                "from a backup, then run `faceid-sdk rebuild-index`"
            )

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
        """Write the index cache atomically, stamped with the store's sequence number.

        Only FAISS galleries have an index file (Milvus persists itself): a no-op otherwise.
        """
        with self._lock:
            self._sync()
            matcher = self.matcher
            if not isinstance(matcher, Matcher) or self._index_path is None:
                return
            # Stamped with the sequence the matcher reflects, not the store's latest: if
            # another process wrote meanwhile, the file is stale and is rebuilt at open.
            manifest = _manifest(self._store)
            manifest["sequence"] = self._synced
            matcher.save(self._index_path, metadata=manifest)

    def close(self) -> None:
        """Save the index cache and close the store. Safe to call twice.

        The index is only a cache: when it cannot be written (a full disk) everything stored
        is intact, so this warns with :class:`IndexCacheWarning` instead of failing, and the
        next open rebuilds the index from the store.
        """
        if self._closed:
            return
        with self._lock:
            try:
                self.save_index()
            except ProtectionKeyError:
                pass  # re-keyed elsewhere: this index is obsolete; the next open rebuilds it
            except (StoreError, OSError) as exc:
                warnings.warn(
                    f"the index cache was not saved ({exc}); every enrollment is in the store, "
                    "and the next open rebuilds the index from it",
                    IndexCacheWarning, stacklevel=2,
                )
            finally:
                self._store.close()
                self._closed = True
                backend_close = getattr(self.matcher, "close", None)
                if callable(backend_close):
                    backend_close()

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
    reject_ambiguous: bool = REJECT_AMBIGUOUS,
    runner_up: bool = False,
) -> Enroller:
    """Open *store*, or create it for *model_id*/*dim* (default: the shipped model).

    *index* picks the gallery backend (see :data:`INDEX_KINDS`), *index_options* its
    keyword arguments; *threshold*, *reject_ambiguous* and *runner_up* make the
    :class:`~faceid_sdk.DecisionPolicy`.

    A new store is protected with the key named by ``$FACEID_TEMPLATE_KEY_FILE`` or
    ``$FACEID_TEMPLATE_KEY`` when one is set, so setting the key before the first
    enrollment is enough to protect every template from the start.
    """
    options: dict[str, Any] = {"threshold": threshold, "index": index,
                               "index_options": index_options,
                               "reject_ambiguous": reject_ambiguous, "runner_up": runner_up}
    if store_exists(store):
        return Enroller.open(store, **options)
    if model_id is None or dim is None:
        from ._defaults import default_model_info

        info = default_model_info()
        model_id, dim = model_id or info.model_id, dim or info.dim
    return Enroller(store, model_id, dim, protector=protector_from_environment(dim), **options)


def _manifest(store: Store) -> dict[str, str | int]:
    """What an index file must say about its store to be believed (besides its sequence)."""
    return {
        "model_id": store.model_id,
        # Another store's file can agree on everything else; never on these two.
        "store_id": store.store_id,
        "protection_key_id": store.protection_key_id or "",
    }


def _check_protection(store: Store, protector: TemplateProtector | None) -> None:
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
            "hnsw and ivf are approximate, for large galleries; milvus keeps the gallery in "
            "Milvus (docs/scaling.md)",
            code="index",
        )
    if index == "flat" and options:
        raise InvalidFeatureError(
            f"index_options apply to hnsw, ivf and milvus only (got {sorted(options)} with flat)",
            code="index",
        )
    return str(index)


def _empty_gallery(store: Store, policy: DecisionPolicy, index: str,
                   options: Mapping[str, Any]) -> Gallery:
    """A new, empty gallery of kind *index* (Milvus: the collection, as it is)."""
    if index == "flat":
        return Matcher(store.dim, policy=policy)
    if index in ("hnsw", "ivf"):
        from .matching import ApproxMatcher

        return ApproxMatcher(store.dim, index=index, policy=policy, **options)  # type: ignore[arg-type]
    try:
        from faceid_adapters.milvus import MilvusMatcher
    except ImportError as exc:  # pragma: no cover - the adapters ship with the package
        from .errors import BackendUnavailableError

        raise BackendUnavailableError(
            "the Milvus gallery needs faceid-sdk[milvus]: pip install 'faceid-sdk[milvus]'"
        ) from exc
    settings = dict(options)
    uri = settings.pop("uri", None)
    if uri is None:
        if not isinstance(store.path, Path):
            raise InvalidFeatureError(
                "a PostgreSQL store has no folder for a milvus-lite file: give the Milvus "
                "server's URI (index_options={'uri': ...}, serve --milvus-uri)", code="index")
        uri = str(store.path.with_name(store.path.name + ".milvus.db"))
    gallery: Gallery = MilvusMatcher(uri, store.dim, policy=policy, **settings)
    return gallery


def _build_gallery(store: Store, policy: DecisionPolicy, index: str,
                   options: Mapping[str, Any], *, reuse: Gallery | None = None) -> Gallery:
    """A gallery holding exactly the store's templates, built from the store alone."""
    stored = store.templates()
    if len(stored.ids):
        check_unit_norm(stored.vectors, name="stored templates")
    if index == "milvus":
        gallery = reuse if reuse is not None else _empty_gallery(store, policy, index, options)
        gallery.remove_templates(gallery.all_template_ids())
        _add_stored(gallery, stored)
        return gallery
    flat = Matcher(store.dim, policy=policy)
    _add_stored(flat, stored)
    if index == "flat":
        return flat
    gallery = _empty_gallery(store, policy, index, options)
    assert isinstance(gallery, Matcher)
    gallery.take_over(flat)
    return gallery


def _add_stored(matcher: Gallery, stored: StoredTemplates) -> None:
    """Add stored templates to *matcher* under their store ids, one call per identity."""
    by_identity: dict[str, list[int]] = {}
    for row, name in enumerate(stored.identities):
        by_identity.setdefault(name, []).append(row)
    for name, rows in by_identity.items():
        matcher.add(name, stored.vectors[rows], ids=stored.ids[rows])


def _lost_writes(store: Store, index_path: Path, index_sequence: int, sequence: int
                 ) -> StoreError:
    return StoreError(
        f"the store {str(store.path)!r} is at sequence {sequence} but its index "
        f"{str(index_path)!r} reflected sequence {index_sequence}: acknowledged writes are "
        "missing from the store (a deleted -wal file, or an older backup restored). Restore "
        "the store's latest copy; to serve it as it is, run `faceid-sdk rebuild-index`"
    )


def _check_index_file(store: Store, index_path: Path, policy: DecisionPolicy,
                      index: str, options: Mapping[str, Any]) -> tuple[Matcher, int]:
    """The cached gallery if it is exactly the store's; :class:`IndexFileError` otherwise."""
    state = store.content_state()
    manifest = read_manifest(index_path)
    if manifest.metadata.get("store_id") != state.store_id:
        raise IndexFileError(f"index file {str(index_path)!r} belongs to another store",
                             reason="foreign")
    sequence = manifest.metadata.get("sequence")
    if not isinstance(sequence, int):
        raise IndexFileError(f"index file {str(index_path)!r} has no sequence", reason="foreign")
    if sequence > state.sequence:
        raise IndexFileError(f"index is at sequence {sequence}, the store at {state.sequence}",
                             reason="ahead")
    if sequence < state.sequence:
        raise IndexFileError(
            f"index is at sequence {sequence}, the store has moved on to {state.sequence}",
            reason="stale",
        )
    for key, wanted in _manifest(store).items():
        if manifest.metadata.get(key) != wanted:
            raise IndexFileError(
                f"index file {str(index_path)!r} was made for another model or key "
                f"({key} differs)", reason="foreign",
            )
    if manifest.content_digest != state.digest or manifest.count != state.templates:
        raise IndexFileError(
            f"index file {str(index_path)!r} claims the store's sequence {sequence} but not its "
            "content (forged, or a copy restored from elsewhere)", reason="mismatch",
        )
    # Recomputes the digest of what the file actually holds: a manifest edited to claim the
    # store's digest does not get past this.
    matcher = Matcher.load(index_path, policy=policy)
    if index in ("hnsw", "ivf"):
        gallery = _empty_gallery(store, policy, index, options)
        assert isinstance(gallery, Matcher)
        gallery.take_over(matcher)
        matcher = gallery
    return matcher, state.sequence


def _apply_ids(gallery: Gallery, store: Store, stored_ids: np.ndarray) -> int:
    """Bring *gallery* to exactly *stored_ids* (the store's): drop the others, add the
    missing ones from the store. Returns how many templates changed. Used by every sync
    and by the reconciliation of an external gallery (Milvus) at open."""
    held = gallery.all_template_ids()
    extra = np.setdiff1d(held, stored_ids, assume_unique=True)
    missing = np.setdiff1d(stored_ids, held, assume_unique=True)
    if len(extra):
        gallery.remove_templates(extra)
    if len(missing):
        _add_stored(gallery, store.templates_with_ids(missing.tolist()))
    return len(extra) + len(missing)


def _open_gallery(store: Store, index_path: Path | None, policy: DecisionPolicy, index: str,
                  options: Mapping[str, Any]) -> tuple[Gallery, str, int]:
    """``(gallery, index status, store sequence it reflects)`` for an Enroller's open."""
    if index == "milvus":
        sequence = store.content_state().sequence
        gallery = _empty_gallery(store, policy, index, options)
        changed = _apply_ids(gallery, store, store.template_id_snapshot()[1])
        return gallery, ("ok" if changed == 0 else "stale"), sequence
    if index_path is None:
        status = "missing"
    elif index_path.exists() or index_path.is_symlink():
        try:
            matcher, sequence = _check_index_file(store, index_path, policy, index, options)
            return matcher, "ok", sequence
        except IndexFileError as exc:
            if exc.reason == "ahead":
                manifest = read_manifest(index_path)
                raise _lost_writes(store, index_path, int(manifest.metadata["sequence"]),
                                   store.content_state().sequence) from exc
            status = exc.reason
    else:
        status = "missing"
    # Read the sequence before building: a write by another process during the build is
    # applied by the first _sync().
    sequence = store.content_state().sequence
    return _build_gallery(store, policy, index, options), status, sequence


def rebuild_index(
    store: str | os.PathLike[str],
    *,
    index_path: str | os.PathLike[str] | None = None,
    threshold: float | str | None = None,
    milvus_uri: str | None = None,
) -> RebuildReport:
    """Rebuild the index file of *store* from the store alone, atomically.

    With *milvus_uri*, rebuild that Milvus gallery instead: every template the store does
    not hold is deleted from the collection and every one it holds is written again.

    Checks SQLite's integrity, that every stored template has the store's dimension and a
    unit norm, and reports what the previous index file was (``ok``, ``missing``,
    ``stale``, ``ahead`` (the store lost writes the index had seen: rebuilding accepts the
    store as it is), ``foreign``, ``mismatch``, ``format``, ``corrupt``). The new file
    replaces the old one in one rename: a crash leaves one or the other. *threshold* is
    accepted for compatibility and ignored: decision settings are not index data.
    """
    del threshold
    meta = read_store_meta(store)
    db = open_store(store, model_id=meta["model_id"], dim=int(meta["dim"]))
    target = Path(index_path) if index_path else (
        None if is_postgres_url(store) else index_path_for(store))
    try:
        integrity = db.integrity_check()
        if integrity != "ok":
            raise StoreError(
                f"integrity check of {describe(store)!r} failed: {integrity}. Restore the store "
                "from a backup; the index cannot be trusted to be rebuilt from it"
            )
        previous, reason = "missing", "no index file"
        policy = DecisionPolicy()
        if target is None:
            reason = "a PostgreSQL store keeps no index file: each server builds its gallery"
        else:
            remove_orphaned_temporaries(target)
        if target is not None and (target.exists() or target.is_symlink()):
            try:
                _check_index_file(db, target, policy, "flat", {})
                previous, reason = "ok", "index matched the store"
            except IndexFileError as exc:
                previous, reason = exc.reason, str(exc)
        state = db.content_state()
        matcher = _build_gallery(db, policy, "flat", {})
        assert isinstance(matcher, Matcher)
        if milvus_uri is not None:
            gallery = _build_gallery(db, policy, "milvus", {"uri": milvus_uri})
            held = len(gallery)
            close = getattr(gallery, "close", None)
            if callable(close):
                close()
            if held != len(matcher):
                raise StoreError(f"the Milvus gallery at {milvus_uri!r} holds {held} templates "
                                 f"after the rebuild, the store {len(matcher)}: retry")
            target = None
            reason = f"Milvus gallery {milvus_uri!r} rebuilt from the store ({held} templates)"
        if matcher.content_digest() != state.digest and db.content_state() == state:
            raise StoreError(
                f"the store {describe(store)!r} records a content digest that its templates do not "
                "have: its meta table was altered or damaged. Restore the store from a backup"
            )
        manifest = _manifest(db)
        manifest["sequence"] = state.sequence
        if target is not None:
            if target.exists() and not target.is_file():
                target.unlink()  # a FIFO or the like: replaced by a regular file
            matcher.save(target, metadata=manifest)
        return RebuildReport(
            index_path="" if target is None else str(target),
            previous=previous,
            reason=reason,
            identities=len(matcher.identities),
            templates=len(matcher),
            sequence=state.sequence,
            checked=(
                "sqlite integrity_check",
                f"{len(matcher)} templates have dim {db.dim}",
                "every template is finite and unit-norm",
                f"model id {db.model_id}",
                "content digest of the new index equals the store's",
            ),
        )
    finally:
        db.close()
