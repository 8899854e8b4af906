"""Identification against a gallery of templates: FAISS flat L2, argmin + threshold.

The rule is the paper's: compute the Euclidean distance from the query to every
enrolled template, take the nearest, and accept its identity only when that distance
is strictly below the threshold (by default the shipped model's calibrated one, see
:func:`faceid_sdk.resolve_threshold`; the paper's rule is 0.5). An
identity may own several templates; the nearest template speaks for its identity.

Distances are **Euclidean**, never squared: ``IndexFlatL2`` returns squared distances
and this module takes the square root before anything leaves it.

Threading and speed. Searches share a readers-writer lock and run concurrently (FAISS
releases the GIL); ``add``/``remove`` take it exclusively, because removing from a flat
index compacts its storage in place. Three findings shape the search path:

* FAISS parallelizes a flat scan over *queries*, so one query uses one thread whatever
  the setting, and the rest of the OpenMP team only costs start-up and a spinning
  barrier; on a loaded machine that barrier waits for a descheduled worker for a whole
  scheduler quantum. That is why a default-threaded ``IndexFlatL2`` was slower than
  NumPy for one query. Every search here runs with one OpenMP thread in the calling
  thread (``omp_set_num_threads`` sets the *calling thread's* ``nthreads-var``, a
  per-task ICV in the OpenMP spec, kept per thread by libgomp and LLVM's libomp; it is
  restored before returning, so nothing leaks to other threads).
* Large batches are split into contiguous slices of queries, and single queries on
  large galleries into contiguous slices of the flat storage (``faiss.knn`` on a
  zero-copy view, merged by distance), searched by a small pool of worker threads with
  one OpenMP thread each: parallel without OpenMP barriers, so a busy core delays one
  slice instead of stalling the whole team.
* faiss-cpu 1.15 ships ``distance_compute_blas_threshold = 128000``: batches under 128k
  queries take the per-query scan, which re-reads the whole gallery for every query
  (memory-bound, ~6x slower than the BLAS path at N = 1M). The first Matcher lowers this
  process-wide FAISS setting to 20 (FAISS's long-standing default) unless
  ``FACEID_KEEP_FAISS_BLAS_THRESHOLD`` is set; it changes speed, not results.

Reported distances are recomputed exactly (float64, from the stored float32 templates)
for the few templates that FAISS ranked first: the BLAS path computes
``|x|^2 + |y|^2 - 2xy``, which is ~3e-4 off for an exact match, and a single query and
the same query in a batch must get the same answer.

Decisions are the :class:`~faceid_sdk.DecisionPolicy`'s (:mod:`.policy`); index files
are :mod:`.index_file`'s; both are shared with every other gallery backend.
"""


from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import faiss
import numpy as np
import numpy.typing as npt

from .._rwlock import RWLock
from ..errors import IndexFileError, InvalidFeatureError, UnknownIdentityError
from ..identity import normalize_identity
from ..vectors import as_matrix, check_unit_norm
from .digest import format_digest, template_digest
from .index_file import (
    REBUILD_HINT,
    IndexManifest,
    read_index_file,
    read_manifest,
    write_index_file,
)
from .kernels import (
    BLAS_THRESHOLD,
    FloatMatrix,
    IdArray,
    cpu_count,
    exact_distances,
    omp_threads,
    scan_span,
    search_slice,
    tune_faiss,
    worker_pool,
)
from .policy import DEFAULT_THRESHOLD, DecisionPolicy
from .results import EMPTY, Candidate, Identification, Pick

__all__ = ["CandidateIndex", "Matcher", "coerce_template_ids"]

# Query-template pairs below which one thread beats splitting a batch (about 5 ms of
# single-threaded scanning at d = 128: far above the cost of handing work to a pool).
_PARALLEL_PAIRS: Final = 2_000_000
# Smallest slice of a split batch: FAISS takes its BLAS path from 20 queries on.
_MIN_SLICE: Final = 64
# Query-template pairs from which a small batch is split over the gallery instead (a
# single query over 100k templates: ~3 ms of scanning against ~0.1 ms of hand-off).
_SHARD_PAIRS: Final = 100_000
_MIN_SHARD: Final = 32_768
# Above this many templates in the best identity, the runner-up is found by a search
# that excludes that identity rather than by a k = count + 1 search (a huge k is slow).
_MAX_WIDEN: Final = 64
# Templates fetched per query: enough to find the runner-up identity in one search
# unless the nearest identity owns 8 templates or more (k = 8 costs about as much as
# k = 1 in a flat scan).
_IDENTIFY_K: Final = 8


