"""The Milvus backend on milvus-lite: same decisions as the FAISS Matcher, durable, safe names."""

from __future__ import annotations

import builtins
import importlib
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import Matcher
from faceid_sdk.errors import (
    BackendUnavailableError,
    IndexFileError,
    InvalidFeatureError,
    UnknownIdentityError,
)
from faceid_sdk.testing import near, unit_vectors

pytest.importorskip("pymilvus", reason="needs faceid-sdk[milvus]")
pytest.importorskip("milvus_lite", reason="needs faceid-sdk[milvus]")

from faceid_adapters.milvus import MilvusMatcher

DIM = 32


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "faces.db")


def twin(db: str, gallery: np.ndarray, per_identity: int = 3, search_batch: int = 16,
         **options: object):
    """The same gallery in a FAISS Matcher and a MilvusMatcher, with the same template ids."""
    flat = Matcher(DIM, **options)  # type: ignore[arg-type]
    milvus = MilvusMatcher(db, DIM, search_batch=search_batch, **options)  # type: ignore[arg-type]
    for start in range(0, len(gallery), per_identity):
        name = f"p{start // per_identity}"
        ids = np.arange(start, min(start + per_identity, len(gallery)))
        flat.add(name, gallery[ids], ids=ids)
        milvus.add(name, gallery[ids], ids=ids)
    return flat, milvus


def test_same_decisions_and_distances_as_the_faiss_matcher(db: str) -> None:
    """Identify, runner-up, candidates and verify agree with Matcher on every query
    (batches split into requests of 7 queries)."""
    gallery = unit_vectors(600, DIM, seed=1)
    flat, milvus = twin(db, gallery, threshold=0.9, runner_up=True, search_batch=7)
    close = np.stack([near(gallery[i], 0.4, seed=i) for i in range(0, 600, 7)])
    queries = np.concatenate([close, unit_vectors(30, DIM, seed=9)])
    expected = flat.identify_batch(queries)
    got = milvus.identify_batch(queries)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g.identity, g.template_id, g.accepted) == (e.identity, e.template_id, e.accepted)
        assert (g.runner_up, g.ambiguous) == (e.runner_up, e.ambiguous)
        assert g.distance == pytest.approx(e.distance, abs=1e-12)
        assert g.runner_up_distance == pytest.approx(e.runner_up_distance, abs=1e-12)
    assert sum(g.accepted for g in got) > 20 and sum(not g.accepted for g in got) > 20
    assert sum(g.ambiguous for g in got) > 0
    query = queries[3]
    assert milvus.identify(query) == flat.identify(query)
    assert milvus.candidates(query, k=6) == flat.candidates(query, k=6)
    assert milvus.verify(query, "p5") == flat.verify(query, "p5")


def test_default_settings_match_too(db: str) -> None:
    """Without runner-up (one nearest template per query) decisions equal Matcher's."""
    gallery = unit_vectors(200, DIM, seed=2)
    flat, milvus = twin(db, gallery)
    queries = np.stack([near(gallery[i], 0.3, seed=100 + i) for i in range(0, 200, 5)])
    assert milvus.identify_batch(queries) == flat.identify_batch(queries)
    assert milvus.identify_batch(np.empty((0, DIM), np.float32)) == []


def test_empty_gallery_and_unknown_identities(db: str) -> None:
    milvus = MilvusMatcher(db, DIM)
    query = unit_vectors(1, DIM, seed=3)[0]
    result = milvus.identify(query)
    assert result.identity is None and not result.accepted and result.distance == np.inf
    assert milvus.candidates(query) == []
    assert len(milvus) == 0 and milvus.identities == ()
    with pytest.raises(UnknownIdentityError, match="not enrolled"):
        milvus.verify(query, "nobody")
    with pytest.raises(UnknownIdentityError):
        milvus.remove("nobody")


def test_add_remove_and_counts(db: str) -> None:
    milvus = MilvusMatcher(db, DIM)
    vectors = unit_vectors(5, DIM, seed=4)
    ids = milvus.add("ana", vectors[:3])
    assert len(set(ids.tolist())) == 3 and all(i >= 0 for i in ids.tolist())
    milvus.add("bo", vectors[3:], ids=[10, 11])
    assert len(milvus) == 5 and milvus.identities == ("ana", "bo")
    assert milvus.template_count("ana") == 3 and "ana" in milvus and "cy" not in milvus
    assert milvus.template_ids("bo").tolist() == [10, 11]
    with pytest.raises(InvalidFeatureError, match="already") as info:
        milvus.add("cy", vectors[0], ids=[11])
    assert info.value.code == "template_id" and "cy" not in milvus
    assert milvus.remove_templates([11, 999]) == 1
    assert milvus.identify(vectors[4]).template_id == 10
    assert milvus.remove("ana") == 3
    assert milvus.identities == ("bo",) and len(milvus) == 1
    assert milvus.identify(vectors[0]).identity == "bo"


