"""The scan kernels and the threads they run on, shared by every FAISS-backed matcher.

See :mod:`faceid_sdk.matching.flat` for why searches run with one OpenMP thread per
calling thread and split large work over a small pool of their own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final

import faiss
import numpy as np
import numpy.typing as npt

__all__ = [
    "BLAS_THRESHOLD",
    "FloatMatrix",
    "IdArray",
    "cpu_count",
    "exact_distances",
    "omp_threads",
    "scan_span",
    "search_slice",
    "tune_faiss",
    "worker_pool",
]

FloatMatrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

#: FAISS takes its blocked BLAS path from this many queries on (its long-standing default).
BLAS_THRESHOLD: Final = 20


def search_slice(
    index: Any, queries: FloatMatrix, k: int, selector: Any
) -> tuple[npt.NDArray[np.float32], IdArray]:
    """``index.search`` of *queries*, restricted by an ``IDSelector`` when one is given."""
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
def omp_threads(n: int) -> Iterator[None]:
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


def scan_span(
    out: npt.NDArray[np.float32], queries: FloatMatrix, storage: FloatMatrix, lo: int, hi: int
) -> None:
    """Squared L2 from each query to templates lo:hi, into out[:, lo:hi] (FAISS's kernel)."""
    templates = faiss.swig_ptr(storage[lo:hi])
    for row, query in enumerate(queries):
        target = out[row, lo:hi]
        faiss.fvec_L2sqr_ny(  # type: ignore[attr-defined]
            faiss.swig_ptr(target), faiss.swig_ptr(query), templates, storage.shape[1], hi - lo
        )


def exact_distances(queries: FloatMatrix, templates: FloatMatrix) -> npt.NDArray[np.float64]:
    """Euclidean distance, in float64, between each template row and its query.

    *queries* is one vector (compared with every template) or one row per template.
    """
    diff = np.asarray(templates, dtype=np.float64) - np.asarray(queries, dtype=np.float64)
    result: npt.NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return result


_pool_lock = threading.Lock()
_pool_instance: ThreadPoolExecutor | None = None
_tuned = False


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_pool() -> ThreadPoolExecutor:
    """Workers for large batches, each pinned to one OpenMP thread for its whole life."""
    global _pool_instance
    with _pool_lock:
        if _pool_instance is None:
            _pool_instance = ThreadPoolExecutor(
                max_workers=max(2, cpu_count()),
                thread_name_prefix="faceid-match",
                initializer=faiss.omp_set_num_threads,
                initargs=(1,),
            )
        return _pool_instance


def tune_faiss() -> None:
    """Let batches of 20+ queries take FAISS's blocked BLAS path (see :mod:`.flat`)."""
    global _tuned
    with _pool_lock:
        if _tuned:
            return
        _tuned = True
        if os.environ.get("FACEID_KEEP_FAISS_BLAS_THRESHOLD"):
            return
        if faiss.cvar.distance_compute_blas_threshold > BLAS_THRESHOLD:
            faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