Snapshot = Callable[[], tuple[IdArray, FloatMatrix]]


@runtime_checkable
class CandidateIndex(Protocol):
    """What :class:`Matcher` asks of an approximate structure that proposes candidates.

    The Matcher stays the source of truth (its flat storage, its ids and owners, exact
    distances and the decision); a candidate index only *proposes* template ids, which are
    re-ranked exactly, so a miss can only make an answer worse, never a distance smaller.
    Every hook runs under the Matcher's lock; *snapshot* returns copies of every live
    template id and vector, for (re)building.
    """

    def added(self, ids: IdArray, vectors: FloatMatrix, snapshot: Snapshot) -> None:
        """Templates were added to the gallery."""

    def removed(self, ids: IdArray, snapshot: Snapshot) -> None:
        """Templates were removed from the gallery (its storage no longer holds them)."""

    def rebuild(self, snapshot: Snapshot) -> None:
        """Build the structure anew over the whole gallery."""

    def propose(self, queries: FloatMatrix, k: int, total: int) -> IdArray | None:
        """At least *k* candidate template ids per query (-1 pads), or ``None`` to let the
        exact flat scan answer (a small gallery, an unbuilt structure, a huge *k*)."""


class Matcher:
    """A gallery of L2-normalized templates searched by exhaustive Euclidean distance.

    Args:
        dim: Length of every feature vector.
        threshold: Accept a match only when its Euclidean distance is strictly below this.
        reject_ambiguous: Also refuse a match (identify and verify) when another identity
            is under the threshold.
        runner_up: Also report the nearest other identity and whether the match is
            ambiguous. Off by default: FAISS's k = 1 search is about twice as fast for a
            single query as the k = 8 search this needs.
        policy: A :class:`~faceid_sdk.DecisionPolicy` to decide with, instead of the three
            settings above (the Enroller passes its own).
        threads: Upper bound on worker threads for one large batch; ``None`` uses the
            CPUs this process may run on. Small work always runs on one thread.
        candidate_index: A :class:`CandidateIndex` (an HNSW or IVF structure) that proposes
            candidates faster than the flat scan; they are re-ranked exactly here. See
            :class:`~faceid_sdk.ApproxMatcher`.

    With no settings this is the mission's rule: argmin over the gallery, accepted only
    strictly under the threshold.

    Queries must be finite and unit-norm like templates (:class:`InvalidFeatureError`
    with ``code="norm"`` otherwise): the codec already refuses other payloads, and a
    short vector would sit at distance ~1 from everyone.
    """

    def __init__(
        self,
        dim: int,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        reject_ambiguous: bool = False,
        runner_up: bool = False,
        policy: DecisionPolicy | None = None,
        threads: int | None = None,
        candidate_index: CandidateIndex | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidFeatureError(
                f"dim must be a positive int (got {dim!r}): use the model's feature length",
                code="dimension",
            )
        self._dim = int(dim)
        if policy is None:
            policy = DecisionPolicy(threshold, reject_ambiguous=reject_ambiguous,
                                    runner_up=runner_up)
        elif not isinstance(policy, DecisionPolicy):
            raise InvalidFeatureError(
                f"policy must be a DecisionPolicy (got {type(policy).__name__})", code="policy"
            )
        self._policy = policy
        self._candidates = candidate_index
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InvalidFeatureError(
                f"threads must be None or an int >= 1 (got {threads!r})", code="threads"
            )
        self._threads = threads
        tune_faiss()
        # Keep a Python reference to the inner index: the IDMap does not own it.
        # FAISS's SWIG types are loose (arrays where stubs say IDSelector): keep them Any.
        self._flat: Any = faiss.IndexFlatL2(self._dim)
        self._index: Any = faiss.IndexIDMap2(self._flat)
        self._ids: dict[str, list[int]] = {}
        self._owner: dict[int, str] = {}
        self._next_id = 0
        self._lock = RWLock()

    # -- read-only views ----------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Length of every feature vector."""
        return self._dim

    @property
    def policy(self) -> DecisionPolicy:
        """The decision policy every answer of this matcher follows."""
        return self._policy

    @property
    def threshold(self) -> float:
        """Euclidean distance strictly under which a match is accepted."""
        return self._policy.threshold

    @property
    def reject_ambiguous(self) -> bool:
        """Whether a match is refused when a second identity is also under the threshold."""
        return self._policy.reject_ambiguous

    @property
    def runner_up(self) -> bool:
        """Whether identifications report the nearest other identity."""
        return self._policy.needs_runner_up

    @property
    def candidate_index(self) -> CandidateIndex | None:
        """The structure proposing candidates (HNSW, IVF), or ``None`` for the flat scan."""
        return self._candidates

    @property
    def identities(self) -> tuple[str, ...]:
        """Enrolled identities, sorted."""
        with self._lock.read():
            return tuple(sorted(self._ids))

    def __len__(self) -> int:
        """Number of templates (not identities)."""
        return len(self._owner)

    def __contains__(self, identity: object) -> bool:
        try:
            name = normalize_identity(identity)
        except ValueError:
            return False
        return name in self._ids

    def __repr__(self) -> str:
        return (
            f"<Matcher dim={self._dim} templates={len(self._owner)} "
            f"identities={len(self._ids)} threshold={self.threshold:g}>"
        )

    def template_count(self, identity: str) -> int:
        """Number of templates of *identity*; :class:`UnknownIdentityError` if absent."""
        with self._lock.read():
            return len(self._templates_of(normalize_identity(identity)))

    def all_template_ids(self) -> IdArray:
        """Ids of every template in the gallery, ascending."""
        with self._lock.read():
            return np.array(sorted(self._owner), dtype=np.int64)

    def template_ids(self, identity: str) -> IdArray:
        """Ids of the templates of *identity*, in the order they were added."""
        with self._lock.read():
            return np.array(self._templates_of(normalize_identity(identity)), dtype=np.int64)

    # -- mutations ----------------------------------------------------------------------

    def add(
        self,
        identity: str,
        vectors: Any,
        *,
        ids: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> IdArray:
        """Add templates to *identity* (created when new) and return their int64 ids.

        *vectors* is one vector ``(dim,)`` or a matrix ``(n, dim)`` of unit-norm rows.
        *ids* are explicit template ids (non-negative, unique, not already present; the
        Enroller passes its store's row ids); by default fresh ids are assigned. All or
        nothing: on any error the gallery is unchanged.
        """
        name = normalize_identity(identity)
        matrix = as_matrix(vectors, self._dim)
        if len(matrix) == 0:
            raise InvalidFeatureError(
                "vectors must hold at least one template (got none)", code="empty"
            )
        check_unit_norm(matrix)
        explicit = None if ids is None else coerce_template_ids(ids, len(matrix))
        with self._lock.write():
            if explicit is None:
                new_ids = np.arange(self._next_id, self._next_id + len(matrix), dtype=np.int64)
            else:
                taken = [int(i) for i in explicit if int(i) in self._owner]
                if taken:
                    raise InvalidFeatureError(
                        f"ids must not already be in the gallery (got {taken[:5]} already "
                        f"owned by {self._owner[taken[0]]!r}): remove those templates first",
                        code="template_id",
                    )
                new_ids = explicit
            self._index.add_with_ids(matrix, new_ids)
            as_list = new_ids.tolist()
            self._ids.setdefault(name, []).extend(as_list)
            for template_id in as_list:
                self._owner[template_id] = name
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
            if self._candidates is not None:
                self._candidates.added(new_ids, matrix, self._snapshot)
        return new_ids.copy()

    def remove(self, identity: str) -> int:
        """Remove *identity* and all its templates; return how many templates went."""
        name = normalize_identity(identity)
        with self._lock.write():
            doomed = self._templates_of(name)
            self._remove_ids(np.array(doomed, dtype=np.int64))
            del self._ids[name]
            for template_id in doomed:
                del self._owner[template_id]
        return len(doomed)

    def remove_templates(self, ids: Sequence[int] | npt.NDArray[np.integer[Any]]) -> int:
        """Remove individual templates by id; return how many were present and removed.

        Unknown ids are skipped (like ``set.discard``): compare the count with what you
        expected. An identity whose last template goes is removed with it.
        """
        wanted = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        with self._lock.write():
            present = [int(i) for i in wanted if int(i) in self._owner]
            if not present:
                return 0
            self._remove_ids(np.array(present, dtype=np.int64))
            for template_id in present:
                name = self._owner.pop(template_id)
                remaining = self._ids[name]
                remaining.remove(template_id)
                if not remaining:
                    del self._ids[name]
        return len(present)

    # -- searches -----------------------------------------------------------------------

    def identify(self, vector: Any) -> Identification:
        """1:N: the nearest identity over the whole gallery, accepted under the threshold."""
        query = self._queries(vector, name="query")
        if len(query) != 1:
            raise InvalidFeatureError(
                f"query must be one vector of shape ({self._dim},) or (1, {self._dim}) "
                f"(got {len(query)} rows): use identify_batch for several",
                code="dimension",
            )
        return self._identify(query)[0]

    def identify_batch(self, vectors: Any) -> list[Identification]:
        """:meth:`identify` for each row of *vectors*, in one search (much faster per query)."""
        queries = self._queries(vectors, name="queries")
        if len(queries) == 0:
            return []
        return self._identify(queries)

    def verify(self, vector: Any, identity: str) -> Identification:
        """1:1: distance from *vector* to the nearest template of *identity* only."""
        name = normalize_identity(identity)
        query = self._queries(vector, name="query")
        if len(query) != 1:
            raise InvalidFeatureError(
                f"query must be one vector of shape ({self._dim},) (got {len(query)} rows)",
                code="dimension",
            )
        with self._lock.read():
            owned = np.array(self._templates_of(name), dtype=np.int64)
            templates = np.ascontiguousarray(
                self._index.reconstruct_batch(owned), dtype=np.float32
            )
            other = self._nearest_other(query, name) if self._policy.needs_runner_up else None
        distances = exact_distances(query[0], templates)
        nearest = int(np.argmin(distances))
        return self._policy.verify((name, float(distances[nearest]), int(owned[nearest])), other)

    def _nearest_other(self, query: FloatMatrix, name: str) -> Pick | None:
        """The nearest template of anyone but *name*, exact (read lock held)."""
        if self._index.ntotal <= len(self._ids[name]):
            return None
        # Locals keep both selectors alive: FAISS holds only raw pointers to them.
        inner = faiss.IDSelectorBatch(np.array(self._ids[name], dtype=np.int64))
        exclude = faiss.IDSelectorNot(inner)
        _, labels = self._search(query, 1, exclude)
        label = int(labels[0, 0])
        owner = self._owner.get(label) if label >= 0 else None
        if owner is None or owner == name:
            return None
        exact = exact_distances(query[0], self._index.reconstruct_batch(labels[0, :1]))
        return (owner, float(exact[0]), label)

    def candidates(self, vector: Any, k: int = 5) -> list[Candidate]:
        """Up to *k* distinct identities, nearest first, each at its nearest template."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidFeatureError(f"k must be an int >= 1 (got {k!r})", code="k")
        query = self._queries(vector, name="query")
        if len(query) != 1:
            raise InvalidFeatureError(
                f"query must be one vector of shape ({self._dim},) (got {len(query)} rows)",
                code="dimension",
            )
        with self._lock.read():
            total = self._index.ntotal
            fetch = min(total, 4 * int(k))
            while True:
                found: dict[str, Candidate] = {}
                if fetch == 0:
                    break
                d2, labels = self._search(query, fetch)
                for sq, label in zip(d2[0].tolist(), labels[0].tolist(), strict=True):
                    name = self._owner.get(label) if label >= 0 else None
                    if name is None or name in found or not math.isfinite(sq):
                        continue
                    found[name] = Candidate(name, sq, label)
                    if len(found) == k:
                        break
                if len(found) >= k or fetch >= total:
                    break
                # Every fetched template belongs to an identity already found, so the
                # next new identity lies within their combined template count.
                needed = sum(len(self._ids[n]) for n in found) + (int(k) - len(found))
                fetch = min(total, max(needed, 2 * fetch))
            if not found:
                return []
            ids = np.array([c.template_id for c in found.values()], dtype=np.int64)
            exact = exact_distances(query[0], self._index.reconstruct_batch(ids))
        ranked = [
            Candidate(c.identity, float(d), c.template_id)
            for c, d in zip(found.values(), exact.tolist(), strict=True)
        ]
        # Exact distances may reorder FAISS near-ties; keep "nearest first" true.
        return sorted(ranked, key=lambda c: c.distance)

    # -- persistence --------------------------------------------------------------------

    def save(
        self, path: str | os.PathLike[str], *, metadata: Mapping[str, str | int] | None = None
    ) -> None:
        """Write the gallery to *path* atomically (temporary file, fsync, rename, fsync dir).

        *metadata* (str keys, str or int values: a model id, the store's sequence number)
        is stored in the manifest; :meth:`load` can insist on it with ``expect``. The
        decision policy is not saved: it belongs to whoever loads the file.
        """
        with self._lock.read():
            write_index_file(
                path, self._index, dim=self._dim, next_id=self._next_id,
                identities=self._ids, content_digest=self._content_digest(),
                metadata=metadata,
            )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect: Mapping[str, str | int] | None = None,
        dim: int | None = None,
        threshold: float | None = None,
        policy: DecisionPolicy | None = None,
        **options: Any,
    ) -> Matcher:
        """Read a file written by :meth:`save`, verifying everything before FAISS sees it.

        *expect* lists metadata that must be present with exactly these values (a model
        id, a store sequence); *dim* the required dimension; *policy* (or just a
        *threshold*) how the loaded matcher decides, by default the plain rule at
        :data:`DEFAULT_THRESHOLD`; *options* the constructor's other arguments. The
        content is checked against the manifest's digest. Raises :class:`IndexFileError`
        (with its ``reason``) on any mismatch or corruption.
        """
        manifest, index = read_index_file(path, expect=expect, dim=dim)
        if policy is None:
            policy = DecisionPolicy(DEFAULT_THRESHOLD if threshold is None else threshold)
        matcher = cls(manifest.dim, policy=policy, **options)
        matcher._install(index, manifest)
        if matcher.content_digest() != manifest.content_digest:
            raise IndexFileError(
                f"index file {os.fspath(path)!r} does not hold what its manifest says (the "
                f"digest of its templates differs): it was altered; {REBUILD_HINT}",
                reason="mismatch",
            )
        return matcher

    @staticmethod
    def read_manifest(path: str | os.PathLike[str]) -> IndexManifest:
        """The manifest of an index file (checksummed), without reading the FAISS section."""
        return read_manifest(path)

    def content_digest(self) -> str:
        """The digest of every (template id, identity, vector) held: :mod:`.digest`."""
        with self._lock.read():
            return self._content_digest()

    def take_over(self, other: Matcher) -> None:
        """Move *other*'s templates into this empty matcher without copying them.

        *other* is left empty. This matcher's policy and candidate index stay; the
        candidate index is built over the gallery in one go (faster than adding a large
        gallery template by template).
        """
        if other is self:
            return
        if other.dim != self._dim:
            raise InvalidFeatureError(
                f"cannot take over a {other.dim}-d gallery into a {self._dim}-d matcher",
                code="dimension",
            )
        with self._lock.write(), other._lock.write():
            if len(self._owner):
                raise InvalidFeatureError(
                    "take_over needs an empty matcher (this one holds templates)", code="not_empty"
                )
            self._index, self._flat = other._index, other._flat
            self._ids, self._owner, self._next_id = other._ids, other._owner, other._next_id
            other._flat = faiss.IndexFlatL2(other._dim)
            other._index = faiss.IndexIDMap2(other._flat)
            other._ids, other._owner, other._next_id = {}, {}, 0
            if other._candidates is not None:
                other._candidates.rebuild(other._snapshot)
            if self._candidates is not None:
                self._candidates.rebuild(self._snapshot)

    def rebuild_candidates(self) -> None:
        """Rebuild the candidate index (HNSW graph, IVF centroids) from the gallery."""
        with self._lock.write():
            if self._candidates is not None:
                self._candidates.rebuild(self._snapshot)

    # -- internals (callers hold the lock where noted) ---------------------------------

    def _install(self, index: Any, manifest: IndexManifest) -> None:
        self._index = index
        self._flat = faiss.downcast_index(index.index)
        self._ids = {name: list(ids) for name, ids in manifest.identities.items()}
        self._owner = {i: name for name, ids in manifest.identities.items() for i in ids}
        self._next_id = manifest.next_id
        if self._candidates is not None:
            self._candidates.rebuild(self._snapshot)

    def _storage(self) -> tuple[FloatMatrix, IdArray]:
        """Zero-copy views of FAISS's vectors and ids (valid while the lock is held)."""
        total = int(self._index.ntotal)
        storage = faiss.rev_swig_ptr(self._flat.get_xb(), total * self._dim)
        id_map = faiss.rev_swig_ptr(self._index.id_map.data(), total)
        return storage.reshape(total, self._dim), id_map

    def _snapshot(self) -> tuple[IdArray, FloatMatrix]:
        """Copies of every live template id and vector (lock held by the caller)."""
        storage, id_map = self._storage()
        return np.array(id_map, dtype=np.int64), np.array(storage, dtype=np.float32)

    def _content_digest(self) -> str:
        storage, id_map = self._storage()
        owner = self._owner
        return format_digest(template_digest(id_map.tolist(),
                                             [owner[i] for i in id_map.tolist()], storage))

    def _templates_of(self, name: str) -> list[int]:
        try:
            return self._ids[name]
        except KeyError:
            raise UnknownIdentityError(
                f"identity {name!r} is not enrolled: enroll it first or check the spelling"
            ) from None

    def _remove_ids(self, ids: IdArray) -> None:
        # Caller holds the write lock.
        removed = int(self._index.remove_ids(ids))
        if removed != len(ids):
            raise IndexFileError(
                f"the FAISS index removed {removed} of {len(ids)} templates: the in-memory "
                f"index is inconsistent; {REBUILD_HINT}"
            )
        if self._candidates is not None:
            self._candidates.removed(ids, self._snapshot)

    def _queries(self, vectors: Any, *, name: str) -> FloatMatrix:
        matrix = as_matrix(vectors, self._dim, name=name)
        if len(matrix):
            check_unit_norm(matrix, name=name)
        return matrix

    def _search(
        self, queries: FloatMatrix, k: int, selector: Any = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        # Caller holds the read lock; 1 <= k <= ntotal.
        if selector is None and self._candidates is not None:
            proposed = self._candidates.propose(queries, k, len(self._owner))
            if proposed is not None:
                return self._rerank_exact(queries, proposed, k)
        if selector is None and len(queries) < BLAS_THRESHOLD:
            return self._search_scan(queries, k)
        workers = self._workers_for(len(queries))
        if workers == 1:
            shards = self._shards_for(len(queries))
            if shards > 1 and selector is None:
                return self._search_shards(queries, k, shards)
            with omp_threads(1):
                return search_slice(self._index, queries, k, selector)
        bounds = np.linspace(0, len(queries), workers + 1).astype(int)
        futures = [
            worker_pool().submit(search_slice, self._index, queries[lo:hi], k, selector)
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]
        parts = [f.result() for f in futures]
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )

    def _search_scan(
        self, queries: FloatMatrix, k: int
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """The k nearest templates of a few queries by a direct scan (read lock held).

        FAISS's own search of fewer than 20 queries keeps a result heap per template and
        runs at about a quarter of memory bandwidth; its SIMD distance kernel
        (``fvec_L2sqr_ny``) over its own storage, split across cores for large galleries,
        runs at the bandwidth (benchmarks/bench_match.py). No BLAS: OpenBLAS's threads spin
        against each other when a server calls it from several threads at once. Every
        template within a float32 error bound of the k-th smallest distance is re-ranked
        by its exact float64 distance, so the order returned is the exact one.
        """
        total = int(self._index.ntotal)
        storage = faiss.rev_swig_ptr(self._flat.get_xb(), total * self._dim)
        storage = storage.reshape(total, self._dim)
        id_map = faiss.rev_swig_ptr(self._index.id_map.data(), total)
        d2 = np.empty((len(queries), total), dtype=np.float32)
        shards = self._shards_for(len(queries))
        if shards == 1:
            scan_span(d2, queries, storage, 0, total)
        else:
            bounds = [total * i // shards for i in range(shards + 1)]
            futures = [
                worker_pool().submit(scan_span, d2, queries, storage, lo, hi)
                for lo, hi in itertools.pairwise(bounds)
            ]
            for future in futures:
                future.result()
        # |float32 L2 - exact| < (dim + 2) * 2^-24 * d^2, and d^2 <= 4 between unit
        # vectors: ~3e-5 at d = 128. Candidates within 4x that of the k-th are re-ranked.
        slack = 4.0 * (self._dim + 2) * 2.0**-24 * 4.0
        d2_out = np.empty((len(queries), k), dtype=np.float32)
        labels_out = np.empty((len(queries), k), dtype=np.int64)
        for row in range(len(queries)):
            line = d2[row]
            kth = line.min() if k == 1 else np.partition(line, k - 1)[k - 1]
            positions = np.flatnonzero(line <= kth + slack)
            exact = exact_distances(queries[row], storage[positions]) ** 2
            # Exact distance first, then storage order (FAISS's own tie-break).
            order = np.lexsort((positions, exact))[:k]
            d2_out[row] = exact[order]
            labels_out[row] = id_map[positions[order]]
        return d2_out, labels_out

    def _shards_for(self, nq: int) -> int:
        # A few queries cannot be split by query; split the gallery instead, so a single
        # query on a large gallery uses every core's memory bandwidth.
        total = int(self._index.ntotal)
        if nq * total < _SHARD_PAIRS:
            return 1
        cap = self._threads if self._threads is not None else cpu_count()
        return max(1, min(cap, total // _MIN_SHARD))

    def _search_shards(
        self, queries: FloatMatrix, k: int, shards: int
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Search contiguous slices of the flat storage in parallel and merge (read lock held)."""
        total = self._index.ntotal
        # Zero-copy views of FAISS's own storage; valid while the read lock is held.
        storage = faiss.rev_swig_ptr(self._flat.get_xb(), total * self._dim)
        storage = storage.reshape(total, self._dim)
        id_map = faiss.rev_swig_ptr(self._index.id_map.data(), total)
        bounds = np.linspace(0, total, shards + 1).astype(int).tolist()
        futures = [
            worker_pool().submit(faiss.knn, queries, storage[lo:hi], min(k, hi - lo))
            for lo, hi in itertools.pairwise(bounds)
        ]
        d2_parts, label_parts = [], []
        for (lo, _), future in zip(itertools.pairwise(bounds), futures, strict=True):
            d2, positions = future.result()
            d2_parts.append(d2)
            label_parts.append(np.where(positions >= 0, id_map[np.maximum(positions, 0) + lo], -1))
        d2 = np.concatenate(d2_parts, axis=1)
        labels = np.concatenate(label_parts, axis=1)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d2, order, axis=1), np.take_along_axis(labels, order, axis=1)

    def _workers_for(self, nq: int) -> int:
        if nq < 2 * _MIN_SLICE or nq * self._index.ntotal < _PARALLEL_PAIRS:
            return 1
        cap = self._threads if self._threads is not None else cpu_count()
        return max(1, min(cap, nq // _MIN_SLICE))

    def _identify(self, queries: FloatMatrix) -> list[Identification]:
        with self._lock.read():
            total = self._index.ntotal
            if total == 0:
                return [EMPTY] * len(queries)
            k = _IDENTIFY_K if self._policy.needs_runner_up else 1
            d2, labels = self._search(queries, min(total, k))
            if not self._policy.needs_runner_up and bool((labels[:, 0] >= 0).all()):
                return self._nearest_only(queries, labels[:, 0])
            picks = [
                self._scan(d2[row].tolist(), labels[row].tolist()) for row in range(len(queries))
            ]
            # Rows whose k nearest all belong to one identity (it has >= k templates)
            # need a wider look for the runner-up; do it in as few searches as possible.
            lonely = [
                row
                for row, (best, runner) in enumerate(picks)
                if self._policy.needs_runner_up
                and best is not None
                and runner is None
                and total > len(self._ids[best[0]])
            ]
            if lonely:
                self._find_runner_ups(queries, lonely, picks)
            # Exact distances of every reported template, in one vectorized pass.
            wanted = [(row, pick[2]) for row, pair in enumerate(picks) for pick in pair if pick]
            exact: dict[tuple[int, int], float] = {}
            if wanted:
                rows = np.array([r for r, _ in wanted])
                ids = np.array([i for _, i in wanted], dtype=np.int64)
                values = exact_distances(queries[rows], self._index.reconstruct_batch(ids))
                exact = dict(zip(wanted, values.tolist(), strict=True))
        return [
            self._decide(
                None if best is None else (best[0], exact[(row, best[2])], best[2]),
                None if runner is None else (runner[0], exact[(row, runner[2])], runner[2]),
            )
            for row, (best, runner) in enumerate(picks)
        ]

    def _nearest_only(self, queries: FloatMatrix, labels: IdArray) -> list[Identification]:
        """Answers without runner-up, vectorized (read lock held; every label is valid)."""
        distances = exact_distances(queries, self._index.reconstruct_batch(labels)).tolist()
        owner, decide = self._owner, self._policy.identify
        return [
            decide((owner[label], distance, label), None)
            for label, distance in zip(labels.tolist(), distances, strict=True)
        ]

    def _find_runner_ups(
        self,
        queries: FloatMatrix,
        rows: list[int],
        picks: list[tuple[Pick | None, Pick | None]],
    ) -> None:
        """Fill in the nearest other identity for *rows* (caller holds the read lock)."""
        owner = {row: best[0] for row in rows if (best := picks[row][0]) is not None}
        small = [row for row in rows if len(self._ids[owner[row]]) < _MAX_WIDEN]
        if small:
            # The nearest other identity lies within best's template count plus one.
            wider = min(self._index.ntotal, max(len(self._ids[owner[r]]) for r in small) + 1)
            d2, labels = self._search(queries[small], wider)
            for j, row in enumerate(small):
                runner = self._scan(d2[j].tolist(), labels[j].tolist(), exclude=owner[row])[0]
                picks[row] = (picks[row][0], runner)
        by_identity: dict[str, list[int]] = {}
        for row in rows:
            if len(self._ids[owner[row]]) >= _MAX_WIDEN:
                by_identity.setdefault(owner[row], []).append(row)
        for name, group in by_identity.items():
            # A huge k is slow: search once more with this identity excluded instead.
            # Locals keep both selectors alive: FAISS holds only raw pointers to them.
            inner = faiss.IDSelectorBatch(np.array(self._ids[name], dtype=np.int64))
            exclude = faiss.IDSelectorNot(inner)
            d2, labels = self._search(queries[group], 1, exclude)
            for j, row in enumerate(group):
                runner = self._scan(d2[j].tolist(), labels[j].tolist(), exclude=name)[0]
                picks[row] = (picks[row][0], runner)

    def _scan(
        self, d2: list[float], labels: list[int], exclude: str | None = None
    ) -> tuple[Pick | None, Pick | None]:
        """Nearest (identity, squared distance, id) and nearest other identity of one row."""
        best: Pick | None = None
        for sq, label in zip(d2, labels, strict=True):
            # FAISS pads with label -1 and a huge distance: never map those to a person.
            name = self._owner.get(label) if label >= 0 else None
            if name is None or name == exclude or not math.isfinite(sq):
                continue
            if best is None:
                best = (name, sq, label)
            elif name != best[0]:
                return best, (name, sq, label)
        return best, None

    def _decide(self, best: Pick | None, runner: Pick | None) -> Identification:
        """The policy's answer; distances in *best* and *runner* are exact Euclidean."""
        return self._policy.identify(best, runner)

    def _rerank_exact(
        self, queries: FloatMatrix, labels: IdArray, k: int
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Order proposed candidates by exact squared distance; drop removed ids and -1."""
        nq, fetch = labels.shape
        flat_labels = labels.reshape(-1)
        live = np.fromiter(
            (label >= 0 and label in self._owner for label in flat_labels.tolist()),
            dtype=bool, count=len(flat_labels),
        )
        d2 = np.full(nq * fetch, np.inf, dtype=np.float64)
        if live.any():
            rows = np.repeat(np.arange(nq), fetch)[live]
            templates = self._index.reconstruct_batch(flat_labels[live])
            diff = templates.astype(np.float64) - queries[rows].astype(np.float64)
            d2[live] = np.einsum("ij,ij->i", diff, diff)
        d2 = d2.reshape(nq, fetch)
        out_labels = np.where(live.reshape(nq, fetch), labels, -1)
        # A candidate index may hold a re-added id twice (a tombstone and the live one):
        # both have the same exact distance, and the scan skips repeated identities anyway.
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(d2, order, axis=1).astype(np.float32),
            np.take_along_axis(out_labels, order, axis=1),
        )


def coerce_template_ids(ids: Any, n: int) -> IdArray:
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or len(array) != n:
        raise InvalidFeatureError(
            f"ids must be a 1-D sequence with one id per vector, {n} in all "
            f"(got shape {array.shape})",
            code="template_id",
        )
    if array.dtype.kind not in "iu":
        raise InvalidFeatureError(
            f"ids must be integers (got dtype {array.dtype})", code="template_id"
        )
    if array.dtype.kind == "u" and int(array.max()) > np.iinfo(np.int64).max:
        raise InvalidFeatureError(
            f"ids must fit in int64 (got {int(array.max())})", code="template_id"
        )
    result = array.astype(np.int64)
    if (result < 0).any():
        raise InvalidFeatureError(
            f"ids must be >= 0 (got {int(result.min())}): FAISS uses -1 for 'no result'",
            code="template_id",
        )
    unique, counts = np.unique(result, return_counts=True)
    if len(unique) != n:
        raise InvalidFeatureError(
            f"ids must be unique (got {int(unique[counts > 1][0])} more than once)",
            code="template_id",
        )
    return result