def test_bad_input_is_refused_before_reaching_milvus(db: str) -> None:
    milvus = MilvusMatcher(db, DIM)
    good = unit_vectors(1, DIM, seed=5)
    with pytest.raises(InvalidFeatureError) as info:
        milvus.add("ana", good * 0.5)
    assert info.value.code == "norm"
    with pytest.raises(InvalidFeatureError):
        milvus.add("ana", unit_vectors(1, DIM + 1, seed=5))
    with pytest.raises(InvalidFeatureError):
        milvus.identify(np.full(DIM, np.nan, np.float32))
    with pytest.raises(InvalidFeatureError, match="identify_batch"):
        milvus.identify(unit_vectors(2, DIM, seed=6))
    with pytest.raises(ValueError):
        milvus.add("bad\x00name", good)
    assert len(milvus) == 0


def test_names_cannot_inject_filter_expressions(db: str) -> None:
    """Names made of quotes, backslashes and operators stay names, in every call that filters."""
    milvus = MilvusMatcher(db, DIM)
    vectors = unit_vectors(4, DIM, seed=7)
    tricky = ['o"brien', 'x" or identity != "', "back\\slash\\", "Zoë 🙂 'single'"]
    for name, vector in zip(tricky, vectors, strict=True):
        milvus.add(name, vector)
    milvus.add("victim", unit_vectors(1, DIM, seed=8))
    assert set(milvus.identities) == {*tricky, "victim"}
    for name, vector in zip(tricky, vectors, strict=True):
        assert name in milvus and milvus.template_count(name) == 1
        assert milvus.verify(vector, name).distance == pytest.approx(0.0, abs=1e-6)
    assert milvus.remove('x" or identity != "') == 1
    assert "victim" in milvus and len(milvus) == 4


def test_gallery_survives_reopening(db: str) -> None:
    """Milvus persists the collection: a new matcher on the same file sees every template."""
    vectors = unit_vectors(6, DIM, seed=10)
    with MilvusMatcher(db, DIM) as first:
        first.add("ana", vectors[:4], ids=[1, 2, 3, 4])
        first.remove_templates([2])
    with MilvusMatcher(db, DIM) as again:
        assert again.template_ids("ana").tolist() == [1, 3, 4]
        assert again.identify(vectors[3]).template_id == 4


def test_collection_of_another_dimension_is_refused(db: str) -> None:
    MilvusMatcher(db, DIM).close()
    with pytest.raises(IndexFileError, match="32-d"):
        MilvusMatcher(db, DIM * 2)


def test_approximate_index_reranks_exactly(db: str) -> None:
    """With an HNSW index the reported distance is still the exact Euclidean one."""
    gallery = unit_vectors(300, DIM, seed=11)
    milvus = MilvusMatcher(
        db,
        DIM,
        index_type="HNSW",
        index_params={"M": 16, "efConstruction": 64},
        search_params={"ef": 64},
    )
    milvus.add("crowd", gallery[1:], ids=np.arange(1, 300))
    milvus.add("target", gallery[0], ids=[0])
    query = near(gallery[0], 0.25, seed=12)
    result = milvus.identify(query)
    assert result.identity == "target" and result.template_id == 0
    assert result.distance == pytest.approx(float(np.linalg.norm(query - gallery[0])), abs=1e-6)


def test_missing_pymilvus_says_what_to_install(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pymilvus(name: str, *args: object, **kwargs: object) -> object:
        if name == "pymilvus" or name.startswith("pymilvus."):
            raise ImportError("No module named 'pymilvus'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pymilvus)
    module = importlib.import_module("faceid_adapters.milvus")
    with pytest.raises(BackendUnavailableError, match=r"faceid-sdk\[milvus\]"):
        module.MilvusMatcher(db, DIM)


def test_listing_pages_past_one_result_window(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results larger than Milvus's query window are read page by page, none lost."""
    import faceid_adapters.milvus as backend

    milvus = MilvusMatcher(db, DIM)
    vectors = unit_vectors(12, DIM, seed=13)
    for i, vector in enumerate(vectors):
        milvus.add(f"p{i:02d}", vector, ids=[i])
    milvus.add("many", unit_vectors(7, DIM, seed=14), ids=range(100, 107))
    monkeypatch.setattr(backend, "_MAX_WINDOW", 5)
    assert milvus.identities == tuple(sorted([f"p{i:02d}" for i in range(12)] + ["many"]))
    assert milvus.template_ids("many").tolist() == list(range(100, 107))
    assert milvus.verify(vectors[3], "p03").distance == pytest.approx(0.0, abs=1e-6)
