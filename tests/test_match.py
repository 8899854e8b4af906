"""Tests of the Matcher: the argmin + threshold rule, ids, concurrency and index files."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceid_sdk.errors import (
    FaceIDError,
    IndexFileError,
    InvalidFeatureError,
    InvalidIdentityError,
    UnknownIdentityError,
)
from faceid_sdk.matching import (
    DEFAULT_THRESHOLD,
    Candidate,
    DecisionPolicy,
    Identification,
    Matcher,
    read_manifest,
)

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def at_distance(anchor: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly *distance* (Euclidean) from the unit vector *anchor*."""
    a = anchor.astype(np.float64)
    other = rng.standard_normal(a.shape)
    other -= other.dot(a) * a
    other /= np.linalg.norm(other)
    cos = 1.0 - distance**2 / 2.0
    return (cos * a + math.sqrt(max(0.0, 1.0 - cos**2)) * other).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def gallery(rng: np.random.Generator) -> tuple[Matcher, np.ndarray]:
    matcher = Matcher(DIM)
    vectors = unit(rng, 6)
    matcher.add("alice", vectors[:3])
    matcher.add("bob", vectors[3:5])
    matcher.add("carol", vectors[5])
    return matcher, vectors


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, -3, 1.5, "128", True, None])
def test_bad_dim_refused(dim: object) -> None:
    """A dimension that is not a positive int is refused with a FaceIDError."""
    with pytest.raises(InvalidFeatureError, match="dim must be"):
        Matcher(dim)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0, -0.1, math.inf, math.nan, "0.5", True])
def test_bad_threshold_refused(threshold: object) -> None:
    """A threshold that is not a finite positive number is refused."""
    with pytest.raises(InvalidFeatureError, match="threshold must be"):
        Matcher(DIM, threshold=threshold)  # type: ignore[arg-type]


def test_properties_and_repr(gallery: tuple[Matcher, np.ndarray]) -> None:
    """The read-only views report templates, identities and a short repr."""
    matcher, _ = gallery
    # Matcher's default is the shipped model's calibrated threshold (model.json).
    assert (matcher.dim, matcher.threshold, len(matcher)) == (DIM, DEFAULT_THRESHOLD, 6)
    assert matcher.identities == ("alice", "bob", "carol")
    assert "alice" in matcher and "dave" not in matcher and 42 not in matcher
    assert matcher.template_count("bob") == 2
    assert matcher.template_ids("alice").dtype == np.int64
    assert repr(matcher) == (
        f"<Matcher dim=16 templates=6 identities=3 threshold={DEFAULT_THRESHOLD:g}>"
    )
    with pytest.raises(AttributeError):
        matcher.threshold = 0.7  # type: ignore[misc]


# -- empty gallery, -1 labels, one template ----------------------------------------------


def test_empty_gallery(rng: np.random.Generator) -> None:
    """An empty gallery answers identity None, distance inf, not accepted, without FAISS -1."""
    matcher = Matcher(DIM)
    result = matcher.identify(unit(rng, 1)[0])
    assert result == Identification(identity=None, distance=math.inf, accepted=False)
    assert repr(result) == "<Identification None d=inf rejected (empty_gallery)>"
    assert matcher.identify_batch(unit(rng, 3)) == [result] * 3
    assert matcher.candidates(unit(rng, 1)[0]) == []
    assert matcher.identify_batch(np.zeros((0, DIM), np.float32)) == []


def test_one_template_never_maps_padding_to_a_person(rng: np.random.Generator) -> None:
    """With one template FAISS pads k > 1 results with label -1: no phantom runner-up."""
    matcher = Matcher(DIM, runner_up=True)
    vector = unit(rng, 1)[0]
    matcher.add("alice", vector)
    result = matcher.identify(unit(rng, 1)[0])
    assert result.identity == "alice" and result.runner_up is None
    assert result.runner_up_distance == math.inf and not result.ambiguous
    assert [c.identity for c in matcher.candidates(vector, k=5)] == ["alice"]


