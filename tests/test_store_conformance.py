"""One conformance suite for every store of record: SQLite and PostgreSQL.

What the Enroller relies on: atomic writes that move the sequence by one and the content
digest by exactly what they wrote, "created" decided inside the transaction, consistent
snapshots, model-id and protection-key checks, API keys, and the Enroller on top giving the
same answers whichever store holds the gallery.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import Enroller, ModelMismatchError, UnknownIdentityError
from faceid_sdk._stores import open_store
from faceid_sdk.errors import ApiKeyError, ProtectionKeyError
from faceid_sdk.matching import Matcher
from faceid_sdk.testing import near, unit_vectors

from .conftest import DIM, MODEL_ID


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "faces.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(location: str) -> Iterator[object]:
    opened = open_store(location, model_id=MODEL_ID, dim=DIM)
    yield opened
    opened.close()


def _digest_of(store) -> str:  # type: ignore[no-untyped-def]
    """The digest of the templates as read back, computed the way any index would."""
    stored = store.templates()
    matcher = Matcher(DIM)
    for name in set(stored.identities):
        rows = [i for i, n in enumerate(stored.identities) if n == name]
        matcher.add(name, stored.vectors[rows], ids=stored.ids[rows])
    return matcher.content_digest()


def test_writes_move_sequence_and_digest_exactly(store) -> None:
    vectors = unit_vectors(5, DIM, seed=1)
    start = store.content_state()
    assert (start.sequence, start.templates) == (0, 0)
    first = store.add("alice", vectors[:2], display_name="Alice")
    assert first.created and first.sequence == 1 and len(first.new_ids) == 2
    again = store.add("alice", vectors[2:3])
    assert not again.created and again.sequence == 2
    replaced = store.add("alice", vectors[3:4], replace=True)
    assert sorted(replaced.removed_ids.tolist()) == sorted([*first.new_ids, *again.new_ids])
    store.add("bob", vectors[4:5])
    state = store.content_state()
    assert (state.sequence, state.templates) == (4, 2)
    assert state.digest == _digest_of(store)
    removed = store.remove("bob")
    assert len(removed) == 1 and store.content_state().sequence == 5
    assert store.content_state().digest == _digest_of(store)
    with pytest.raises(UnknownIdentityError):
        store.remove("bob")
    assert store.content_state().sequence == 5  # a refused write moves nothing
    sequence, ids = store.template_id_snapshot()
    assert sequence == 5 and ids.tolist() == replaced.new_ids.tolist()
    assert store.templates_with_ids(ids.tolist()).identities == ("alice",)
    record = store.get("alice")
    assert (record.display_name, record.template_count) == ("Alice", 1)
    assert [r.identity for r in store.identities()] == ["alice"]
    assert "alice" in store and "bob" not in store and len(store) == 1


def test_model_and_key_checks(location: str, store) -> None:
    store.add("alice", unit_vectors(1, DIM, seed=2))
    with pytest.raises(ModelMismatchError):
        open_store(location, model_id="another-model", dim=DIM)
    store.expected_key_id = "k1"
    with pytest.raises(ProtectionKeyError):
        store.add("bob", unit_vectors(1, DIM, seed=3))  # the store holds no key "k1"
    assert "bob" not in store
    store.expected_key_id = None
    rotated = store.rekey(np.eye(DIM)[::-1].copy(), old_key_id=None, new_key_id="k2")
    assert rotated == 1 and store.protection_key_id == "k2"
    assert store.content_state().digest == _digest_of(store)
    with pytest.raises(ProtectionKeyError):
        store.rekey(np.eye(DIM), old_key_id=None, new_key_id="k3")


def test_threshold_keys_and_integrity(store) -> None:
    assert store.calibrated_threshold is None
    store.save_calibrated_threshold(0.7, "test")
    assert store.calibrated_threshold == 0.7
    assert not store.has_active_api_keys()
    record, text = store.add_api_key("kiosk", ("identify", "verify"))
    assert store.has_active_api_keys() and record.scopes == ("identify", "verify")
    key_id, secret = text.split("_")[1], text.split("_", 2)[2]
    assert store.authenticate(key_id, secret).name == "kiosk"
    assert store.authenticate(key_id, secret[:-1] + "x") is None
    with pytest.raises(ApiKeyError):
        store.add_api_key("kiosk", ("list",))
    store.revoke_api_key("kiosk")
    assert store.authenticate(key_id, secret) is None and not store.has_active_api_keys()
    assert store.integrity_check() == "ok"


def test_created_is_reported_once_across_connections(location: str, store) -> None:
    """Two connections (as two replicas) create one name: exactly one is told `created`."""
    other = open_store(location, model_id=MODEL_ID, dim=DIM)
    try:
        a = store.add("carol", unit_vectors(1, DIM, seed=4))
        b = other.add("carol", unit_vectors(1, DIM, seed=5))
        assert (a.created, b.created) == (True, False)
        assert other.content_state() == store.content_state()
    finally:
        other.close()


def test_enroller_behaves_the_same_on_every_store(location: str) -> None:
    templates = unit_vectors(6, DIM, seed=6)
    with Enroller(location, MODEL_ID, DIM) as enroller:
        for i in range(3):
            enroller.enroll(f"p{i}", templates[2 * i:2 * i + 2])
        assert enroller.identify(near(templates[2], 0.1, seed=1)).identity == "p1"
        assert enroller.verify(near(templates[0], 0.1, seed=2), "p0").accepted
    with Enroller.open(location) as reopened, Enroller.open(location) as replica:
        reopened.remove("p1")
        replica_answer = replica.identify(near(templates[2], 0.1, seed=1))
        assert replica_answer.identity != "p1"  # the replica applied the removal first
        assert len(replica) == 2


def test_milvus_gallery_on_the_store_of_record(location: str, tmp_path: Path) -> None:
    """Milvus holds the gallery, the store stays the record: writes reach both, a gallery
    damaged behind the store's back is reconciled at open and rebuilt on demand."""
    pytest.importorskip("milvus_lite", reason="needs faceid-sdk[milvus]")
    from click.testing import CliRunner
    from faceid_adapters.milvus import MilvusMatcher

    from faceid_sdk.cli import main

    uri = str(tmp_path / "gallery.milvus.db")
    templates = unit_vectors(6, DIM, seed=9)
    options = {"uri": uri}
    with Enroller(location, MODEL_ID, DIM, index="milvus", index_options=options) as enroller:
        for i in range(3):
            enroller.enroll(f"m{i}", templates[2 * i:2 * i + 2])
        assert enroller.identify(templates[2]).identity == "m1"
        assert isinstance(enroller.matcher, MilvusMatcher)
    outside = MilvusMatcher(uri, DIM)
    outside.remove("m1")
    outside.add("ghost", unit_vectors(1, DIM, seed=10), ids=[999_999])
    outside.close()
    with Enroller(location, MODEL_ID, DIM, index="milvus", index_options=options) as enroller:
        assert enroller.index_status == "stale"  # reconciled with the store
        assert enroller.identify(templates[2]).identity == "m1" and "ghost" not in enroller.matcher
    outside = MilvusMatcher(uri, DIM)
    outside.remove("m0")
    outside.close()
    result = CliRunner().invoke(main, ["rebuild-index", "--store", location, "--milvus-uri", uri,
                                       "--json"])
    assert result.exit_code == 0, result.output
    rebuilt = MilvusMatcher(uri, DIM)
    try:
        assert rebuilt.identities == ("m0", "m1", "m2") and len(rebuilt) == 6
    finally:
        rebuilt.close()
