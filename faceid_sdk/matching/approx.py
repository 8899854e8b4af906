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
are the same format and portable between backends); the approximate index is a
:class:`~faceid_sdk.matching.flat.CandidateIndex` plugged into the Matcher through its
public ``candidate_index`` argument, a derived structure holding the same vectors under
the same template ids. This costs a second
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
from typing import Any, Final, Literal

import faiss
import numpy as np

from ..errors import InvalidFeatureError
from .flat import Matcher, Snapshot
from .kernels import FloatMatrix, IdArray, cpu_count, omp_threads, search_slice, worker_pool
from .policy import DEFAULT_THRESHOLD, DecisionPolicy

__all__ = ["ApproxMatcher", "FaissCandidateIndex", "IndexKind", "non_negative_int", "positive_int"]

IndexKind = Literal["hnsw", "ivf"]

# A k this large (candidates() on a huge review list) is cheaper and surer as a flat scan.
_MAX_APPROX_K: Final = 256
# Batches from this many queries are split over the worker pool (one OpenMP thread each).
_SPLIT_QUERIES: Final = 64
# IVF wants ~39 training points per centroid (FAISS warns below that).
_POINTS_PER_CENTROID: Final = 39
_TRAIN_POINTS_PER_CENTROID: Final = 64
_TRAIN_ITERATIONS: Final = 10


def positive_int(name: str, value: object) -> int:
    """*value* as an int >= 1, or :class:`InvalidFeatureError` with ``code=name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidFeatureError(f"{name} must be an int >= 1 (got {value!r})", code=name)
    return int(value)


def non_negative_int(name: str, value: object) -> int:
    """*value* as an int >= 0, or :class:`InvalidFeatureError` with ``code=name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidFeatureError(f"{name} must be an int >= 0 (got {value!r})", code=name)
    return int(value)


