"""One conformance suite, run against every gallery backend (as httpx does for transports).

Each backend gets the same gallery under the same template ids and must give the answers of
a NumPy reference of the rule: the nearest template speaks for its identity, its exact
Euclidean distance is reported, and the :class:`DecisionPolicy` decides. The approximate
backends are forced onto their approximate path (``exact_below=0``), on galleries small
enough for their candidates to contain the true nearest templates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import DecisionPolicy, Gallery, UnknownIdentityError
from faceid_sdk.errors import InvalidFeatureError
from faceid_sdk.matching import ApproxMatcher, Matcher
from faceid_sdk.testing import near, unit_vectors

DIM = 16
THRESHOLD = 0.8
PEOPLE = 12
PER_PERSON = 3

Factory = Callable[[Path, DecisionPolicy], Gallery]


def _flat(tmp: Path, policy: DecisionPolicy) -> Gallery:
    return Matcher(DIM, policy=policy)


def _hnsw(tmp: Path, policy: DecisionPolicy) -> Gallery:
    return ApproxMatcher(DIM, index="hnsw", exact_below=0, rerank=64, ef_search=128,
                         policy=policy)


def _ivf(tmp: Path, policy: DecisionPolicy) -> Gallery:
    return ApproxMatcher(DIM, index="ivf", exact_below=0, nlist=1, nprobe=1, rerank=64,
                         policy=policy)


def _milvus(tmp: Path, policy: DecisionPolicy) -> Gallery:
    pytest.importorskip("milvus_lite", reason="needs faceid-sdk[milvus]")
    from faceid_adapters.milvus import MilvusMatcher

    gallery: Gallery = MilvusMatcher(str(tmp / "milvus.db"), DIM, policy=policy)
    return gallery


BACKENDS = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf, "milvus": _milvus}


@pytest.fixture(params=sorted(BACKENDS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[Gallery] = []
    counter = iter(range(1000))

    def factory(tmp: Path, policy: DecisionPolicy) -> Gallery:
        folder = tmp_path / f"g{next(counter)}"
        folder.mkdir()
        gallery = BACKENDS[request.param](folder, policy)
        made.append(gallery)
        return gallery

    yield factory
    for gallery in made:
        close = getattr(gallery, "close", None)
        if callable(close):
            close()


def _templates() -> np.ndarray:
    templates = unit_vectors(PEOPLE * PER_PERSON, DIM, seed=3)
    # p1 looks like p0: a vector between them is under the threshold of both (a "hub").
    templates[PER_PERSON] = near(templates[0], 0.6, seed=1)
    return templates


def _filled(make: Factory, tmp_path: Path, policy: DecisionPolicy) -> Gallery:
    gallery = make(tmp_path, policy)
    templates = _templates()
    for p in range(PEOPLE):
        rows = np.arange(p * PER_PERSON, (p + 1) * PER_PERSON)
        gallery.add(f"p{p}", templates[rows], ids=rows + 100)
    return gallery


def _reference(query: np.ndarray, exclude: str | None = None) -> tuple[str, float, int]:
    """The nearest (identity, exact distance, id) by brute force in float64."""
    templates = _templates().astype(np.float64)
    distances = np.linalg.norm(templates - query.astype(np.float64), axis=1)
    best = None
    for row in np.argsort(distances, kind="stable"):
        name = f"p{row // PER_PERSON}"
        if name != exclude:
            best = (name, float(distances[row]), int(row) + 100)
            break
    assert best is not None
    return best


def _queries() -> np.ndarray:
    templates = _templates()
    close = [near(templates[i], 0.3, seed=i) for i in range(0, len(templates), 2)]
    return np.concatenate([np.stack(close), unit_vectors(10, DIM, seed=11)])


def _hub() -> np.ndarray:
    """A unit vector halfway between p0's and p1's first templates: near both."""
    templates = _templates()
    mid = templates[0] + templates[PER_PERSON]
    return (mid / np.linalg.norm(mid)).astype(np.float32)


def test_is_a_gallery(make: Factory, tmp_path: Path) -> None:
    gallery = make(tmp_path, DecisionPolicy(THRESHOLD))
    assert isinstance(gallery, Gallery)
    assert gallery.dim == DIM and len(gallery) == 0 and gallery.identities == ()
    assert gallery.policy == DecisionPolicy(THRESHOLD)


def test_empty_gallery_answers_empty(make: Factory, tmp_path: Path) -> None:
    result = make(tmp_path, DecisionPolicy(THRESHOLD)).identify(unit_vectors(1, DIM)[0])
    assert (result.identity, result.accepted, result.reason) == (None, False, "empty_gallery")
    assert math.isinf(result.distance)


def test_identify_is_the_reference_rule(make: Factory, tmp_path: Path) -> None:
    """argmin over the gallery, exact distance, accepted strictly under the threshold."""
    gallery = _filled(make, tmp_path, DecisionPolicy(THRESHOLD))
    queries = _queries()
    batch = gallery.identify_batch(queries)
    for query, answer in zip(queries, batch, strict=True):
        name, distance, template_id = _reference(query)
        assert (answer.identity, answer.template_id) == (name, template_id)
        assert answer.distance == pytest.approx(distance, abs=1e-9)
        assert answer.accepted == (distance < THRESHOLD)
        assert answer.reason == ("match" if distance < THRESHOLD else "no_match")
        assert gallery.identify(query) == answer


def test_runner_up_and_ambiguity(make: Factory, tmp_path: Path) -> None:
    """The runner-up is the nearest other identity; a hub is refused as ambiguous."""
    gallery = _filled(make, tmp_path, DecisionPolicy(THRESHOLD, reject_ambiguous=True))
    for query in _queries():
        answer = gallery.identify(query)
        best = _reference(query)
        runner = _reference(query, exclude=best[0])
        assert answer.runner_up == runner[0]
        assert answer.runner_up_distance == pytest.approx(runner[1], abs=1e-9)
        ambiguous = runner[1] < THRESHOLD
        assert answer.ambiguous == ambiguous
        assert answer.accepted == (best[1] < THRESHOLD and not ambiguous)
    hub = gallery.identify(_hub())
    assert hub.identity in ("p0", "p1") and hub.ambiguous
    assert (hub.accepted, hub.reason) == (False, "ambiguous")


def test_verify_follows_the_policy(make: Factory, tmp_path: Path) -> None:
    """Verify measures the claimed identity only, and refuses a hub under reject_ambiguous."""
    plain = _filled(make, tmp_path, DecisionPolicy(THRESHOLD))
    strict = _filled(make, tmp_path, DecisionPolicy(THRESHOLD, reject_ambiguous=True))
    hub = _hub()
    for claimed in ("p0", "p1"):
        loose = plain.verify(hub, claimed)
        assert (loose.identity, loose.accepted, loose.reason) == (claimed, True, "match")
        refused = strict.verify(hub, claimed)
        assert (refused.accepted, refused.reason, refused.ambiguous) == (False, "ambiguous", True)
        assert refused.distance == pytest.approx(loose.distance, abs=1e-12)
    genuine = near(_templates()[2 * PER_PERSON], 0.2, seed=5)
    for gallery in (plain, strict):
        answer = gallery.verify(genuine, "p2")
        assert (answer.accepted, answer.reason) == (True, "match")
        assert answer.distance == pytest.approx(_reference(genuine)[1], abs=1e-9)
        far = gallery.verify(genuine, "p3")
        assert (far.accepted, far.reason) == (False, "no_match")
    with pytest.raises(UnknownIdentityError):
        plain.verify(genuine, "nobody")


def test_candidates_are_distinct_and_nearest_first(make: Factory, tmp_path: Path) -> None:
    gallery = _filled(make, tmp_path, DecisionPolicy(THRESHOLD))
    query = _queries()[0]
    found = gallery.candidates(query, k=4)
    assert len(found) == 4 and len({c.identity for c in found}) == 4
    assert [c.distance for c in found] == sorted(c.distance for c in found)
    assert (found[0].identity, found[0].template_id) == _reference(query)[::2]


def test_mutations(make: Factory, tmp_path: Path) -> None:
    """Ids, counts, remove and remove_templates agree; a bad add changes nothing."""
    gallery = _filled(make, tmp_path, DecisionPolicy(THRESHOLD))
    assert len(gallery) == PEOPLE * PER_PERSON
    assert gallery.identities == tuple(sorted(f"p{p}" for p in range(PEOPLE)))
    assert gallery.all_template_ids().tolist() == list(range(100, 100 + PEOPLE * PER_PERSON))
    assert sorted(gallery.template_ids("p1").tolist()) == [103, 104, 105]
    assert gallery.template_count("p1") == 3 and "p1" in gallery and "zz" not in gallery
    with pytest.raises(InvalidFeatureError):
        gallery.add("new", unit_vectors(2, DIM, seed=8), ids=[100, 999])  # 100 is taken
    with pytest.raises(InvalidFeatureError):
        gallery.add("new", np.zeros(DIM, dtype=np.float32))
    assert "new" not in gallery and len(gallery) == PEOPLE * PER_PERSON
    assert gallery.remove("p1") == 3 and "p1" not in gallery
    assert gallery.remove_templates([100, 101, 104, 12345]) == 2  # 104 went with p1
    assert gallery.template_count("p0") == 1
    assert gallery.remove_templates([102]) == 1 and "p0" not in gallery
    with pytest.raises(UnknownIdentityError):
        gallery.remove("p1")
    answer = gallery.identify(_templates()[0])
    assert answer.identity not in ("p0", "p1")
