"""faceid-sdk: match face feature vectors that devices extracted, never images.

The public surface fits on one screen::

    FeatureCodec   validate and (de)serialize the vectors clients send
    Matcher        FAISS flat-L2 gallery: argmin + threshold, 1:N, 1:1, top-k
    ApproxMatcher  the same API through FAISS HNSW or IVF, for 100k+ templates
    Enroller       durable SQLite store of identities, keeps a Matcher in step
    rebuild_index  rebuild an index file from its store, atomically
    TemplateProtector      keyed, renewable rotation of stored templates (docs/security.md)
    calibrate_threshold    a 1:N threshold for a target false-positive identification rate
    impostor_match_probability, fmr_for_fpir   open-set risk: 1 - (1 - FMR)^N and back

Names load on first use, so ``import faceid_sdk`` is cheap and never imports
TensorFlow, ONNX Runtime or a model; extractors live in :mod:`faceid_sdk.extractors`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendUnavailableError,
    FaceIDError,
    IndexFileError,
    InvalidFeatureError,
    InvalidIdentityError,
    InvalidImageError,
    ModelMismatchError,
    ProtectionKeyError,
    StoreError,
    UnknownIdentityError,
)

if TYPE_CHECKING:
    from ._calibrate import (
        Calibration,
        calibrate_threshold,
        fmr_for_fpir,
        impostor_match_probability,
    )
    from ._codec import FeatureCodec
    from ._defaults import PAPER_THRESHOLD, Threshold, resolve_threshold
    from ._enroll import (
        Enroller,
        Enrollment,
        PossibleDuplicateWarning,
        RebuildReport,
        rebuild_index,
    )
    from ._protect import TemplateProtector
    from ._store import IdentityRecord
    from .matching import (
        ApproxMatcher,
        Candidate,
        DecisionPolicy,
        Gallery,
        Identification,
        Matcher,
    )

__version__ = "0.1.0"

_LAZY = {
    "FeatureCodec": "._codec",
    "Candidate": ".matching",
    "DecisionPolicy": ".matching",
    "Gallery": ".matching",
    "Identification": ".matching",
    "Matcher": ".matching",
    "ApproxMatcher": ".matching",
    "Enroller": "._enroll",
    "Enrollment": "._enroll",
    "PossibleDuplicateWarning": "._enroll",
    "RebuildReport": "._enroll",
    "rebuild_index": "._enroll",
    "IdentityRecord": "._store",
    "TemplateProtector": "._protect",
    "Calibration": "._calibrate",
    "calibrate_threshold": "._calibrate",
    "fmr_for_fpir": "._calibrate",
    "impostor_match_probability": "._calibrate",
    "PAPER_THRESHOLD": "._defaults",
    "Threshold": "._defaults",
    "resolve_threshold": "._defaults",
}

__all__ = [  # noqa: RUF022 (plain sorted order, checked by tests/test_public_api.py)
    "ApproxMatcher",
    "BackendUnavailableError",
    "Calibration",
    "Candidate",
    "DecisionPolicy",
    "Enroller",
    "Enrollment",
    "FaceIDError",
    "FeatureCodec",
    "Gallery",
    "Identification",
    "IdentityRecord",
    "IndexFileError",
    "InvalidFeatureError",
    "InvalidIdentityError",
    "InvalidImageError",
    "Matcher",
    "ModelMismatchError",
    "PAPER_THRESHOLD",
    "PossibleDuplicateWarning",
    "ProtectionKeyError",
    "RebuildReport",
    "StoreError",
    "TemplateProtector",
    "Threshold",
    "UnknownIdentityError",
    "__version__",
    "calibrate_threshold",
    "fmr_for_fpir",
    "impostor_match_probability",
    "rebuild_index",
    "resolve_threshold",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faceid_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
