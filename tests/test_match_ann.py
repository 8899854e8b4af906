"""Tests of the approximate matchers (HNSW, IVF): same decisions as flat, removal, files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk.errors import InvalidFeatureError
from faceid_sdk.matching import Matcher
from faceid_sdk.matching.approx import ApproxMatcher
from faceid_sdk.testing import near, unit_vectors

DIM = 32
N = 3000
KINDS = ["hnsw", "ivf"]


def noisy(rows: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Unit vectors near *rows* (Gaussian noise, renormalized)."""
    rng = np.random.default_rng(seed)
    out = rows + rng.standard_normal(rows.shape).astype(np.float32) * sigma
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def build(kind: str, gallery: np.ndarray, **options: object) -> tuple[Matcher, ApproxMatcher]:
    flat = Matcher(DIM)
    approx = ApproxMatcher(DIM, index=kind, exact_below=0, nlist=16, **options)  # type: ignore[arg-type]
    for i, row in enumerate(gallery):
        flat.add(f"p{i}", row)
        approx.add(f"p{i}", row)
    return flat, approx


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return unit_vectors(N, DIM, seed=1)


@pytest.fixture(scope="module", params=KINDS)
def pair(request: pytest.FixtureRequest, gallery: np.ndarray) -> tuple[Matcher, ApproxMatcher]:
    return build(request.param, gallery)


def test_same_decisions_as_flat(pair: tuple[Matcher, ApproxMatcher], gallery: np.ndarray) -> None:
    """On an easy gallery (queries near their template) every decision equals flat's."""
    flat, approx = pair
    assert approx.approximate
    queries = np.concatenate([noisy(gallery[:300], 0.02, seed=2), unit_vectors(100, DIM, seed=3)])
    expected = flat.identify_batch(queries)
    got = approx.identify_batch(queries)
    single = [approx.identify(q) for q in queries[:50]]
    assert [(g.identity, g.accepted) for g in got] == [(e.identity, e.accepted) for e in expected]
    assert got[:50] == single
    for g, e in zip(got, expected, strict=True):
        if g.identity == e.identity:
            assert g.distance == pytest.approx(e.distance, abs=1e-9)


