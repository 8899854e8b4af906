"""The Milvus backend: the :class:`~faceid_sdk.Matcher` API over a Milvus collection.

For deployments that outgrow one machine's memory or need several servers to share one
gallery. The same code talks to milvus-lite (a local file, the embedded engine the tests
use: ``MilvusMatcher("faces.db", dim=128)``) and to a Milvus cluster
(``MilvusMatcher("http://milvus:19530", dim=128, token=..., index_type="HNSW")``).

Same rule and same answers as :class:`~faceid_sdk.Matcher`: the nearest template speaks for
its identity, reported distances are **Euclidean** and exact (recomputed in float64 from the
stored template that Milvus returns; Milvus's own ``L2`` metric is the *squared* distance and
is used only to rank), and a match is accepted only strictly under the threshold. With an
approximate index (``HNSW``, ``IVF_FLAT``...) Milvus proposes ``rerank`` candidates that are
re-ranked exactly, as :class:`~faceid_sdk.ApproxMatcher` does with FAISS.

Milvus is the source of truth here: nothing is cached in this process, so several servers can
share one collection and each sees the others' enrollments (the collection is created with
``Strong`` consistency: a search sees every write acknowledged before it). Identity names
reach Milvus only inside quoted, escaped string literals of its filter language; a test
enrolls names made of quotes, backslashes and operators to keep it so.

Not provided: :meth:`Matcher.save`/``load`` (Milvus persists the collection itself), and
atomicity across processes of the "ids not already present" check in :meth:`add` (two writers
adding the same explicit id at the same moment can both succeed; give each writer its own ids,
such as the store's row ids the :class:`~faceid_sdk.Enroller` uses).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceid_sdk.errors import (
    BackendUnavailableError,
    IndexFileError,
    InvalidFeatureError,
    UnknownIdentityError,
)
from faceid_sdk.identity import MAX_IDENTITY_LENGTH, normalize_identity
from faceid_sdk.matching import DEFAULT_THRESHOLD, Candidate, DecisionPolicy, Identification
from faceid_sdk.matching.approx import positive_int
from faceid_sdk.matching.flat import coerce_template_ids
from faceid_sdk.matching.kernels import exact_distances
from faceid_sdk.vectors import as_matrix, check_unit_norm

__all__ = ["MilvusMatcher"]

DEFAULT_COLLECTION: Final = "faceid_templates"
_ID_FIELD: Final = "template_id"
_NAME_FIELD: Final = "identity"
_VECTOR_FIELD: Final = "vector"
# Names are at most MAX_IDENTITY_LENGTH characters; VARCHAR lengths count UTF-8 bytes.
_NAME_BYTES: Final = 4 * MAX_IDENTITY_LENGTH
# Milvus caps one query/search result window (offset + limit) at 16,384 rows.
_MAX_WINDOW: Final = 16_384


def _literal(text: str) -> str:
    """*text* as a string literal of Milvus's filter language (double quotes, escaped).

    Normalized identity names hold no control characters, so only ``"`` and ``\\`` need
    escaping; JSON's string syntax escapes exactly those the way Milvus reads them.
    """
    return json.dumps(text, ensure_ascii=False)


def _client(uri: str, token: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise BackendUnavailableError(
            "the Milvus backend needs pymilvus (and milvus-lite for local files): "
            "pip install 'faceid-sdk[milvus]'"
        ) from exc
    return MilvusClient(uri=uri, token=token)


class MilvusMatcher:
    """A gallery of unit-norm templates in a Milvus collection, searched like :class:`Matcher`.

    Args:
        uri: A local file path (milvus-lite) or a Milvus server URI.
        dim: Length of every feature vector; an existing collection must have it.
        threshold: Accept a match only when its Euclidean distance is strictly below this.
        collection: Collection name (created when missing, with fields ``template_id``
            INT64 primary key, ``identity`` VARCHAR, ``vector`` FLOAT_VECTOR(dim)).
        token: Milvus credentials (``"user:password"`` or an API key); empty for none.
        index_type: Milvus index on the vector field when the collection is created:
            ``"FLAT"`` (exact, the default) or an approximate one (``"HNSW"``,
            ``"IVF_FLAT"``...) for large galleries on a cluster.
        index_params: Build parameters of that index (``{"M": 32, "efConstruction": 80}``).
        search_params: Search parameters (``{"ef": 64}``, ``{"nprobe": 16}``).
        rerank: Candidates fetched per query and re-ranked exactly (approximate indexes).
        search_batch: Most queries sent in one search request (``identify_batch`` splits
            larger batches; milvus-lite's memory grows with queries x templates x dim).
        reject_ambiguous, runner_up, policy: As for :class:`Matcher`.
        client: An existing ``pymilvus.MilvusClient`` to use instead of *uri*/*token*.
    """

    def __init__(
        self,
        uri: str,
        dim: int,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        collection: str = DEFAULT_COLLECTION,
        token: str = "",
        index_type: str = "FLAT",
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        rerank: int = 16,
        search_batch: int = 16,
        reject_ambiguous: bool = False,
        runner_up: bool = False,
        policy: DecisionPolicy | None = None,
        client: Any = None,
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
        self._policy = policy
        self._collection = collection
        self._exact_index = index_type.upper() == "FLAT"
        rerank = positive_int("rerank", rerank)  # checked even where FLAT ignores it
        self._rerank = 1 if self._exact_index else rerank
        self._search_batch = positive_int("search_batch", search_batch)
        self._search_params = {"metric_type": "L2", "params": dict(search_params or {})}
        self._client = client if client is not None else _client(uri, token)
        self._uri = uri
        if self._client.has_collection(collection):
            self._check_schema()
            # A collection reopened after its process ended is "released": load it to search.
            self._client.load_collection(collection)
        else:
            self._create(index_type.upper(), dict(index_params or {}))

    # -- setup ----------------------------------------------------------------------------

    def _create(self, index_type: str, index_params: dict[str, Any]) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(_NAME_FIELD, DataType.VARCHAR, max_length=_NAME_BYTES)
        schema.add_field(_VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self._dim)
        index = self._client.prepare_index_params()
        index.add_index(
            field_name=_VECTOR_FIELD,
            index_type=index_type,
            metric_type="L2",
            params=index_params,
        )
        self._client.create_collection(
            self._collection,
            schema=schema,
            index_params=index,
            consistency_level="Strong",
        )

    def _check_schema(self) -> None:
        description = self._client.describe_collection(self._collection)
        fields = {f["name"]: f for f in description.get("fields", [])}
        missing = {_ID_FIELD, _NAME_FIELD, _VECTOR_FIELD} - set(fields)
        if missing:
            raise IndexFileError(
                f"Milvus collection {self._collection!r} at {self._uri!r} was not made by "
                f"faceid-sdk (no field {sorted(missing)[0]!r}): pass another collection= name"
            )
        dim = int(fields[_VECTOR_FIELD].get("params", {}).get("dim", -1))
        if dim != self._dim:
            raise IndexFileError(
                f"Milvus collection {self._collection!r} holds {dim}-d templates, this matcher "
                f"is {self._dim}-d: templates of another model cannot be compared; use another "
                "collection= for this model"
            )

    def close(self) -> None:
        """Release the connection (a milvus-lite file can then be opened elsewhere)."""
        self._client.close()

    def __enter__(self) -> MilvusMatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- read-only views ------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Length of every feature vector."""
        return self._dim

    @property
    def policy(self) -> DecisionPolicy:
        """The decision policy every answer follows."""
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
    def identities(self) -> tuple[str, ...]:
        """Enrolled identities, sorted (one pass over the collection)."""
        names = {row[_NAME_FIELD] for row in self._scan_rows("", [_NAME_FIELD])}
        return tuple(sorted(names))

    def __len__(self) -> int:
        """Number of templates (not identities)."""
        return self._count("")

    def __contains__(self, identity: object) -> bool:
        try:
            name = normalize_identity(identity)
        except ValueError:
            return False
        return self._count(self._is(name)) > 0

    def __repr__(self) -> str:
        return (
            f"<MilvusMatcher {self._uri!r}/{self._collection} dim={self._dim} "
            f"threshold={self.threshold:g}>"
        )

    def all_template_ids(self) -> npt.NDArray[np.int64]:
        """Ids of every template, ascending (one pass over the collection)."""
        rows = self._scan_rows("", [_ID_FIELD])
        return np.array(sorted(int(r[_ID_FIELD]) for r in rows), dtype=np.int64)

    def template_count(self, identity: str) -> int:
        """Number of templates of *identity*; :class:`UnknownIdentityError` if absent."""
        return len(self.template_ids(identity))

    def template_ids(self, identity: str) -> npt.NDArray[np.int64]:
        """Ids of the templates of *identity*, ascending."""
        name = normalize_identity(identity)
        rows = self._scan_rows(self._is(name), [_ID_FIELD])
        if not rows:
            raise _unknown(name)
        return np.array(sorted(int(r[_ID_FIELD]) for r in rows), dtype=np.int64)

    # -- mutations ------------------------------------------------------------------------

    def add(
        self,
        identity: str,
        vectors: Any,
        *,
        ids: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Add templates to *identity* and return their int64 ids (see :meth:`Matcher.add`).

        Fresh ids are random 63-bit integers (unique across processes without coordination;
        a collision is checked for and refused like an explicit duplicate).
        """
        name = normalize_identity(identity)
        matrix = as_matrix(vectors, self._dim)
        if len(matrix) == 0:
            raise InvalidFeatureError(
                "vectors must hold at least one template (got none)", code="empty"
            )
        check_unit_norm(matrix)
        if ids is None:
            new_ids = np.array([secrets.randbits(63) for _ in range(len(matrix))], dtype=np.int64)
        else:
            new_ids = coerce_template_ids(ids, len(matrix))
        taken = self._present(new_ids.tolist())
        if taken:
            raise InvalidFeatureError(
                f"ids must not already be in the gallery (got {sorted(taken)[:5]} already "
                "present): remove those templates first",
                code="template_id",
            )
        rows = [
            {_ID_FIELD: int(i), _NAME_FIELD: name, _VECTOR_FIELD: v}
            for i, v in zip(new_ids.tolist(), matrix, strict=True)
        ]
        self._client.insert(self._collection, rows)
        return new_ids

    def remove(self, identity: str) -> int:
        """Remove *identity* and all its templates; return how many templates went."""
        doomed = self.template_ids(identity)
        self._client.delete(self._collection, ids=doomed.tolist())
        return len(doomed)

    def remove_templates(self, ids: Sequence[int] | npt.NDArray[np.integer[Any]]) -> int:
        """Remove templates by id; unknown ids are skipped. Returns how many were removed."""
        wanted = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1)).tolist()
        present = sorted(self._present(wanted))
        if present:
            self._client.delete(self._collection, ids=present)
        return len(present)

    # -- searches -------------------------------------------------------------------------

    def identify(self, vector: Any) -> Identification:
        """1:N: the nearest identity over the whole gallery, accepted under the threshold."""
        query = self._queries(vector, single=True)
        return self._identify(query)[0]

    def identify_batch(self, vectors: Any) -> list[Identification]:
        """:meth:`identify` for each row of *vectors*, in one request."""
        queries = self._queries(vectors, single=False)
        return self._identify(queries) if len(queries) else []

    def verify(self, vector: Any, identity: str) -> Identification:
        """1:1: distance from *vector* to the nearest template of *identity* only."""
        name = normalize_identity(identity)
        query = self._queries(vector, single=True)
        rows = self._scan_rows(self._is(name), [_ID_FIELD, _VECTOR_FIELD])
        if not rows:
            raise _unknown(name)
        ids = np.array([int(r[_ID_FIELD]) for r in rows], dtype=np.int64)
        distances = exact_distances(
            query[0], np.array([r[_VECTOR_FIELD] for r in rows], np.float32))
        order = np.lexsort((ids, distances))
        claimed = (name, float(distances[order[0]]), int(ids[order[0]]))
        other = None
        if self._policy.needs_runner_up:
            hits = self._search(query, 1 if self._exact_index else self._rerank,
                                filter=f"{_NAME_FIELD} != {_literal(name)}")
            ranked = _exact_ranking(query[0], hits[0])
            other = ranked[0] if ranked else None
        return self._policy.verify(claimed, other)

    def candidates(self, vector: Any, k: int = 5) -> list[Candidate]:
        """Up to *k* distinct identities, nearest first, each at its nearest template."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidFeatureError(f"k must be an int >= 1 (got {k!r})", code="k")
        query = self._queries(vector, single=True)
        picks = self._grouped(query, int(k))[0]
        return [Candidate(name, d, i) for name, d, i in picks[: int(k)]]

    # -- internals ------------------------------------------------------------------------

    def _queries(self, vectors: Any, *, single: bool) -> npt.NDArray[np.float32]:
        matrix = as_matrix(vectors, self._dim, name="query" if single else "queries")
        if single and len(matrix) != 1:
            raise InvalidFeatureError(
                f"query must be one vector of shape ({self._dim},) (got {len(matrix)} rows): "
                "use identify_batch for several",
                code="dimension",
            )
        if len(matrix):
            check_unit_norm(matrix, name="query" if single else "queries")
        return matrix

    def _identify(self, queries: npt.NDArray[np.float32]) -> list[Identification]:
        if self._policy.needs_runner_up:
            return [self._decide(picks) for picks in self._grouped(queries, 2)]
        hits = self._search(queries, self._rerank)
        return [
            self._decide(_exact_ranking(q, row)[:1]) for q, row in zip(queries, hits, strict=True)
        ]

    def _search(self, queries: npt.NDArray[np.float32], limit: int, **extra: Any) -> list[Any]:
        """Search in requests of at most ``search_batch`` queries (bounded memory per call:
        milvus-lite materialises every query-template difference of a request)."""
        hits: list[Any] = []
        for lo in range(0, len(queries), self._search_batch):
            hits.extend(
                self._client.search(
                    self._collection,
                    data=list(queries[lo : lo + self._search_batch]),
                    limit=limit,
                    output_fields=[_NAME_FIELD, _VECTOR_FIELD],
                    search_params=self._search_params,
                    **extra,
                )
            )
        return hits

    def _grouped(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float, int]]]:
        """Per query, the nearest template of up to ~k identities, exact and nearest first."""
        limit = min(_MAX_WINDOW, k if self._exact_index else max(k, self._rerank))
        hits = self._search(queries, limit, group_by_field=_NAME_FIELD)
        return [_exact_ranking(q, row) for q, row in zip(queries, hits, strict=True)]

    def _decide(self, picks: list[tuple[str, float, int]]) -> Identification:
        return self._policy.identify(
            picks[0] if picks else None, picks[1] if len(picks) > 1 else None
        )

    def _is(self, name: str) -> str:
        return f"{_NAME_FIELD} == {_literal(name)}"

    def _count(self, expr: str) -> int:
        rows = self._client.query(self._collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _present(self, ids: list[int]) -> set[int]:
        found: set[int] = set()
        for lo in range(0, len(ids), _MAX_WINDOW):
            chunk = ids[lo : lo + _MAX_WINDOW]
            rows = self._client.get(self._collection, ids=chunk, output_fields=[_ID_FIELD])
            found.update(int(r[_ID_FIELD]) for r in rows)
        return found

    def _scan_rows(self, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching *expr*, however many (pages through larger results)."""
        rows: list[dict[str, Any]] = self._client.query(
            self._collection, filter=expr, output_fields=fields, limit=_MAX_WINDOW
        )
        if len(rows) < _MAX_WINDOW:
            return rows
        iterator = self._client.query_iterator(
            self._collection, batch_size=1000, filter=expr, output_fields=fields
        )
        rows = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows


def _exact_ranking(
    query: npt.NDArray[np.float32], hits: Iterable[Any]
) -> list[tuple[str, float, int]]:
    """Each identity's nearest hit, by exact Euclidean distance (ties: lower template id)."""
    rows = list(hits)
    if not rows:
        return []
    templates = np.array([h["entity"][_VECTOR_FIELD] for h in rows], dtype=np.float32)
    distances = exact_distances(query, templates).tolist()
    ranked = sorted(
        (
            (d, int(h[_ID_FIELD]), h["entity"][_NAME_FIELD])
            for d, h in zip(distances, rows, strict=True)
        ),
    )
    seen: set[str] = set()
    picks = []
    for distance, template_id, name in ranked:
        if name not in seen:
            seen.add(name)
            picks.append((name, distance, template_id))
    return picks


def _unknown(name: str) -> UnknownIdentityError:
    return UnknownIdentityError(
        f"identity {name!r} is not enrolled: enroll it first or check the spelling"
    )
