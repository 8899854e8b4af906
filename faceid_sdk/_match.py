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

Index files. One file: a fixed preamble, a JSON manifest protected by its SHA-256, and
the bytes of ``faiss.serialize_index`` protected by theirs. ``load`` checks the magic,
the version, both checksums, the dimension, the template count, the caller's expected
metadata and the exact layout of the FAISS bytes *before* FAISS parses them: its
deserializer trusts its input, and a crafted file could corrupt memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final

import attrs
import faiss
import numpy as np
import numpy.typing as npt

from ._atomic import atomic_write_bytes
from ._defaults import resolve_threshold as _resolve_threshold
from ._identity import normalize_identity
from ._rwlock import RWLock
from ._vectors import NORM_TOLERANCE, FloatMatrix, as_matrix, check_unit_norm
from .errors import IndexFileError, InvalidFeatureError, UnknownIdentityError

__all__ = [
    "DEFAULT_THRESHOLD",
    "INDEX_FORMAT_VERSION",
    "Candidate",
    "Identification",
    "IndexManifest",
    "Matcher",
    "read_manifest",
]

#: Euclidean distance under which a match is accepted (features are L2-normalized).
#: The shipped model's calibrated threshold (``model.json``), the paper's 0.5 without one.
DEFAULT_THRESHOLD: Final = _resolve_threshold(None, model_id=None).value

#: Version of the index file layout written by :meth:`Matcher.save`.
INDEX_FORMAT_VERSION: Final = 1

IdArray = npt.NDArray[np.int64]

_MAGIC: Final = b"FIDXMTCH"
# magic, format version, manifest length, SHA-256 of the manifest
_PREAMBLE: Final = struct.Struct("<8sII32s")
_MAX_MANIFEST: Final = 1 << 30
_REBUILD: Final = "run `faceid-sdk rebuild-index` to rebuild it from the store"

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
_BLAS_THRESHOLD: Final = 20
# Templates fetched per query: enough to find the runner-up identity in one search
# unless the nearest identity owns 8 templates or more (k = 8 costs about as much as
# k = 1 in a flat scan).
_IDENTIFY_K: Final = 8

# Layout of faiss.serialize_index(IndexIDMap2(IndexFlatL2(d))) in FAISS >= 1.7: per
# index a fourcc and a header (d:i32, ntotal:i64, two reserved i64, is_trained:u8,
# metric:i32), then the flat codes (count of floats:i64, floats), then the id map
# (count:i64, int64 ids).
_FAISS_HEADER: Final = struct.Struct("<iqqqBi")
_METRIC_L2: Final = 1


@attrs.frozen(repr=False)
class Identification:
    """The answer to one query: the nearest identity and whether it is accepted.

    ``identity`` is the owner of the nearest template (``None`` only on an empty
    gallery), reported even when rejected so that callers can log near misses;
    ``distance`` is Euclidean (``math.inf`` on an empty gallery); ``accepted`` is
    ``distance < threshold``. With ``Matcher(runner_up=True)`` (implied by
    ``reject_ambiguous=True``), ``runner_up`` is the nearest *other* identity
    (``runner_up_distance`` is ``inf`` when there is none) and ``ambiguous`` says that it
    is under the threshold too: two people both match. A matcher built with
    ``reject_ambiguous=True`` refuses such matches (``accepted`` false, ``identity``
    still the nearest). When the runner-up was not computed (the default, and for
    :meth:`Matcher.verify`), ``runner_up`` and ``runner_up_distance`` are ``None``.
    """

    identity: str | None
    distance: float
    accepted: bool
    template_id: int | None = None
    runner_up: str | None = None
    runner_up_distance: float | None = None
    ambiguous: bool = False

    def __repr__(self) -> str:
        verdict = "accepted" if self.accepted else "rejected"
        extra = " ambiguous" if self.ambiguous else ""
        return f"<Identification {self.identity!r} d={self.distance:.3f} {verdict}{extra}>"