def test_recall_at_1(pair: tuple[Matcher, ApproxMatcher], gallery: np.ndarray) -> None:
    """Recall@1 against flat on noisy copies is at least 0.99 with default settings."""
    flat, approx = pair
    queries = noisy(gallery[::3], 0.3, seed=4)
    truth = [r.template_id for r in flat.identify_batch(queries)]
    found = [r.template_id for r in approx.identify_batch(queries)]
    recall = np.mean([t == f for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.99, recall


def test_distances_are_exact_euclidean(
    pair: tuple[Matcher, ApproxMatcher], gallery: np.ndarray
) -> None:
    """Reported distances are Euclidean to the reported template, never squared."""
    _, approx = pair
    query = near(gallery[7], 0.3, seed=5)
    result = approx.identify(query)
    assert result.identity == "p7" and result.accepted
    assert result.distance == pytest.approx(0.3, abs=1e-5)
    # Past the (calibrated, default) threshold another random template may be nearer than
    # p7: compare with the exact nearest by NumPy rather than assume which one it is.
    beyond = approx.threshold + 0.1
    query = near(gallery[7], beyond, seed=6)
    far = approx.identify(query)
    exact = np.linalg.norm(gallery.astype(np.float64) - query.astype(np.float64), axis=1)
    nearest = int(np.argmin(exact))
    assert far.identity == f"p{nearest}"
    assert far.distance == pytest.approx(exact[nearest], abs=1e-9)
    assert far.distance <= beyond + 1e-6
    assert far.accepted is bool(exact[nearest] < approx.threshold)


def test_candidates_and_verify(pair: tuple[Matcher, ApproxMatcher], gallery: np.ndarray) -> None:
    """candidates() and verify() agree with flat."""
    flat, approx = pair
    query = near(gallery[11], 0.2, seed=7)
    assert approx.candidates(query, 3)[0].identity == "p11"
    assert approx.verify(query, "p11") == flat.verify(query, "p11")


@pytest.mark.parametrize("kind", KINDS)
def test_removed_templates_never_answer(kind: str, gallery: np.ndarray) -> None:
    """After remove(), a query at the removed template gets someone else or nobody."""
    # An explicit threshold: the shipped model's calibrated default is no property of this
    # random gallery, whose nearest other template is ~0.9 away.
    _, approx = build(kind, gallery[:500], threshold=0.5)
    query = near(gallery[3], 0.05, seed=8)
    assert approx.identify(query).identity == "p3"
    approx.remove("p3")
    result = approx.identify(query)
    assert result.identity != "p3" and not result.accepted
    if kind == "hnsw":
        assert approx.tombstones == 1
    # Re-adding the same identity with a fresh template works.
    approx.add("p3", gallery[3])
    assert approx.identify(query).identity == "p3"


def test_hnsw_rebuilds_after_many_removals(gallery: np.ndarray) -> None:
    """Tombstones above max_tombstones trigger a rebuild of the graph."""
    _, approx = build("hnsw", gallery[:200], max_tombstones=0.1)
    for i in range(25):
        approx.remove(f"p{i}")
    assert approx.tombstones < 25
    assert approx.identify(near(gallery[100], 0.1, seed=9)).identity == "p100"


@pytest.mark.parametrize("kind", KINDS)
def test_exact_below_threshold_size(kind: str, gallery: np.ndarray) -> None:
    """Small galleries use the exact scan and say so."""
    approx = ApproxMatcher(DIM, index=kind)  # type: ignore[arg-type]
    approx.add("a", gallery[0])
    assert not approx.approximate
    assert approx.identify(gallery[0]).identity == "a"
    empty = ApproxMatcher(DIM, index=kind)  # type: ignore[arg-type]
    assert empty.identify(gallery[0]).distance == math.inf


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, gallery: np.ndarray, tmp_path: Path) -> None:
    """Index files are the flat format; loading rebuilds the approximate index."""
    flat, approx = build(kind, gallery[:800])
    path = tmp_path / "g.idx"
    approx.save(path)
    loaded = ApproxMatcher.load(path, index=kind, exact_below=0, nlist=8)
    assert loaded.approximate and len(loaded) == 800
    query = near(gallery[5], 0.1, seed=10)
    assert loaded.identify(query) == approx.identify(query)
    assert Matcher.load(path).identify(query) == flat.identify(query)


def test_ef_search_and_nprobe_are_tunable(gallery: np.ndarray) -> None:
    """efSearch and nprobe can be changed at run time; bad options are refused."""
    approx = ApproxMatcher(DIM, index="hnsw", rerank=8)
    approx.ef_search = 4
    assert approx.ef_search == 8  # never below rerank
    approx.nprobe = 3
    assert approx.nprobe == 3
    with pytest.raises(InvalidFeatureError, match="index must be 'hnsw' or 'ivf'"):
        ApproxMatcher(DIM, index="flat")  # type: ignore[arg-type]
    with pytest.raises(InvalidFeatureError, match="ef_search must be an int >= 1"):
        ApproxMatcher(DIM, ef_search=0)


def test_runner_up_semantics(gallery: np.ndarray) -> None:
    """reject_ambiguous refuses a query between two identities, as flat does."""
    approx = ApproxMatcher(DIM, index="hnsw", exact_below=0, reject_ambiguous=True)
    flat = Matcher(DIM, reject_ambiguous=True)
    for m in (approx, flat):
        for i, row in enumerate(gallery[:300]):
            m.add(f"p{i}", row)
        m.add("twin", near(gallery[0], 0.1, seed=11))
    query = near(gallery[0], 0.05, seed=12)
    got, expected = approx.identify(query), flat.identify(query)
    assert got.ambiguous and not got.accepted
    assert (got.identity, got.runner_up) == (expected.identity, expected.runner_up)
