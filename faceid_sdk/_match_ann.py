"""Approximate matchers: FAISS HNSW and IVF behind the :class:`Matcher` API.

Same rule, same answers' meaning: the nearest template speaks for its identity, its
distance is **Euclidean** and exact (recomputed in float64 from the stored template),
and a match is accepted only strictly under the threshold. What changes is how the
nearest template is *found*: an approximate index proposes ``rerank`` candidates, which
are re-ranked by their exact distance. A miss can only make the answer *worse* (a
farther template, so possibly a rejection or another identity above the threshold);
it never makes a reported distance smaller than it is. ``recall@1`` against the flat
index is measured by ``benchmarks/bench_scale.py``.

Design. The exact flat gallery of :class:`Matcher` stays the source of truth (add,
remove, verify, save/load and the exact distances all use it unchanged, so index files
are the same format and portable between backends); the approximate index is a derived
structure holding the same vectors under the same template ids. This costs a second
copy of the vectors (512 bytes per template at d = 128) and buys simple, sound
semantics. Below ``exact_below`` templates, and for the rare searches that exclude an
identity (runner-up of an identity with 64+ templates) or ask for a very large k,
searches use the exact flat scan.

Removal.

* **HNSW** cannot delete from its graph. Removed templates become *tombstones*: they
  are dropped from every result (their ids are no longer in the gallery) and the graph
  is rebuilt from the flat gallery once tombstones exceed ``max_tombstones`` (a
  fraction of the graph, 0.2 by default), or when :meth:`ApproxMatcher.rebuild` is
  called. Until then a tombstone still occupies a slot among the ``rerank`` candidates.
* **IVF** removes from its inverted lists directly. It must be trained on the gallery:
  it is trained (``nlist`` centroids, ``4 * sqrt(n)`` by default) once the gallery
  reaches ``exact_below`` templates and ``39 * nlist`` points, and retrained when the
  gallery has grown ``retrain_growth`` times past the size it was trained on.

Loading an index file rebuilds the approximate index from the flat gallery (seconds
per 100k templates for HNSW), so the file format does not depend on the backend.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import faiss
import numpy as np
import numpy.typing as npt

from ._match import (
    DEFAULT_THRESHOLD,
    IdArray,
    Matcher,
    _cpu_count,
    _omp_threads,
    _pool,
    _search_slice,
)
from ._vectors import FloatMatrix
from .errors import InvalidFeatureError

__all__ = ["ApproxMatcher", "IndexKind"]

IndexKind = Literal["hnsw", "ivf"]

# A k this large (candidates() on a huge review list) is cheaper and surer as a flat scan.
_MAX_APPROX_K: Final = 256
# Batches from this many queries are split over the worker pool (one OpenMP thread each).
_SPLIT_QUERIES: Final = 64
# IVF wants ~39 training points per centroid (FAISS warns below that).
_POINTS_PER_CENTROID: Final = 39
_TRAIN_POINTS_PER_CENTROID: Final = 64
_TRAIN_ITERATIONS: Final = 10


class ApproxMatcher(Matcher):
    """A :class:`Matcher` whose searches go through an approximate FAISS index.

    Args:
        dim: Length of every feature vector.
        threshold: Accept a match only when its exact Euclidean distance is strictly
            below this.
        index: ``"hnsw"`` (graph, ``IndexHNSWFlat``; best speed/recall, cannot delete)
            or ``"ivf"`` (``IndexIVFFlat``; needs training, deletes in place).
        hnsw_m: HNSW neighbours per node (memory ~ ``8 * hnsw_m`` bytes per template).
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search beam width (recall vs speed; at least ``rerank``).
        nlist: IVF centroids; ``None`` picks ``4 * sqrt(n)`` at training time.
        nprobe: IVF lists visited per query (recall vs speed).
        rerank: Candidates fetched from the approximate index and re-ranked exactly.
        exact_below: Galleries smaller than this use the exact flat scan (it is faster
            there, and IVF cannot be trained on a handful of templates).
        max_tombstones: HNSW: rebuild the graph when removed-but-still-linked templates
            exceed this fraction of it.
        retrain_growth: IVF: retrain once the gallery is this many times the size the
            centroids were trained on.
        reject_ambiguous, runner_up, threads: As for :class:`Matcher`.
    """

    def __init__(
        self,
        dim: int,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        index: IndexKind = "hnsw",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        rerank: int = 16,
        exact_below: int = 20_000,
        max_tombstones: float = 0.2,
        retrain_growth: float = 4.0,
        reject_ambiguous: bool = False,
        runner_up: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(
            dim, threshold, reject_ambiguous=reject_ambiguous, runner_up=runner_up,
            threads=threads,
        )
        if index not in ("hnsw", "ivf"):
            raise InvalidFeatureError(
                f"index must be 'hnsw' or 'ivf' (got {index!r}): use Matcher for the "
                "exact flat index",
                code="index",
            )
        self._kind: IndexKind = index
        self._hnsw_m = _positive_int("hnsw_m", hnsw_m)
        self._ef_construction = _positive_int("ef_construction", ef_construction)
        self._rerank = _positive_int("rerank", rerank)
        self._ef_search = max(_positive_int("ef_search", ef_search), self._rerank)
        self._nlist = None if nlist is None else _positive_int("nlist", nlist)
        self._nprobe = _positive_int("nprobe", nprobe)
        self._exact_below = _non_negative_int("exact_below", exact_below)
        if not (isinstance(max_tombstones, (int, float)) and 0 <= max_tombstones <= 1):
            raise InvalidFeatureError(
                f"max_tombstones must be a fraction in [0, 1] (got {max_tombstones!r})",
                code="max_tombstones",
            )
        self._max_tombstones = float(max_tombstones)
        if not (isinstance(retrain_growth, (int, float)) and retrain_growth > 1):
            raise InvalidFeatureError(
                f"retrain_growth must be a number > 1 (got {retrain_growth!r})",
                code="retrain_growth",
            )
        self._retrain_growth = float(retrain_growth)
        # The approximate index (None until built), its inner index (kept alive: the
        # IDMap does not own it), the size it was built/trained at, and tombstones.
        self._approx: Any = None
        self._approx_inner: Any = None
        self._approx_quantizer: Any = None
        self._built_at = 0
        self._tombstones = 0

    # -- read-only views ----------------------------------------------------------------

    @property
    def index_kind(self) -> IndexKind:
        """``"hnsw"`` or ``"ivf"``."""
        return self._kind

    @property
    def approximate(self) -> bool:
        """Whether searches currently go through the approximate index."""
        return self._approx is not None and len(self._owner) >= self._exact_below

    @property
    def tombstones(self) -> int:
        """HNSW: removed templates still linked in the graph (0 for IVF)."""
        return self._tombstones

    def __repr__(self) -> str:
        mode = self._kind if self.approximate else f"{self._kind}, exact for now"
        return (
            f"<ApproxMatcher ({mode}) dim={self._dim} templates={len(self._owner)} "
            f"identities={len(self._ids)} threshold={self._threshold:g}>"
        )

    # -- tuning -------------------------------------------------------------------------

    @property
    def ef_search(self) -> int:
        """HNSW search beam width."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        with self._lock.write():
            self._ef_search = max(_positive_int("ef_search", value), self._rerank)
            if self._kind == "hnsw" and self._approx_inner is not None:
                self._approx_inner.hnsw.efSearch = self._ef_search

    @property
    def nprobe(self) -> int:
        """IVF lists visited per query."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        with self._lock.write():
            self._nprobe = _positive_int("nprobe", value)
            if self._kind == "ivf" and self._approx_inner is not None:
                self._approx_inner.nprobe = self._nprobe

    # -- mutations ----------------------------------------------------------------------

    def add(
        self,
        identity: str,
        vectors: Any,
        *,
        ids: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> IdArray:
        """Add templates (see :meth:`Matcher.add`); the approximate index follows."""
        new_ids = super().add(identity, vectors, ids=ids)
        with self._lock.write():
            if self._needs_build():
                self._build()
            elif self._approx is not None:
                present = np.array([i for i in new_ids.tolist() if i in self._owner])
                if len(present):
                    present = present.astype(np.int64)
                    vectors_ = np.ascontiguousarray(
                        self._index.reconstruct_batch(present), dtype=np.float32
                    )
                    self._approx.add_with_ids(vectors_, present)
        return new_ids

    def rebuild(self) -> None:
        """Rebuild (HNSW) or retrain (IVF) the approximate index from the flat gallery."""
        with self._lock.write():
            self._approx = self._approx_inner = None
            if len(self._owner) >= self._exact_below and len(self._owner) > 0:
                self._build()

    def _remove_ids(self, ids: IdArray) -> None:
        # Caller holds the write lock.
        super()._remove_ids(ids)
        if self._approx is None:
            return
        if self._kind == "ivf":
            self._approx.remove_ids(ids)
            return
        self._tombstones += len(ids)
        if self._tombstones > self._max_tombstones * max(1, self._approx.ntotal):
            self._approx = self._approx_inner = None
            if self._index.ntotal >= max(1, self._exact_below):
                # The flat index no longer holds *ids* (the owner maps still do until the
                # caller updates them): _build reads the flat index, not _owner.
                self._build()

    # -- persistence --------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect: Mapping[str, str | int] | None = None,
        dim: int | None = None,
        threshold: float | None = None,
        **options: Any,
    ) -> ApproxMatcher:
        """Read an index file (any backend wrote it) and build the approximate index.

        *options* are the keyword arguments of :class:`ApproxMatcher` (``index``,
        ``ef_search``...); the rest is :meth:`Matcher.load`.
        """
        return cls.from_matcher(
            Matcher.load(path, expect=expect, dim=dim, threshold=threshold), **options
        )

    @classmethod
    def from_matcher(cls, flat: Matcher, **options: Any) -> ApproxMatcher:
        """Take over *flat*'s gallery and settings and build the approximate index once.

        *flat* must not be used afterwards (the new matcher owns its FAISS index). Faster
        than adding a large gallery template by template: the index is built in one go.
        """
        matcher = cls(
            flat.dim, flat.threshold, reject_ambiguous=flat.reject_ambiguous,
            runner_up=flat.runner_up, **options,
        )
        matcher._flat, matcher._index = flat._flat, flat._index
        matcher._ids, matcher._owner, matcher._next_id = flat._ids, flat._owner, flat._next_id
        matcher.rebuild()
        return matcher

    # -- internals ----------------------------------------------------------------------

    def _needs_build(self) -> bool:
        n = len(self._owner)
        if n < max(1, self._exact_below):
            return False
        if self._approx is None:
            return self._kind == "hnsw" or n >= self._min_train()
        return self._kind == "ivf" and n >= self._retrain_growth * self._built_at

    def _min_train(self) -> int:
        nlist = self._nlist or 1
        return max(_POINTS_PER_CENTROID * nlist, 1)

    def _build(self) -> None:
        """(Re)build the approximate index from the flat gallery (write lock held)."""
        total = int(self._index.ntotal)
        storage = faiss.rev_swig_ptr(self._flat.get_xb(), total * self._dim)
        vectors = np.array(storage.reshape(total, self._dim), dtype=np.float32, copy=True)
        ids = np.array(faiss.rev_swig_ptr(self._index.id_map.data(), total), dtype=np.int64)
        if len(ids) == 0:
            return
        inner: Any
        if self._kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self._dim, self._hnsw_m)
            inner.hnsw.efConstruction = self._ef_construction
            inner.hnsw.efSearch = self._ef_search
        else:
            nlist = self._nlist or max(1, int(4 * math.sqrt(len(ids))))
            nlist = max(1, min(nlist, len(ids) // _POINTS_PER_CENTROID or 1))
            quantizer = faiss.IndexFlatL2(self._dim)
            inner = faiss.IndexIVFFlat(quantizer, self._dim, nlist)
            inner.nprobe = self._nprobe
            # k-means on a sample: 40 points per centroid is what FAISS asks for, and
            # 10 iterations settle; the full 25 over every template takes minutes at 1M.
            sample = vectors
            if len(vectors) > _TRAIN_POINTS_PER_CENTROID * nlist:
                pick = np.random.default_rng(0).choice(
                    len(vectors), _TRAIN_POINTS_PER_CENTROID * nlist, replace=False
                )
                sample = vectors[np.sort(pick)]
            inner.cp.niter = _TRAIN_ITERATIONS
            with _omp_threads(_cpu_count()):
                inner.train(sample)
            self._approx_quantizer = quantizer  # the IVF index does not own it
        approx = faiss.IndexIDMap2(inner)
        # Building is the one place that uses every core (FAISS's OpenMP over inserts).
        with _omp_threads(_cpu_count()):
            approx.add_with_ids(vectors, ids)
        self._approx, self._approx_inner = approx, inner
        self._built_at = len(ids)
        self._tombstones = 0

    def _search(
        self, queries: FloatMatrix, k: int, selector: Any = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        # Caller holds the read lock; 1 <= k <= ntotal.
        if (
            selector is not None
            or self._approx is None
            or len(self._owner) < self._exact_below
            or k > _MAX_APPROX_K
        ):
            return super()._search(queries, k, selector)
        fetch = max(k, self._rerank)
        if len(queries) >= _SPLIT_QUERIES and _cpu_count() > 1:
            workers = min(_cpu_count(), len(queries) // (_SPLIT_QUERIES // 2))
            bounds = np.linspace(0, len(queries), workers + 1).astype(int).tolist()
            futures = [
                _pool().submit(_search_slice, self._approx, queries[lo:hi], fetch, None)
                for lo, hi in itertools.pairwise(bounds)
            ]
            parts = [f.result() for f in futures]
            labels = np.concatenate([p[1] for p in parts])
        else:
            with _omp_threads(1):
                labels = _search_slice(self._approx, queries, fetch, None)[1]
        return self._rerank_exact(queries, labels, k)

    def _rerank_exact(
        self, queries: FloatMatrix, labels: IdArray, k: int
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Order each row's candidates by exact squared distance; drop tombstones and -1."""
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
        # HNSW may hold a re-added id twice (tombstone + live): the duplicate has the same
        # exact distance, and the parent's scan skips repeated identities anyway.
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(d2, order, axis=1).astype(np.float32),
            np.take_along_axis(out_labels, order, axis=1),
        )


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidFeatureError(f"{name} must be an int >= 1 (got {value!r})", code=name)
    return int(value)


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidFeatureError(f"{name} must be an int >= 0 (got {value!r})", code=name)
    return int(value)