@attrs.frozen(repr=False)
class Candidate:
    """One identity in a top-k review list, with the distance of its nearest template."""

    identity: str
    distance: float
    template_id: int

    def __repr__(self) -> str:
        return f"<Candidate {self.identity!r} d={self.distance:.3f}>"


@attrs.frozen(repr=False)
class IndexManifest:
    """What an index file says about itself, readable without loading the FAISS index."""

    format_version: int
    dim: int
    count: int
    threshold: float
    reject_ambiguous: bool
    runner_up: bool
    next_id: int
    faiss_version: str
    faiss_size: int
    faiss_sha256: str
    metadata: Mapping[str, str | int]
    identities: Mapping[str, tuple[int, ...]]

    def __repr__(self) -> str:
        meta = " ".join(f"{k}={v!r}" for k, v in sorted(self.metadata.items()))
        return (
            f"<IndexManifest v{self.format_version} dim={self.dim} templates={self.count} "
            f"identities={len(self.identities)}{' ' + meta if meta else ''}>"
        )


# (identity, distance, template id): squared from FAISS while ranking, exact once reported.
_Pick = tuple[str, float, int]

_EMPTY: Final = Identification(identity=None, distance=math.inf, accepted=False)


class Matcher:
    """A gallery of L2-normalized templates searched by exhaustive Euclidean distance.

    Args:
        dim: Length of every feature vector.
        threshold: Accept a match only when its Euclidean distance is strictly below this.
        reject_ambiguous: Also refuse a match when another identity is under the threshold.
        runner_up: Also report the nearest other identity and whether the match is
            ambiguous. Off by default: FAISS's k = 1 search is about twice as fast for a
            single query as the k = 8 search this needs.
        threads: Upper bound on worker threads for one large batch; ``None`` uses the
            CPUs this process may run on. Small work always runs on one thread.

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
        threads: int | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidFeatureError(
                f"dim must be a positive int (got {dim!r}): use the model's feature length",
                code="dimension",
            )
        self._dim = int(dim)
        self._threshold = _check_threshold(threshold)
        self._reject_ambiguous = bool(reject_ambiguous)
        self._runner_up = bool(runner_up) or self._reject_ambiguous
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InvalidFeatureError(
                f"threads must be None or an int >= 1 (got {threads!r})", code="threads"
            )
        self._threads = threads
        _tune_faiss()
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
    def threshold(self) -> float:
        """Euclidean distance strictly under which a match is accepted."""
        return self._threshold

    @property
    def reject_ambiguous(self) -> bool:
        """Whether a match is refused when a second identity is also under the threshold."""
        return self._reject_ambiguous

    @property
    def runner_up(self) -> bool:
        """Whether identifications report the nearest other identity."""
        return self._runner_up

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
            f"identities={len(self._ids)} threshold={self._threshold:g}>"
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
        explicit = None if ids is None else _coerce_ids(ids, len(matrix))
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
        distances = _exact(query[0], templates)
        nearest = int(np.argmin(distances))
        distance = float(distances[nearest])
        return Identification(
            identity=name,
            distance=distance,
            accepted=distance < self._threshold,
            template_id=int(owned[nearest]),
        )

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
            exact = _exact(query[0], self._index.reconstruct_batch(ids))
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
        is stored in the manifest; :meth:`load` can insist on it with ``expect``.
        """
        meta = _check_metadata(metadata)
        with self._lock.read():
            payload = faiss.serialize_index(self._index)
            manifest = {
                "format": INDEX_FORMAT_VERSION,
                "dim": self._dim,
                "count": len(self._owner),
                "threshold": self._threshold,
                "reject_ambiguous": self._reject_ambiguous,
                "runner_up": self._runner_up,
                "next_id": self._next_id,
                "faiss_version": str(faiss.__version__),
                "faiss_size": int(payload.nbytes),
                "faiss_sha256": hashlib.sha256(payload.data).hexdigest(),
                "metadata": meta,
                "identities": {name: list(ids) for name, ids in self._ids.items()},
            }
        header = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")).encode()
        preamble = _PREAMBLE.pack(
            _MAGIC, INDEX_FORMAT_VERSION, len(header), hashlib.sha256(header).digest()
        )
        atomic_write_bytes(path, [preamble, header, payload.data])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect: Mapping[str, str | int] | None = None,
        dim: int | None = None,
        threshold: float | None = None,
    ) -> Matcher:
        """Read a file written by :meth:`save`, verifying everything before FAISS sees it.

        *expect* lists metadata that must be present with exactly these values (a model
        id, a store sequence); *dim* the required dimension; *threshold* overrides the
        saved threshold. Raises :class:`IndexFileError` on any mismatch or corruption.
        """
        where = os.fspath(path)
        try:
            with open(where, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise IndexFileError(
                f"cannot read index file {where!r} ({exc.strerror or exc}): {_REBUILD}"
            ) from exc
        manifest, offset = _parse_manifest(data, where)
        _check_expectations(manifest, where, expect=expect, dim=dim)
        payload = memoryview(data)[offset:]
        if len(payload) != manifest.faiss_size:
            raise IndexFileError(
                f"index file {where!r} is truncated or padded: FAISS section is {len(payload)} "
                f"bytes, manifest says {manifest.faiss_size}; {_REBUILD}"
            )
        if hashlib.sha256(payload).hexdigest() != manifest.faiss_sha256:
            raise IndexFileError(
                f"index file {where!r} is corrupt: SHA-256 of the FAISS section does not match "
                f"its manifest; {_REBUILD}"
            )
        expected_ids = np.sort(
            np.fromiter(
                (i for ids in manifest.identities.values() for i in ids),
                dtype=np.int64,
                count=manifest.count,
            )
        )
        _check_faiss_layout(payload, manifest.dim, expected_ids, where)
        try:
            # deserialize_index already returns the concrete, owning type: wrapping it
            # again with downcast_index would leave a non-owning view of freed memory.
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexFileError(f"FAISS refused index file {where!r} ({exc}); {_REBUILD}") from exc
        if (
            not isinstance(index, faiss.IndexIDMap2)
            or index.d != manifest.dim
            or index.ntotal != manifest.count
        ):
            raise IndexFileError(
                f"index file {where!r} holds {type(index).__name__} d={index.d} with "
                f"{index.ntotal} templates, not the IndexIDMap2 d={manifest.dim} with "
                f"{manifest.count} its manifest describes; {_REBUILD}"
            )
        matcher = cls(
            manifest.dim,
            manifest.threshold if threshold is None else threshold,
            reject_ambiguous=manifest.reject_ambiguous,
            runner_up=manifest.runner_up,
        )
        matcher._index = index
        matcher._flat = faiss.downcast_index(index.index)
        matcher._ids = {name: list(ids) for name, ids in manifest.identities.items()}
        matcher._owner = {i: name for name, ids in manifest.identities.items() for i in ids}
        matcher._next_id = manifest.next_id
        return matcher

    @staticmethod
    def read_manifest(path: str | os.PathLike[str]) -> IndexManifest:
        """The manifest of an index file (checksummed), without reading the FAISS section."""
        return read_manifest(path)

    # -- internals (callers hold the lock where noted) ---------------------------------

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
                f"index is inconsistent; {_REBUILD}"
            )

    def _queries(self, vectors: Any, *, name: str) -> FloatMatrix:
        matrix = as_matrix(vectors, self._dim, name=name)
        if len(matrix):
            check_unit_norm(matrix, name=name)
        return matrix

    def _search(
        self, queries: FloatMatrix, k: int, selector: Any = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        # Caller holds the read lock; 1 <= k <= ntotal.
        if selector is None and len(queries) < _BLAS_THRESHOLD:
            return self._search_scan(queries, k)
        workers = self._workers_for(len(queries))
        if workers == 1:
            shards = self._shards_for(len(queries))
            if shards > 1 and selector is None:
                return self._search_shards(queries, k, shards)
            with _omp_threads(1):
                return _search_slice(self._index, queries, k, selector)
        bounds = np.linspace(0, len(queries), workers + 1).astype(int)
        futures = [
            _pool().submit(_search_slice, self._index, queries[lo:hi], k, selector)
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
            _scan_span(d2, queries, storage, 0, total)
        else:
            bounds = [total * i // shards for i in range(shards + 1)]
            futures = [
                _pool().submit(_scan_span, d2, queries, storage, lo, hi)
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
            exact = _exact(queries[row], storage[positions]) ** 2
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
        cap = self._threads if self._threads is not None else _cpu_count()
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
            _pool().submit(faiss.knn, queries, storage[lo:hi], min(k, hi - lo))
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
        cap = self._threads if self._threads is not None else _cpu_count()
        return max(1, min(cap, nq // _MIN_SLICE))

    def _identify(self, queries: FloatMatrix) -> list[Identification]:
        with self._lock.read():
            total = self._index.ntotal
            if total == 0:
                return [_EMPTY] * len(queries)
            d2, labels = self._search(queries, min(total, _IDENTIFY_K if self._runner_up else 1))
            if not self._runner_up and bool((labels[:, 0] >= 0).all()):
                return self._nearest_only(queries, labels[:, 0])
            picks = [
                self._scan(d2[row].tolist(), labels[row].tolist()) for row in range(len(queries))
            ]
            # Rows whose k nearest all belong to one identity (it has >= k templates)
            # need a wider look for the runner-up; do it in as few searches as possible.
            lonely = [
                row
                for row, (best, runner) in enumerate(picks)
                if self._runner_up
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
                values = _exact(queries[rows], self._index.reconstruct_batch(ids))
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
        distances = _exact(queries, self._index.reconstruct_batch(labels)).tolist()
        owner, threshold = self._owner, self._threshold
        return [
            Identification(
                identity=owner[label], distance=distance, accepted=distance < threshold,
                template_id=label,
            )
            for label, distance in zip(labels.tolist(), distances, strict=True)
        ]

    def _find_runner_ups(
        self,
        queries: FloatMatrix,
        rows: list[int],
        picks: list[tuple[_Pick | None, _Pick | None]],
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
    ) -> tuple[_Pick | None, _Pick | None]:
        """Nearest (identity, squared distance, id) and nearest other identity of one row."""
        best: _Pick | None = None
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

    def _decide(self, best: _Pick | None, runner: _Pick | None) -> Identification:
        """Apply the threshold; distances in *best* and *runner* are exact Euclidean."""
        return decide(best, runner, self._threshold, runner_up=self._runner_up,
                      reject_ambiguous=self._reject_ambiguous)


def decide(
    best: tuple[str, float, int] | None,
    runner: tuple[str, float, int] | None,
    threshold: float,
    *,
    runner_up: bool,
    reject_ambiguous: bool,
) -> Identification:
    """The one decision rule every matcher backend applies.

    *best* and *runner* are ``(identity, exact Euclidean distance, template id)`` of the
    nearest template and of the nearest template of another identity (``None``: none).
    """
    if best is None:
        return _EMPTY
    distance = best[1]
    if not runner_up:
        return Identification(
            identity=best[0], distance=distance, accepted=distance < threshold,
            template_id=best[2],
        )
    runner_distance = math.inf if runner is None else runner[1]
    ambiguous = runner_distance < threshold
    return Identification(
        identity=best[0],
        distance=distance,
        accepted=distance < threshold and not (reject_ambiguous and ambiguous),
        template_id=best[2],
        runner_up=None if runner is None else runner[0],
        runner_up_distance=runner_distance,
        ambiguous=ambiguous,
    )


def read_manifest(path: str | os.PathLike[str]) -> IndexManifest:
    """The manifest of an index file, checksum-verified, without reading the FAISS section.

    Also checks that the file size matches what the manifest announces, so a truncated
    file is caught here too.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            head = handle.read(_PREAMBLE.size)
            if len(head) == _PREAMBLE.size and head[:8] == _MAGIC:
                length = _PREAMBLE.unpack(head)[2]
                head += handle.read(min(length, _MAX_MANIFEST + 1))
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise IndexFileError(
            f"cannot read index file {where!r} ({exc.strerror or exc}): {_REBUILD}"
        ) from exc
    manifest, offset = _parse_manifest(head, where)
    if size != offset + manifest.faiss_size:
        raise IndexFileError(
            f"index file {where!r} is {size} bytes, its manifest announces "
            f"{offset + manifest.faiss_size}: truncated or padded; {_REBUILD}"
        )
    return manifest


# -- helpers ----------------------------------------------------------------------------


def _search_slice(
    index: Any, queries: FloatMatrix, k: int, selector: Any
) -> tuple[npt.NDArray[np.float32], IdArray]:
    if selector is None:
        d2, labels = index.search(queries, k)
    else:
        # A SearchParameters per call: IndexIDMap::search swaps params->sel for an
        # id-translating wrapper during the search, so sharing one across threads races.
        params = faiss.SearchParameters()
        params.sel = selector
        d2, labels = index.search(queries, k, params=params)
    return d2, labels


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run the block with *n* OpenMP threads in the calling thread only, then restore."""
    before = faiss.omp_get_max_threads()
    if before == n:
        yield
        return
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _scan_span(
    out: npt.NDArray[np.float32], queries: FloatMatrix, storage: FloatMatrix, lo: int, hi: int
) -> None:
    """Squared L2 from each query to templates lo:hi, into out[:, lo:hi] (FAISS's kernel)."""
    templates = faiss.swig_ptr(storage[lo:hi])
    for row, query in enumerate(queries):
        target = out[row, lo:hi]
        faiss.fvec_L2sqr_ny(  # type: ignore[attr-defined]
            faiss.swig_ptr(target), faiss.swig_ptr(query), templates, storage.shape[1], hi - lo
        )


def _exact(queries: FloatMatrix, templates: FloatMatrix) -> npt.NDArray[np.float64]:
    """Euclidean distance, in float64, between each template row and its query.

    *queries* is one vector (compared with every template) or one row per template.
    """
    diff = np.asarray(templates, dtype=np.float64) - np.asarray(queries, dtype=np.float64)
    result: npt.NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return result


_pool_lock = threading.Lock()
_pool_instance: ThreadPoolExecutor | None = None
_tuned = False


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _pool() -> ThreadPoolExecutor:
    """Workers for large batches, each pinned to one OpenMP thread for its whole life."""
    global _pool_instance
    with _pool_lock:
        if _pool_instance is None:
            _pool_instance = ThreadPoolExecutor(
                max_workers=max(2, _cpu_count()),
                thread_name_prefix="faceid-match",
                initializer=faiss.omp_set_num_threads,
                initargs=(1,),
            )
        return _pool_instance


def _tune_faiss() -> None:
    """Let batches of 20+ queries take FAISS's blocked BLAS path (see the module docstring)."""
    global _tuned
    with _pool_lock:
        if _tuned:
            return
        _tuned = True
        if os.environ.get("FACEID_KEEP_FAISS_BLAS_THRESHOLD"):
            return
        if faiss.cvar.distance_compute_blas_threshold > _BLAS_THRESHOLD:
            faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise InvalidFeatureError(
            f"threshold must be a number (got {threshold!r} that is a "
            f"<{type(threshold).__name__}>)",
            code="threshold",
        )
    value = float(threshold)
    if not (math.isfinite(value) and value > 0):
        raise InvalidFeatureError(
            f"threshold must be a finite Euclidean distance > 0 (got {threshold!r}): "
            f"{DEFAULT_THRESHOLD} suits L2-normalized features",
            code="threshold",
        )
    return value


def _coerce_ids(ids: Any, n: int) -> IdArray:
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


def _check_metadata(metadata: Mapping[str, str | int] | None) -> dict[str, str | int]:
    result: dict[str, str | int] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidFeatureError(
                f"metadata keys must be non-empty str (got {key!r})", code="metadata"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidFeatureError(
                f"metadata[{key!r}] must be <str> or <int> (got {value!r} that is a "
                f"<{type(value).__name__}>)",
                code="metadata",
            )
        result[key] = value
    return result


def _corrupt(where: str, what: str) -> IndexFileError:
    return IndexFileError(f"index file {where!r} is corrupt or foreign: {what}; {_REBUILD}")


def _parse_manifest(data: bytes, where: str) -> tuple[IndexManifest, int]:
    """Check preamble and manifest of *data*; return the manifest and where FAISS bytes start."""
    if data[: len(_MAGIC)] != _MAGIC:
        raise _corrupt(where, f"magic is {bytes(data[: len(_MAGIC)])!r}, expected {_MAGIC!r}")
    if len(data) < _PREAMBLE.size:
        raise _corrupt(where, f"{len(data)} bytes is shorter than the {_PREAMBLE.size}-byte header")
    _, version, length, digest = _PREAMBLE.unpack_from(data)
    if version != INDEX_FORMAT_VERSION:
        raise IndexFileError(
            f"index file {where!r} has format version {version}, this faceid-sdk reads "
            f"version {INDEX_FORMAT_VERSION}; {_REBUILD}"
        )
    end = _PREAMBLE.size + length
    if length > _MAX_MANIFEST or len(data) < end:
        raise _corrupt(where, f"manifest of {length} bytes runs past the end of the file")
    raw = data[_PREAMBLE.size : end]
    if hashlib.sha256(raw).digest() != digest:
        raise _corrupt(where, "SHA-256 of the manifest does not match")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(where, f"manifest is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _corrupt(where, "manifest is not a JSON object")
    return _manifest_from_doc(doc, where), end


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _corrupt(where, f"manifest field {key!r} is {value!r}, not a {kind}")
    return value


def _manifest_from_doc(doc: dict[str, Any], where: str) -> IndexManifest:
    dim = _field(doc, "dim", int, where)
    count = _field(doc, "count", int, where)
    threshold = _field(doc, "threshold", (int, float), where)
    next_id = _field(doc, "next_id", int, where)
    size = _field(doc, "faiss_size", int, where)
    sha = _field(doc, "faiss_sha256", str, where)
    metadata = _field(doc, "metadata", dict, where)
    identities = _field(doc, "identities", dict, where)
    if dim <= 0 or count < 0 or size < 0 or next_id < 0 or len(sha) != 64:
        raise _corrupt(where, "manifest has out-of-range fields")
    if not (math.isfinite(threshold) and threshold > 0):
        raise _corrupt(where, f"manifest threshold is {threshold!r}")
    try:
        _check_metadata(metadata)
    except InvalidFeatureError as exc:
        raise _corrupt(where, f"manifest {exc}") from None
    mapping: dict[str, tuple[int, ...]] = {}
    seen: set[int] = set()
    for name, ids in identities.items():
        try:
            normalized = normalize_identity(name)
        except ValueError:
            normalized = None
        if normalized != name:
            raise _corrupt(where, f"manifest identity {name!r} is not a valid normalized name")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(type(i) is int and 0 <= i < next_id for i in ids)
        ):
            raise _corrupt(where, f"manifest ids of {name!r} are not ids below next_id")
        if seen.intersection(ids) or len(set(ids)) != len(ids):
            raise _corrupt(where, f"manifest gives a template id twice (at {name!r})")
        seen.update(ids)
        mapping[name] = tuple(ids)
    if len(seen) != count:
        raise _corrupt(where, f"manifest maps {len(seen)} template ids but announces {count}")
    return IndexManifest(
        format_version=INDEX_FORMAT_VERSION,
        dim=dim,
        count=count,
        threshold=float(threshold),
        reject_ambiguous=bool(doc.get("reject_ambiguous", False)),
        runner_up=bool(doc.get("runner_up", False)),
        next_id=next_id,
        faiss_version=str(doc.get("faiss_version", "")),
        faiss_size=size,
        faiss_sha256=sha,
        metadata=dict(metadata),
        identities=mapping,
    )


def _check_expectations(
    manifest: IndexManifest,
    where: str,
    *,
    expect: Mapping[str, str | int] | None,
    dim: int | None,
) -> None:
    if dim is not None and manifest.dim != dim:
        raise IndexFileError(
            f"index file {where!r} has dim {manifest.dim}, expected {dim}: it was built for "
            f"another model; {_REBUILD}"
        )
    for key, wanted in (expect or {}).items():
        if key not in manifest.metadata:
            raise IndexFileError(
                f"index file {where!r} has no metadata {key!r} (expected {wanted!r}); {_REBUILD}"
            )
        got = manifest.metadata[key]
        if type(got) is not type(wanted) or got != wanted:
            raise IndexFileError(
                f"index file {where!r} is stale or foreign: metadata {key!r} is {got!r}, "
                f"expected {wanted!r}; {_REBUILD}"
            )


def _check_faiss_layout(payload: memoryview, dim: int, ids: IdArray, where: str) -> None:
    """Walk the serialized IndexIDMap2(IndexFlatL2) byte by byte before FAISS parses it."""
    n = len(ids)
    expected = 2 * (4 + _FAISS_HEADER.size) + 8 + 4 * n * dim + 8 + 8 * n
    if len(payload) != expected:
        raise _corrupt(
            where, f"FAISS section is {len(payload)} bytes, an IDMap2 flat index of {n} "
            f"x {dim} takes {expected}"
        )
    pos = 0
    for fourcc in (b"IxM2", b"IxF2"):
        if bytes(payload[pos : pos + 4]) != fourcc:
            raise _corrupt(
                where, f"FAISS section has {bytes(payload[pos : pos + 4])!r} where {fourcc!r} "
                "belongs (only IndexIDMap2 over IndexFlatL2 is accepted)"
            )
        d, ntotal, _, _, _, metric = _FAISS_HEADER.unpack_from(payload, pos + 4)
        if d != dim or ntotal != n or metric != _METRIC_L2:
            raise _corrupt(
                where, f"FAISS header says d={d}, {ntotal} vectors, metric {metric}; manifest "
                f"says d={dim}, {n} vectors, L2"
            )
        pos += 4 + _FAISS_HEADER.size
    (floats,) = struct.unpack_from("<q", payload, pos)
    pos += 8 + 4 * n * dim
    (count,) = struct.unpack_from("<q", payload, pos)
    if floats != n * dim or count != n:
        raise _corrupt(where, "FAISS section sizes disagree with the manifest")
    stored = np.frombuffer(payload, dtype="<i8", count=n, offset=pos + 8)
    if not np.array_equal(np.sort(stored), ids):
        raise _corrupt(where, "template ids in the FAISS section differ from the manifest")
    # FAISS would load NaN or off-norm templates and then answer no one (or everyone).
    start = 2 * (4 + _FAISS_HEADER.size) + 8
    templates = np.frombuffer(payload, dtype="<f4", count=n * dim, offset=start).reshape(n, dim)
    finite = np.isfinite(templates).all(axis=1)
    norms = np.linalg.norm(templates, axis=1) if n else np.ones(0)
    bad = np.flatnonzero(~finite | ~(np.abs(norms - 1.0) <= NORM_TOLERANCE))
    if bad.size:
        raise _corrupt(
            where, f"template {int(stored[bad[0]])} is not a finite unit-norm vector "
            f"(norm {float(norms[bad[0]]):.6g})"
        )
