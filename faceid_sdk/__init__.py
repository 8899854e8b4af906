"""faceid-sdk: match face feature vectors that devices extracted, never images.

The public surface fits on one screen::

    FeatureCodec   validate and (de)serialize the vectors clients send
    Matcher        FAISS flat-L2 gallery: argmin + threshold, 1:N, 1:1, top-k
    Enroller       durable SQLite store of identities, keeps a Matcher in step
    rebuild_index  rebuild an index file from its store, atomically

Importing this package never imports TensorFlow, ONNX Runtime or a model:
extractors live behind :mod:`faceid_sdk.extractors` and load on first use.
"""

from __future__ import annotations

from ._codec import FeatureCodec
from ._enroll import (
    Enroller,
    Enrollment,
    PossibleDuplicateWarning,
    RebuildReport,
    rebuild_index,
)
from ._match import Candidate, Identification, Matcher
from ._store import IdentityRecord
from .errors import (
    BackendUnavailableError,
    FaceIDError,
    IndexFileError,
    InvalidFeatureError,
    InvalidIdentityError,
    ModelMismatchError,
    StoreError,
    UnknownIdentityError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "Candidate",
    "Enroller",
    "Enrollment",
    "FaceIDError",
    "FeatureCodec",
    "Identification",
    "IdentityRecord",
    "IndexFileError",
    "InvalidFeatureError",
    "InvalidIdentityError",
    "Matcher",
    "ModelMismatchError",
    "PossibleDuplicateWarning",
    "RebuildReport",
    "StoreError",
    "UnknownIdentityError",
    "__version__",
    "rebuild_index",
]