def test_empty_after_removing_everything(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Removing every identity leaves a gallery that answers like a new one."""
    matcher, vectors = gallery
    for name in matcher.identities:
        matcher.remove(name)
    assert len(matcher) == 0 and matcher.identities == ()
    assert matcher.identify(vectors[0]).identity is None


# -- the rule -----------------------------------------------------------------------------


def test_euclidean_not_squared(rng: np.random.Generator) -> None:
    """Distances are Euclidean: a template 0.4 away reports 0.4, not 0.16."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM)
    matcher.add("alice", anchor)
    result = matcher.identify(at_distance(anchor, 0.4, rng))
    assert result.distance == pytest.approx(0.4, abs=1e-5)
    assert result.accepted


def test_threshold_is_strict(rng: np.random.Generator) -> None:
    """A distance equal to the threshold is rejected; just under is accepted."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM)
    matcher.add("alice", anchor)
    query = at_distance(anchor, 0.5, rng)
    distance = matcher.identify(query).distance
    exact = Matcher(DIM, threshold=distance)
    exact.add("alice", anchor)
    assert not exact.identify(query).accepted
    looser = Matcher(DIM, threshold=float(np.nextafter(distance, 10.0)))
    looser.add("alice", anchor)
    assert looser.identify(query).accepted


def test_far_match_is_rejected_but_reported(rng: np.random.Generator) -> None:
    """The nearest identity is reported even when it is too far to accept."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM)
    matcher.add("alice", anchor)
    far = DEFAULT_THRESHOLD + 0.25  # beyond whatever the shipped model calibrated
    result = matcher.identify(at_distance(anchor, far, rng))
    assert result.identity == "alice" and not result.accepted
    assert repr(result) == f"<Identification 'alice' d={far:.3f} rejected (no_match)>"


def test_nearest_template_wins(rng: np.random.Generator) -> None:
    """With several templates per identity, the identity of the nearest template wins."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM, runner_up=True)
    matcher.add("alice", np.stack([at_distance(anchor, 0.3, rng), at_distance(anchor, 1.2, rng)]))
    matcher.add("bob", np.stack([at_distance(anchor, 0.35, rng)]))
    result = matcher.identify(anchor)
    assert result.identity == "alice"
    assert result.template_id == int(matcher.template_ids("alice")[0])
    assert result.runner_up == "bob"
    assert result.runner_up_distance == pytest.approx(0.35, abs=1e-5)
    assert result.ambiguous and result.accepted


def test_runner_up_beyond_the_first_k(rng: np.random.Generator) -> None:
    """The runner-up is found even when one identity owns all of the first few templates."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM, runner_up=True)
    matcher.add("alice", np.stack([at_distance(anchor, 0.1 + 0.01 * i, rng) for i in range(10)]))
    matcher.add("bob", at_distance(anchor, 0.45, rng))
    result = matcher.identify(anchor)
    assert result.identity == "alice" and result.runner_up == "bob"
    assert result.runner_up_distance == pytest.approx(0.45, abs=1e-5)


def test_runner_up_of_an_identity_with_many_templates(rng: np.random.Generator) -> None:
    """An identity owning hundreds of near templates does not hide the runner-up."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM, runner_up=True)
    matcher.add("alice", np.stack([at_distance(anchor, 0.05 + 1e-4 * i, rng) for i in range(300)]))
    matcher.add("bob", at_distance(anchor, 0.4, rng))
    matcher.add("carol", at_distance(anchor, 0.6, rng))
    result = matcher.identify(anchor)
    assert (result.identity, result.runner_up) == ("alice", "bob") and result.ambiguous
    assert result.runner_up_distance == pytest.approx(0.4, abs=1e-6)


def test_runner_up_is_off_by_default(rng: np.random.Generator) -> None:
    """By default the runner-up is not computed: None, never a false 'no one else' (inf)."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM)
    matcher.add("alice", at_distance(anchor, 0.2, rng))
    matcher.add("bob", at_distance(anchor, 0.3, rng))
    result = matcher.identify(anchor)
    assert result.identity == "alice" and result.accepted and not matcher.runner_up
    assert result.runner_up is None and result.runner_up_distance is None
    assert not result.ambiguous and Matcher(DIM, reject_ambiguous=True).runner_up


def test_reject_ambiguous_option(rng: np.random.Generator) -> None:
    """With reject_ambiguous, two identities under the threshold make the match refused."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM, reject_ambiguous=True)
    matcher.add("alice", at_distance(anchor, 0.2, rng))
    matcher.add("bob", at_distance(anchor, 0.3, rng))
    result = matcher.identify(anchor)
    assert result.identity == "alice" and result.ambiguous and not result.accepted
    matcher.remove("bob")
    assert matcher.identify(anchor).accepted


def test_identify_batch_equals_identify(gallery: tuple[Matcher, np.ndarray], rng) -> None:
    """A batch answers exactly what one query at a time answers."""
    matcher, vectors = gallery
    queries = np.concatenate([vectors, unit(rng, 10)])
    assert matcher.identify_batch(queries) == [matcher.identify(q) for q in queries]


def test_large_batches_split_across_workers_agree(rng: np.random.Generator) -> None:
    """A batch big enough to be split over worker threads answers like single queries."""
    matcher = Matcher(DIM)
    vectors = unit(rng, 20_000)
    matcher.add("bulk", vectors[:19_990])
    for i in range(10):
        matcher.add(f"p{i}", vectors[19_990 + i])
    queries = np.concatenate([vectors[19_990:], unit(rng, 190)])
    assert len(queries) * len(matcher) > 2_000_000
    batch = matcher.identify_batch(queries)
    assert batch == [matcher.identify(q) for q in queries]
    assert [r.identity for r in batch[:10]] == [f"p{i}" for i in range(10)]
    assert all(r.distance == 0.0 for r in batch[:10])
    assert faiss.cvar.distance_compute_blas_threshold <= 20


def test_gallery_sharded_single_queries_agree(rng, monkeypatch) -> None:
    """Single queries split over slices of the gallery answer like an unsplit search."""
    vectors = unit(rng, 300)
    plain, sharded = Matcher(DIM), Matcher(DIM, threads=3)
    for matcher in (plain, sharded):
        for i in range(0, 300, 3):
            matcher.add(f"p{i}", vectors[i : i + 3], ids=np.arange(i, i + 3) * 7 + 5)
    queries = np.concatenate([vectors[::17], unit(rng, 20)])
    expected = [plain.identify(q) for q in queries]
    expected_top = [plain.candidates(q, k=4) for q in queries]
    monkeypatch.setattr("faceid_sdk.matching.flat._SHARD_PAIRS", 50)
    monkeypatch.setattr("faceid_sdk.matching.flat._MIN_SHARD", 64)
    assert sharded._shards_for(1) == 3
    assert [sharded.identify(q) for q in queries] == expected
    assert [sharded.candidates(q, k=4) for q in queries] == expected_top
    assert sharded.identify_batch(queries[:5]) == expected[:5]


# -- query validation ---------------------------------------------------------------------


def test_query_validation(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Queries with a wrong shape, NaN, zero or unnormalized values are refused with a code."""
    matcher, vectors = gallery
    cases = {
        "dimension": np.ones(DIM + 1, np.float32) / math.sqrt(DIM + 1),
        "non_finite": np.full(DIM, np.nan, np.float32),
        "norm": np.zeros(DIM, np.float32),
    }
    for code, query in cases.items():
        for call in (matcher.identify, matcher.identify_batch, matcher.candidates):
            with pytest.raises(InvalidFeatureError) as info:
                call(query)
            assert info.value.code == code
    with pytest.raises(InvalidFeatureError, match="norm"):
        matcher.identify(vectors[0] * 3)
    with pytest.raises(InvalidFeatureError, match="identify_batch"):
        matcher.identify(vectors[:2])
    with pytest.raises(InvalidFeatureError, match="k must be"):
        matcher.candidates(vectors[0], k=0)


def test_float64_and_strided_queries_are_coerced(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Float64 and non-contiguous queries are converted before FAISS sees them."""
    matcher, vectors = gallery
    strided = np.asfortranarray(vectors.astype(np.float64))
    assert [r.identity for r in matcher.identify_batch(strided)][:3] == ["alice"] * 3


# -- add ----------------------------------------------------------------------------------


def test_add_assigns_fresh_ids_and_accepts_explicit_ones(rng: np.random.Generator) -> None:
    """Fresh ids never collide with explicit ones, even after removals."""
    matcher = Matcher(DIM)
    assert matcher.add("alice", unit(rng, 2)).tolist() == [0, 1]
    assert matcher.add("bob", unit(rng, 2), ids=np.array([10, 11], np.uint32)).tolist() == [10, 11]
    matcher.remove("bob")
    assert matcher.add("carol", unit(rng, 1)).tolist() == [12]
    assert matcher.add("alice", unit(rng, 1)).tolist() == [13]
    assert matcher.template_ids("alice").tolist() == [0, 1, 13]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([5, 5], "unique"),
        ([-1, 4], ">= 0"),
        ([1], "one id per vector"),
        ([1.0, 2.0], "integers"),
        ([True, False], "integers"),
        ([0, 7], "already"),
    ],
)
def test_bad_ids_refused_and_nothing_added(rng, ids: list[object], message: str) -> None:
    """Duplicate, negative, miscounted, non-integer or taken ids are refused atomically."""
    matcher = Matcher(DIM)
    matcher.add("alice", unit(rng, 1), ids=[0])
    with pytest.raises(InvalidFeatureError, match=message) as info:
        matcher.add("bob", unit(rng, 2), ids=ids)  # type: ignore[arg-type]
    assert info.value.code == "template_id"
    assert len(matcher) == 1 and matcher.identities == ("alice",)
    assert matcher.add("bob", unit(rng, 2)).tolist() == [1, 2]


def test_add_refuses_bad_vectors_atomically(rng: np.random.Generator) -> None:
    """One bad row (zero vector, NaN, unnormalized) means none of the rows is added."""
    matcher = Matcher(DIM)
    for bad in (np.zeros(DIM), np.full(DIM, np.inf), np.ones(DIM)):
        rows = unit(rng, 3)
        rows[1] = bad
        with pytest.raises(InvalidFeatureError):
            matcher.add("alice", rows)
    with pytest.raises(InvalidFeatureError, match="at least one"):
        matcher.add("alice", np.zeros((0, DIM), np.float32))
    with pytest.raises(InvalidIdentityError):
        matcher.add(" alice", unit(rng, 1))
    assert len(matcher) == 0 and "alice" not in matcher


def test_identity_names_are_normalized(rng: np.random.Generator) -> None:
    """'José' in composed and decomposed form is one identity."""
    matcher = Matcher(DIM)
    matcher.add("Jos\u00e9", unit(rng, 1))
    matcher.add("Jose\u0301", unit(rng, 1))
    assert matcher.identities == ("Jos\u00e9",)
    assert "Jose\u0301" in matcher and matcher.template_count("Jose\u0301") == 2


# -- remove -------------------------------------------------------------------------------


def test_remove_unknown_identity(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Removing an identity that is not enrolled raises UnknownIdentityError, a KeyError."""
    matcher, _ = gallery
    with pytest.raises(UnknownIdentityError, match="not enrolled") as info:
        matcher.remove("dave")
    assert isinstance(info.value, KeyError) and isinstance(info.value, FaceIDError)
    assert len(matcher) == 6


def test_remove_then_identify(gallery: tuple[Matcher, np.ndarray]) -> None:
    """A removed identity is never answered again and its count is returned."""
    matcher, vectors = gallery
    assert matcher.remove("alice") == 3
    assert all(r.identity != "alice" for r in matcher.identify_batch(vectors))
    assert matcher.identify(vectors[3]).identity == "bob"


def test_remove_templates(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Single templates go by id; unknown ids are skipped; an emptied identity disappears."""
    matcher, vectors = gallery
    carol_id = int(matcher.template_ids("carol")[0])
    alice_first = int(matcher.template_ids("alice")[0])
    assert matcher.remove_templates([alice_first, carol_id, 999, carol_id]) == 2
    assert "carol" not in matcher and matcher.template_count("alice") == 2
    assert matcher.identify(vectors[0]).template_id != alice_first
    assert matcher.remove_templates([]) == 0


# -- verify and candidates ----------------------------------------------------------------


def test_verify_checks_only_that_identity(gallery: tuple[Matcher, np.ndarray]) -> None:
    """verify measures to the claimed identity's nearest template, even if others are nearer."""
    matcher, vectors = gallery
    own = matcher.verify(vectors[4], "bob")
    assert own.identity == "bob" and own.accepted and own.distance == pytest.approx(0, abs=1e-3)
    assert own.template_id == int(matcher.template_ids("bob")[1])
    claim = matcher.verify(vectors[0], "bob")
    expected = np.linalg.norm(vectors[3:5] - vectors[0], axis=1).min()
    assert claim.identity == "bob" and claim.distance == pytest.approx(expected, abs=1e-5)
    assert claim.accepted == (claim.distance < matcher.threshold)


def test_verify_unknown_identity(gallery: tuple[Matcher, np.ndarray]) -> None:
    """Verifying against an identity that is not enrolled raises UnknownIdentityError."""
    matcher, vectors = gallery
    with pytest.raises(UnknownIdentityError):
        matcher.verify(vectors[0], "dave")


def test_candidates_are_distinct_and_sorted(rng: np.random.Generator) -> None:
    """Top-k lists k distinct identities, nearest first, each at its nearest template."""
    anchor = unit(rng, 1)[0]
    matcher = Matcher(DIM)
    matcher.add("alice", np.stack([at_distance(anchor, 0.1 + 0.01 * i, rng) for i in range(12)]))
    matcher.add("bob", at_distance(anchor, 0.6, rng))
    matcher.add("carol", at_distance(anchor, 0.5, rng))
    matcher.add("dave", at_distance(anchor, 0.7, rng))
    found = matcher.candidates(anchor, k=3)
    assert [c.identity for c in found] == ["alice", "carol", "bob"]
    assert [c.distance for c in found] == pytest.approx([0.1, 0.5, 0.6], abs=1e-5)
    assert all(isinstance(c, Candidate) for c in found)
    assert repr(found[1]) == "<Candidate 'carol' d=0.500>"
    assert len(matcher.candidates(anchor, k=10)) == 4


# -- property: equal to a NumPy brute-force reference -------------------------------------

PROPERTY_DIM = 4


@st.composite
def galleries(draw: st.DrawFn) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """Random galleries (maybe empty) with repeated rows, so ties across identities occur."""
    seed = draw(st.integers(0, 2**32 - 1))
    generator = np.random.default_rng(seed)
    pool = unit(generator, draw(st.integers(1, 6)), PROPERTY_DIM)
    n = draw(st.integers(0, 12))
    rows = pool[generator.integers(0, len(pool), n)] if n else pool[:0]
    names = [f"id{draw(st.integers(0, 4))}" for _ in range(n)]
    queries = np.concatenate([pool[:2], unit(generator, 3, PROPERTY_DIM)])
    threshold = draw(st.sampled_from([0.5, 0.9, 1.3, 2.5]))
    return names, rows, queries, threshold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(galleries(), st.booleans())
def test_matches_numpy_reference(
    case: tuple[list[str], np.ndarray, np.ndarray, float], runner_up: bool
) -> None:
    """identify/identify_batch/verify agree with float64 brute-force argmin + threshold."""
    names, rows, queries, threshold = case
    matcher = Matcher(PROPERTY_DIM, threshold=threshold, runner_up=runner_up)
    for name in sorted(set(names)):
        matcher.add(name, rows[[i for i, n in enumerate(names) if n == name]])
    tol = 1e-5
    batch = matcher.identify_batch(queries)
    # Batch and single searches may break exact ties differently: check both.
    pairs = [(q, r) for q, b in zip(queries, batch, strict=True) for r in (b, matcher.identify(q))]
    for query, result in pairs:
        if not names:
            assert (result.identity, result.distance, result.accepted) == (None, math.inf, False)
            continue
        dist = np.linalg.norm(rows.astype(np.float64) - query.astype(np.float64), axis=1)
        best = dist.min()
        tied = {names[i] for i in np.flatnonzero(dist <= best + tol)}
        assert result.identity in tied
        assert result.distance == pytest.approx(best, abs=tol)
        if abs(best - threshold) > tol:
            assert result.accepted == (best < threshold)
        nearest = {}
        for name in set(names):
            nearest[name] = dist[[i for i, n in enumerate(names) if n == name]].min()
            assert matcher.verify(query, name).distance == pytest.approx(nearest[name], abs=tol)
        if runner_up:
            others = [d for n, d in nearest.items() if n != result.identity]
            expected = min(others, default=math.inf)
            assert result.runner_up_distance == pytest.approx(expected, abs=tol)


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_searches_during_mutations(rng: np.random.Generator) -> None:
    """Searches racing adds and removes never crash and only name identities that were enrolled."""
    matcher = Matcher(DIM, runner_up=True)
    anchor = unit(rng, 1)[0]
    matcher.add("anchor", anchor)
    crowd = unit(rng, 70)  # >= 64 templates: its runner-ups come from selector searches
    matcher.add("crowd", crowd)
    churn = unit(rng, 200)
    ever = {"anchor", "crowd"} | {f"p{i}" for i in range(len(churn))}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i, vector in enumerate(churn):
                matcher.add(f"p{i}", np.stack([vector, churn[(i + 1) % len(churn)]]))
                if i >= 3:
                    matcher.remove(f"p{i - 3}")
                if i % 7 == 0:
                    matcher.remove_templates(matcher.template_ids(f"p{i}")[:1])
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                assert matcher.identify(anchor).identity == "anchor"
                for result in matcher.identify_batch(churn[:64]):
                    assert result.identity in ever
                for candidate in matcher.candidates(churn[5], k=3):
                    assert candidate.identity in ever
                assert {r.identity for r in matcher.identify_batch(crowd[:8])} == {"crowd"}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert matcher.identities == ("anchor", "crowd", "p197", "p198", "p199")


def test_thread_count_change_does_not_leak(rng: np.random.Generator) -> None:
    """Per-call OpenMP thread counts are restored and never visible to other threads."""
    matcher = Matcher(DIM)
    matcher.add("alice", unit(rng, 50))
    before = faiss.omp_get_max_threads()
    seen: list[int] = []

    def other() -> None:
        seen.append(faiss.omp_get_max_threads())

    matcher.identify(unit(rng, 1)[0])
    matcher.identify_batch(unit(rng, 300))
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert faiss.omp_get_max_threads() == before and seen == [before]


# -- save / load --------------------------------------------------------------------------


def test_save_load_round_trip(gallery: tuple[Matcher, np.ndarray], tmp_path: Path, rng) -> None:
    """A loaded matcher answers exactly like the saved one and keeps ids and metadata."""
    matcher, vectors = gallery
    matcher.remove_templates(matcher.template_ids("alice")[:1])
    path = tmp_path / "gallery.fidx"
    matcher.save(path, metadata={"model_id": "m-1", "sequence": 42})
    saved_digest = matcher.content_digest()
    loaded = Matcher.load(path, expect={"model_id": "m-1", "sequence": 42}, dim=DIM)
    assert loaded.content_digest() == saved_digest
    queries = np.concatenate([vectors, unit(rng, 20)])
    assert loaded.identify_batch(queries) == matcher.identify_batch(queries)
    for name in matcher.identities:
        assert loaded.template_ids(name).tolist() == matcher.template_ids(name).tolist()
    assert loaded.add("dave", unit(rng, 1)).tolist() == matcher.add("dave", unit(rng, 1)).tolist()
    manifest = read_manifest(path)
    assert manifest.metadata == {"model_id": "m-1", "sequence": 42}
    assert (manifest.dim, manifest.count) == (DIM, 5)
    assert manifest.content_digest == saved_digest != matcher.content_digest()
    assert repr(manifest).startswith("<IndexManifest v2 dim=16 templates=5 identities=3")
    # Decision settings are not index data: the loader decides how it decides.
    assert Matcher.load(path).threshold == DEFAULT_THRESHOLD
    assert Matcher.load(path, threshold=0.3).threshold == 0.3
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.fidx"]


def test_save_load_empty_and_policy(tmp_path: Path) -> None:
    """An empty gallery round-trips; the policy is the loader's, never the file's."""
    path = tmp_path / "empty.fidx"
    Matcher(DIM, threshold=0.8, reject_ambiguous=True).save(path)
    assert "threshold" not in path.read_bytes().decode("latin-1")
    loaded = Matcher.load(path)
    assert (len(loaded), loaded.threshold, loaded.reject_ambiguous) == (0, DEFAULT_THRESHOLD, False)
    policy = DecisionPolicy(0.8, reject_ambiguous=True)
    assert Matcher.load(path, policy=policy).policy == policy


def test_save_refuses_bad_metadata(gallery: tuple[Matcher, np.ndarray], tmp_path: Path) -> None:
    """Metadata values other than str or int are refused before anything is written."""
    matcher, _ = gallery
    with pytest.raises(InvalidFeatureError, match="metadata"):
        matcher.save(tmp_path / "x", metadata={"sequence": 1.5})  # type: ignore[dict-item]
    assert not list(tmp_path.iterdir())


def test_load_refuses_unexpected_metadata(gallery, tmp_path: Path) -> None:
    """A stale or foreign index (other sequence, model, dim) is refused, naming the key."""
    matcher, _ = gallery
    path = tmp_path / "g.fidx"
    matcher.save(path, metadata={"model_id": "m-1", "sequence": 42})
    for expect, fragment in [
        ({"sequence": 43}, "'sequence' is 42, expected 43"),
        ({"sequence": "42"}, "'sequence' is 42, expected '42'"),
        ({"model_id": "m-2"}, "'model_id'"),
        ({"owner": "x"}, "no metadata 'owner'"),
    ]:
        with pytest.raises(IndexFileError, match=fragment) as info:
            Matcher.load(path, expect=expect)
        assert "rebuild-index" in str(info.value)
    with pytest.raises(IndexFileError, match="dim 16, expected 128"):
        Matcher.load(path, dim=128)


def _rewrite(path: Path, edit_manifest=None, payload: bytes | None = None) -> None:
    """Rewrite an index file with an edited manifest or FAISS section and valid checksums."""
    data = path.read_bytes()
    magic, version, length, _ = struct.unpack_from("<8sII32s", data)
    manifest = json.loads(data[48 : 48 + length])
    body = data[48 + length :] if payload is None else payload
    manifest["faiss_size"] = len(body)
    manifest["faiss_sha256"] = hashlib.sha256(body).hexdigest()
    if edit_manifest:
        edit_manifest(manifest)
    header = json.dumps(manifest).encode()
    pre = struct.pack("<8sII32s", magic, version, len(header), hashlib.sha256(header).digest())
    path.write_bytes(pre + header + body)


def test_corrupted_files_are_refused(gallery: tuple[Matcher, np.ndarray], tmp_path: Path) -> None:
    """A flipped bit anywhere, a truncation or padding is refused with IndexFileError."""
    matcher, _ = gallery
    path = tmp_path / "g.fidx"
    matcher.save(path)
    good = path.read_bytes()
    bad = tmp_path / "bad.fidx"
    positions = [*range(0, 48, 5), 60, len(good) // 2, len(good) - 30, len(good) - 1]
    for pos in positions:
        flipped = bytearray(good)
        flipped[pos] ^= 0x10
        bad.write_bytes(bytes(flipped))
        with pytest.raises(IndexFileError):
            Matcher.load(bad)
    for cut in (0, 10, 47, 48, 100, len(good) - 1):
        bad.write_bytes(good[:cut])
        with pytest.raises(IndexFileError, match="rebuild-index"):
            Matcher.load(bad)
        with pytest.raises(IndexFileError):
            read_manifest(bad)
    bad.write_bytes(good + b"\0")
    with pytest.raises(IndexFileError, match="truncated or padded"):
        Matcher.load(bad)
    with pytest.raises(IndexFileError):
        Matcher.load(tmp_path / "missing.fidx")


def test_foreign_files_are_refused(gallery: tuple[Matcher, np.ndarray], tmp_path: Path) -> None:
    """A raw FAISS file, random bytes or a newer format version never reach FAISS's loader."""
    matcher, _ = gallery
    path = tmp_path / "foreign"
    raw = faiss.IndexIDMap2(faiss.IndexFlatL2(DIM))
    raw.add_with_ids(np.eye(DIM, dtype=np.float32), np.arange(DIM))
    faiss.write_index(raw, str(path))
    with pytest.raises(IndexFileError, match="magic"):
        Matcher.load(path)
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(IndexFileError):
        Matcher.load(path)
    matcher.save(path)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 3)
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="format version 3") as info:
        Matcher.load(path)
    assert info.value.reason == "format"


def test_checksummed_but_inconsistent_files_are_refused(gallery, tmp_path: Path) -> None:
    """Files with valid checksums but an alien FAISS section or manifest are still refused."""
    matcher, _ = gallery
    path = tmp_path / "g.fidx"
    alien = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    alien.add_with_ids(np.eye(DIM, dtype=np.float32)[:6], np.arange(6))
    edits = [
        (None, faiss.serialize_index(alien).tobytes(), "metric"),
        (None, faiss.serialize_index(faiss.IndexFlatL2(DIM)).tobytes(), "IDMap2"),
        (lambda m: m.update(count=7), None, "announces 7"),
        (lambda m: m["identities"].update(alice=[0, 1, 3]), None, "twice"),
        (lambda m: m["identities"].update(alice=[0, 1, 50]), None, "below next_id"),
        (lambda m: m["identities"].update(alice=[0, 1, 4], bob=[3, 4]), None, "twice"),
        (lambda m: m.update(dim=8), None, "6 x 8"),
        (lambda m: m["identities"].update({" x": m["identities"].pop("carol")}), None, "name"),
        (lambda m: m.update(metadata={"k": 1.5}), None, "metadata"),
    ]
    for edit, payload, fragment in edits:
        matcher.save(path)
        _rewrite(path, edit, payload)
        with pytest.raises(IndexFileError, match=fragment):
            Matcher.load(path)
    matcher.save(path)
    ids_edit = bytearray(path.read_bytes())
    ids_edit[-8:] = struct.pack("<q", 77)  # last id of the FAISS id map
    _rewrite(path, payload=bytes(ids_edit[48 + struct.unpack_from("<I", ids_edit, 12)[0] :]))
    with pytest.raises(IndexFileError, match="template ids"):
        Matcher.load(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, 3.0])
def test_checksummed_file_with_a_bad_template_is_refused(gallery, tmp_path: Path, value) -> None:
    """A NaN, infinite or off-norm template in an otherwise valid file is refused.

    Found by fuzz/fuzz_index.py: FAISS loaded a NaN template, and identify then answered
    no one at all on a non-empty gallery.
    """
    matcher, _ = gallery
    path = tmp_path / "g.fidx"
    matcher.save(path)
    data = path.read_bytes()
    start = 48 + struct.unpack_from("<I", data, 12)[0]
    payload = bytearray(data[start:])
    first_float = 2 * (4 + 33) + 8
    template = np.frombuffer(payload, "<f4", count=DIM, offset=first_float).copy()
    template[1] = value if value != 3.0 else template[1] * 3.0 + 1.0
    if value == 0.0:
        template[:] = 0.0
    payload[first_float : first_float + 4 * DIM] = template.tobytes()
    _rewrite(path, payload=bytes(payload))
    with pytest.raises(IndexFileError, match="finite unit-norm"):
        Matcher.load(path)


def test_save_is_atomic_on_failure(gallery, tmp_path: Path, monkeypatch) -> None:
    """A failed save leaves the previous file intact and no temporary file behind."""
    matcher, vectors = gallery
    path = tmp_path / "g.fidx"
    matcher.save(path, metadata={"sequence": 1})
    matcher.remove("alice")

    def broken_replace(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        matcher.save(path, metadata={"sequence": 2})
    monkeypatch.undo()
    assert Matcher.load(path, expect={"sequence": 1}).identify(vectors[0]).identity == "alice"
    assert [p.name for p in tmp_path.iterdir()] == ["g.fidx"]


def test_loaded_matcher_is_mutable_and_saves_again(gallery, tmp_path: Path, rng) -> None:
    """A loaded index supports add, remove and a second save (FAISS ownership is right)."""
    matcher, vectors = gallery
    path = tmp_path / "g.fidx"
    matcher.save(path)
    loaded = Matcher.load(path)
    loaded.remove("bob")
    loaded.add("erin", unit(rng, 2))
    loaded.save(path)
    again = Matcher.load(path)
    assert again.identities == ("alice", "carol", "erin")
    assert again.identify(vectors[5]).identity == "carol"



def test_scan_split_over_cores_finds_the_exact_nearest(monkeypatch) -> None:
    """Large galleries split a few queries' scan across threads: answers stay exact."""
    import faceid_sdk.matching.flat as match_module

    monkeypatch.setattr(match_module, "cpu_count", lambda: 3)
    rng = np.random.default_rng(21)
    dim = 8
    rows = rng.standard_normal((110_000, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    matcher = Matcher(dim)
    for start in range(0, len(rows), 10_000):
        matcher.add(f"block{start}", rows[start : start + 10_000])
    assert matcher._shards_for(1) == 3
    queries = rng.standard_normal((5, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = rows.astype(np.float64)
    expected = [int(np.argmin(np.linalg.norm(exact - q, axis=1))) for q in queries]
    assert [r.template_id for r in matcher.identify_batch(queries)] == expected
    assert [matcher.identify(q).template_id for q in queries] == expected
