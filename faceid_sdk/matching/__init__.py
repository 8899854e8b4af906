"""Matching: galleries of templates, searched by exact Euclidean distance, decided by one policy.

* :mod:`.policy`: :class:`DecisionPolicy`, the one decision rule (threshold, ambiguity,
  runner-up) every backend and surface applies.
* :mod:`.results`: :class:`Identification` and :class:`Candidate`.
* :mod:`.gallery`: :class:`Gallery`, the contract of every backend.
* :mod:`.flat`: :class:`Matcher`, FAISS flat L2 (the mission's rule, exact).
* :mod:`.approx`: :class:`ApproxMatcher`, HNSW/IVF candidates re-ranked exactly.
* :mod:`.index_file`: the verified index file format; :mod:`.digest` the content digest
  that ties an index to its store.
* :mod:`.kernels`: the scan kernels and threads.

The Milvus backend lives in ``faceid_adapters.milvus`` (an optional extra).
"""

from .approx import ApproxMatcher, FaissCandidateIndex
from .flat import CandidateIndex, Matcher
from .gallery import Gallery
from .index_file import INDEX_FORMAT_VERSION, IndexManifest, read_manifest
from .policy import DEFAULT_THRESHOLD, DecisionPolicy
from .results import REASONS, Candidate, Identification

__all__ = [
    "DEFAULT_THRESHOLD",
    "INDEX_FORMAT_VERSION",
    "REASONS",
    "ApproxMatcher",
    "Candidate",
    "CandidateIndex",
    "DecisionPolicy",
    "FaissCandidateIndex",
    "Gallery",
    "Identification",
    "IndexManifest",
    "Matcher",
    "read_manifest",
]