class FaissCandidateIndex:
    """FAISS HNSW or IVF proposing candidates for a :class:`Matcher` (see the module doc)."""

    def __init__(
        self,
        dim: int,
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
    ) -> None:
        if index not in ("hnsw", "ivf"):
            raise InvalidFeatureError(
                f"index must be 'hnsw' or 'ivf' (got {index!r}): use Matcher for the "
                "exact flat index",
                code="index",
            )
        self.dim = dim
        self.kind: IndexKind = index
        self._hnsw_m = positive_int("hnsw_m", hnsw_m)
        self._ef_construction = positive_int("ef_construction", ef_construction)
        self.rerank = positive_int("rerank", rerank)
        self._ef_search = max(positive_int("ef_search", ef_search), self.rerank)
        self._nlist = None if nlist is None else positive_int("nlist", nlist)
        self._nprobe = positive_int("nprobe", nprobe)
        self.exact_below = non_negative_int("exact_below", exact_below)
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
        self._inner: Any = None
        self._quantizer: Any = None
        self._built_at = 0
        self._live = 0
        self.tombstones = 0

    # -- tuning ---------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        """Whether the structure exists and the gallery is large enough to use it."""
        return self._approx is not None and self._live >= self.exact_below

    @property
    def ef_construction(self) -> int:
        """HNSW build-time beam width."""
        return self._ef_construction

    @property
    def ef_search(self) -> int:
        """HNSW search beam width."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = max(positive_int("ef_search", value), self.rerank)
        if self.kind == "hnsw" and self._inner is not None:
            self._inner.hnsw.efSearch = self._ef_search

    @property
    def nprobe(self) -> int:
        """IVF lists visited per query."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = positive_int("nprobe", value)
        if self.kind == "ivf" and self._inner is not None:
            self._inner.nprobe = self._nprobe

    # -- the CandidateIndex hooks ---------------------------------------------------------

    def added(self, ids: IdArray, vectors: FloatMatrix, snapshot: Snapshot) -> None:
        self._live += len(ids)
        if self._needs_build():
            self.rebuild(snapshot)
        elif self._approx is not None:
            self._approx.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                      np.asarray(ids, dtype=np.int64))

    def removed(self, ids: IdArray, snapshot: Snapshot) -> None:
        self._live -= len(ids)
        if self._approx is None:
            return
        if self.kind == "ivf":
            self._approx.remove_ids(np.asarray(ids, dtype=np.int64))
            return
        self.tombstones += len(ids)
        if self.tombstones > self._max_tombstones * max(1, self._approx.ntotal):
            self.rebuild(snapshot)

    def rebuild(self, snapshot: Snapshot) -> None:
        ids, vectors = snapshot()
        self._live = len(ids)
        self._approx = self._inner = self._quantizer = None
        self.tombstones = 0
        if len(ids) and len(ids) >= max(1, self.exact_below) and (
            self.kind == "hnsw" or len(ids) >= self._min_train()
        ):
            self._build(ids, vectors)

    def propose(self, queries: FloatMatrix, k: int, total: int) -> IdArray | None:
        if self._approx is None or total < self.exact_below or k > _MAX_APPROX_K:
            return None
        fetch = max(k, self.rerank)
        if len(queries) >= _SPLIT_QUERIES and cpu_count() > 1:
            workers = min(cpu_count(), len(queries) // (_SPLIT_QUERIES // 2))
            bounds = np.linspace(0, len(queries), workers + 1).astype(int).tolist()
            futures = [
                worker_pool().submit(search_slice, self._approx, queries[lo:hi], fetch, None)
                for lo, hi in itertools.pairwise(bounds)
            ]
            return np.concatenate([f.result()[1] for f in futures])
        with omp_threads(1):
            labels: IdArray = search_slice(self._approx, queries, fetch, None)[1]
        return labels

    # -- internals ------------------------------------------------------------------------

    def _needs_build(self) -> bool:
        n = self._live
        if n < max(1, self.exact_below):
            return False
        if self._approx is None:
            return self.kind == "hnsw" or n >= self._min_train()
        return self.kind == "ivf" and n >= self._retrain_growth * self._built_at

    def _min_train(self) -> int:
        nlist = self._nlist or 1
        return max(_POINTS_PER_CENTROID * nlist, 1)

    def _build(self, ids: IdArray, vectors: FloatMatrix) -> None:
        inner: Any
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self._hnsw_m)
            inner.hnsw.efConstruction = self._ef_construction
            inner.hnsw.efSearch = self._ef_search
        else:
            nlist = self._nlist or max(1, int(4 * math.sqrt(len(ids))))
            nlist = max(1, min(nlist, len(ids) // _POINTS_PER_CENTROID or 1))
            quantizer = faiss.IndexFlatL2(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist)
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
            with omp_threads(cpu_count()):
                inner.train(sample)
            self._quantizer = quantizer  # the IVF index does not own it
        approx = faiss.IndexIDMap2(inner)
        # Building is the one place that uses every core (FAISS's OpenMP over inserts).
        with omp_threads(cpu_count()):
            approx.add_with_ids(vectors, ids)
        self._approx, self._inner = approx, inner
        self._built_at = len(ids)
        self.tombstones = 0


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
        reject_ambiguous, runner_up, policy, threads: As for :class:`Matcher`.

    It is a plain :class:`Matcher` built with a :class:`FaissCandidateIndex`; the
    properties below only expose that index's tuning.
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
        policy: DecisionPolicy | None = None,
        threads: int | None = None,
    ) -> None:
        self._approx_index = FaissCandidateIndex(
            dim, index=index, hnsw_m=hnsw_m, ef_construction=ef_construction,
            ef_search=ef_search, nlist=nlist, nprobe=nprobe, rerank=rerank,
            exact_below=exact_below, max_tombstones=max_tombstones,
            retrain_growth=retrain_growth,
        )
        super().__init__(
            dim, threshold, reject_ambiguous=reject_ambiguous, runner_up=runner_up,
            policy=policy, threads=threads, candidate_index=self._approx_index,
        )

    @property
    def index_kind(self) -> IndexKind:
        """``"hnsw"`` or ``"ivf"``."""
        return self._approx_index.kind

    @property
    def approximate(self) -> bool:
        """Whether searches currently go through the approximate index."""
        return self._approx_index.built

    @property
    def tombstones(self) -> int:
        """HNSW: removed templates still linked in the graph (0 for IVF)."""
        return self._approx_index.tombstones

    def __repr__(self) -> str:
        kind = self.index_kind
        mode = kind if self.approximate else f"{kind}, exact for now"
        return (
            f"<ApproxMatcher ({mode}) dim={self.dim} templates={len(self)} "
            f"identities={len(self.identities)} threshold={self.threshold:g}>"
        )

    @property
    def ef_search(self) -> int:
        """HNSW search beam width."""
        return self._approx_index.ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._approx_index.ef_search = value

    @property
    def nprobe(self) -> int:
        """IVF lists visited per query."""
        return self._approx_index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._approx_index.nprobe = value

    def rebuild(self) -> None:
        """Rebuild (HNSW) or retrain (IVF) the approximate index from the flat gallery."""
        self.rebuild_candidates()

    @classmethod
    def from_matcher(cls, flat: Matcher, **options: Any) -> ApproxMatcher:
        """Take over *flat*'s gallery and policy and build the approximate index once.

        *flat* is left empty. Faster than adding a large gallery template by template.
        """
        matcher = cls(flat.dim, policy=flat.policy, **options)
        matcher.take_over(flat)
        return matcher
