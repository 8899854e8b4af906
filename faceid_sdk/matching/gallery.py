"""The contract every gallery backend keeps: flat FAISS, HNSW/IVF, Milvus.

The Enroller and the server take any :class:`Gallery`; ``tests/matching/`` runs one
conformance suite against every implementation, so that the same gallery gives the same
answers whichever backend holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .policy import DecisionPolicy
from .results import Candidate, Identification

__all__ = ["Gallery"]


@runtime_checkable
class Gallery(Protocol):
    """Templates under int64 ids, grouped by identity, searched by exact Euclidean distance.

    Every answer is decided by :attr:`policy` (:class:`~faceid_sdk.DecisionPolicy`).
    Queries and templates are unit-norm ``(dim,)`` vectors; mutations are all or nothing.
    """

    @property
    def dim(self) -> int:
        """Length of every feature vector."""

    @property
    def policy(self) -> DecisionPolicy:
        """How answers are decided."""

    @property
    def identities(self) -> tuple[str, ...]:
        """Enrolled identities, sorted."""

    def __len__(self) -> int:
        """Number of templates (not identities)."""

    def __contains__(self, identity: object) -> bool: ...

    def template_count(self, identity: str) -> int:
        """Templates of *identity*; :class:`~faceid_sdk.UnknownIdentityError` if absent."""

    def template_ids(self, identity: str) -> npt.NDArray[np.int64]:
        """Ids of the templates of *identity*."""

    def all_template_ids(self) -> npt.NDArray[np.int64]:
        """Ids of every template, ascending."""

    def add(
        self, identity: str, vectors: Any, *,
        ids: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Add templates to *identity* (created when new); return their ids."""

    def remove(self, identity: str) -> int:
        """Remove *identity* and its templates; return how many went."""

    def remove_templates(self, ids: Sequence[int] | npt.NDArray[np.integer[Any]]) -> int:
        """Remove templates by id, skipping unknown ones; return how many went."""

    def identify(self, vector: Any) -> Identification:
        """1:N over the whole gallery."""

    def identify_batch(self, vectors: Any) -> list[Identification]:
        """:meth:`identify` for each row."""

    def verify(self, vector: Any, identity: str) -> Identification:
        """1:1 against *identity*, refused as ambiguous when the policy says so."""

    def candidates(self, vector: Any, k: int = 5) -> list[Candidate]:
        """Up to *k* distinct identities, nearest first."""
