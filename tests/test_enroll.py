"""The Enroller: durable store and in-memory index kept in step."""

from __future__ import annotations

import sqlite3
import unicodedata

import numpy as np
import pytest

from faceid_sdk import (
    Enroller,
    FeatureCodec,
    InvalidFeatureError,
    ModelMismatchError,
    PossibleDuplicateWarning,
    StoreError,
    UnknownIdentityError,
    rebuild_index,
)
from faceid_sdk._enroll import index_path_for

from .conftest import DIM, MODEL_ID, unit_rows


@pytest.fixture
def store(tmp_path):
    return tmp_path / "faces.db"


def open_enroller(store, **kw):
    return Enroller(store, MODEL_ID, DIM, **kw)


def test_enrolled_identity_is_identified(store, rng):
    """A vector near an enrolled template is identified as that identity."""
    templates = unit_rows(rng, 3)
    with open_enroller(store) as enroller:
        enroller.enroll("alice", templates[0])
        enroller.enroll("bob", templates[1])
        result = enroller.matcher.identify(templates[0])
        assert result.identity == "alice" and result.accepted
        assert not enroller.matcher.identify(templates[2]).accepted


def test_enroll_accepts_wire_payloads(store, rng):
    """Payloads are accepted in binary and text form exactly as a client sends them."""
    vectors = unit_rows(rng, 2)
    codec = FeatureCodec(MODEL_ID, DIM)
    with open_enroller(store) as enroller:
        result = enroller.enroll("alice", [codec.encode(vectors[0]), codec.encode_text(vectors[1])])
        assert len(result.template_ids) == 2
        assert enroller.matcher.template_count("alice") == 2


def test_payload_from_another_model_is_refused(store, rng):
    """A payload made by another model never reaches the store."""
    other = FeatureCodec("other-model", DIM)
    with open_enroller(store) as enroller:
        with pytest.raises(ModelMismatchError):
            enroller.enroll("alice", other.encode(unit_rows(rng, 1)[0]))
        assert enroller.identities() == []


def test_store_refuses_another_model(store, rng):
    """Opening a store with another model id or dimension raises ModelMismatchError."""
    with open_enroller(store) as enroller:
        enroller.enroll("alice", unit_rows(rng, 1))
    with pytest.raises(ModelMismatchError, match="test-model-16"):
        Enroller(store, "other-model", DIM)
    with pytest.raises(ModelMismatchError):
        Enroller(store, MODEL_ID, DIM * 2)


def test_unnormalized_and_zero_vectors_are_refused(store):
    """The zero vector (a master key under a loose threshold) and raw vectors are refused."""
    with open_enroller(store) as enroller:
        with pytest.raises(InvalidFeatureError) as info:
            enroller.enroll("mallory", np.zeros(DIM, dtype=np.float32))
        assert info.value.code == "norm"
        with pytest.raises(InvalidFeatureError):
            enroller.enroll("mallory", np.full(DIM, 3.0, dtype=np.float32))
        with pytest.raises(InvalidFeatureError):
            enroller.enroll("mallory", np.ones((0, DIM), dtype=np.float32))
        assert "mallory" not in enroller


def test_names_are_unicode_normalized(store, rng):
    """'José' composed and decomposed are one identity."""
    composed = unicodedata.normalize("NFC", "José")
    decomposed = unicodedata.normalize("NFD", "José")
    assert composed != decomposed
    with open_enroller(store) as enroller:
        first = enroller.enroll(composed, unit_rows(rng, 1))
        second = enroller.enroll(decomposed, unit_rows(rng, 1))
        assert first.created and not second.created
        assert [r.identity for r in enroller.identities()] == [composed]
        assert enroller.get(decomposed).template_count == 2


def test_replace_and_remove(store, rng):
    """Replace swaps every template in one step; remove deletes the identity everywhere."""
    old, new = unit_rows(rng, 2)
    with open_enroller(store) as enroller:
        enroller.enroll("alice", old, display_name="Alice A.")
        result = enroller.replace("alice", new)
        assert result.replaced == 1
        assert enroller.matcher.identify(new).identity == "alice"
        assert not enroller.matcher.identify(old).accepted
        assert enroller.get("alice").display_name == "Alice A."
        assert enroller.remove("alice") == 1
        assert "alice" not in enroller.matcher
        with pytest.raises(UnknownIdentityError):
            enroller.remove("alice")
    with open_enroller(store) as enroller:
        assert enroller.identities() == []


def test_duplicate_face_warns(store, rng):
    """Enrolling a face that already matches someone else warns and reports the conflict."""
    vector = unit_rows(rng, 1)[0]
    with open_enroller(store) as enroller:
        enroller.enroll("alice", vector)
        with pytest.warns(PossibleDuplicateWarning, match="alice"):
            result = enroller.enroll("alice-again", vector)
        assert result.conflicts == ("alice",)


def test_reopen_uses_saved_index(store, rng):
    """After a clean close the saved index matches the store and is used as is."""
    with open_enroller(store) as enroller:
        enroller.enroll("alice", unit_rows(rng, 2))
    with open_enroller(store) as enroller:
        assert enroller.index_status == "ok"
        assert enroller.matcher.template_count("alice") == 2


def test_stale_index_after_crash_is_rebuilt(store, rng):
    """An index older than the store (a crash before close) is detected and rebuilt."""
    vectors = unit_rows(rng, 2)
    with open_enroller(store) as enroller:
        enroller.enroll("alice", vectors[0])
    enroller = open_enroller(store)
    enroller.enroll("bob", vectors[1])  # committed, but the index file is not rewritten
    enroller._store.close()  # simulate a crash: no save_index
    with open_enroller(store) as reopened:
        assert reopened.index_status == "stale"
        assert reopened.matcher.identify(vectors[1]).identity == "bob"


def test_corrupt_index_is_rebuilt(store, rng):
    """A corrupt index file is never trusted: the store rebuilds it."""
    vector = unit_rows(rng, 1)[0]
    with open_enroller(store) as enroller:
        enroller.enroll("alice", vector)
    index = index_path_for(store)
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    with open_enroller(store) as enroller:
        assert enroller.index_status == "corrupt"
        assert enroller.matcher.identify(vector).identity == "alice"


def test_rebuild_index_reports_and_restores(store, rng):
    """rebuild_index restores a deleted index file and says what it checked."""
    vector = unit_rows(rng, 1)[0]
    with open_enroller(store) as enroller:
        enroller.enroll("alice", vector)
    index_path_for(store).unlink()
    report = rebuild_index(store)
    assert report.previous == "missing"
    assert (report.identities, report.templates) == (1, 1)
    assert any("integrity" in item for item in report.checked)
    assert rebuild_index(store).previous == "ok"
    with open_enroller(store) as enroller:
        assert enroller.index_status == "ok"


def test_failed_write_keeps_store_and_index_in_step(store, rng, monkeypatch):
    """A write that fails in SQLite raises StoreError and changes neither store nor index."""
    with open_enroller(store) as enroller:
        enroller.enroll("alice", unit_rows(rng, 1))
        real_execute = enroller._store._db.execute

        class FailingConnection:
            def __getattr__(self, name):
                return getattr(enroller._store._db_real, name)

            def execute(self, sql, *args):
                if sql.startswith("INSERT INTO templates"):
                    raise sqlite3.OperationalError("database or disk is full")
                return real_execute(sql, *args)

        enroller._store._db_real = enroller._store._db
        monkeypatch.setattr(enroller._store, "_db", FailingConnection())
        with pytest.raises(StoreError, match="disk is full"):
            enroller.enroll("bob", unit_rows(rng, 1))
        monkeypatch.setattr(enroller._store, "_db", enroller._store._db_real)
        assert "bob" not in enroller.matcher
        assert [r.identity for r in enroller.identities()] == ["alice"]


def test_open_reads_model_from_store(store, rng):
    """Enroller.open needs only the path: model id and dimension come from the store."""
    with open_enroller(store) as enroller:
        enroller.enroll("alice", unit_rows(rng, 1))
    with Enroller.open(store) as enroller:
        assert (enroller.model_id, enroller.dim) == (MODEL_ID, DIM)
    with pytest.raises(StoreError, match="no store"):
        Enroller.open(store.with_name("missing.db"))


@pytest.mark.parametrize("bad", ["", " alice", "a\x00b", "a\ud800", "x" * 300, 42])
def test_malformed_identity_names_are_refused(store, rng, bad):
    """Empty, padded, control-character, lone-surrogate, overlong and non-str names are refused."""
    from faceid_sdk import InvalidIdentityError

    with open_enroller(store) as enroller:
        with pytest.raises(InvalidIdentityError):
            enroller.enroll(bad, unit_rows(rng, 1))
        assert enroller.identities() == []


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_gives_the_flat_decisions(store, rng, kind):
    """index="hnsw"/"ivf" serves through an ApproxMatcher, same store, same file, same answers."""
    from faceid_sdk import ApproxMatcher

    templates = unit_rows(rng, 400)
    options = {"exact_below": 0, "nlist": 8} if kind == "ivf" else {"exact_below": 0}
    with open_enroller(store) as flat:
        for i, t in enumerate(templates):
            flat.enroll(f"p{i}", t)
        queries = templates[::7] + rng.normal(0, 0.02, (len(templates[::7]), DIM))
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        expected = [flat.identify(q) for q in queries]
    for status in ("ok", "missing"):
        if status == "missing":
            index_path_for(store).unlink()
        with open_enroller(store, index=kind, index_options=options) as approx:
            assert approx.index_status == status
            assert isinstance(approx.matcher, ApproxMatcher) and approx.matcher.approximate
            assert approx.matcher.index_kind == kind
            assert [approx.identify(q) for q in queries] == expected
            late = unit_rows(rng, 1)[0]
            approx.enroll(f"late-{status}", late)
            assert approx.identify(late).identity == f"late-{status}"
        assert index_path_for(store).exists()


def test_unknown_index_kind_is_refused(store):
    with pytest.raises(InvalidFeatureError, match="flat, hnsw, ivf") as info:
        open_enroller(store, index="annoy")
    assert info.value.code == "index"
    with pytest.raises(InvalidFeatureError, match="hnsw, ivf and milvus only"):
        open_enroller(store, index_options={"ef_search": 8})


def test_enrollers_sharing_a_store_see_each_others_writes(store, rng):
    """Two Enrollers on one store (server workers, or the CLI beside a running server)
    stay in step: every read and write applies what the other committed first."""
    vectors = unit_rows(rng, 6)
    with open_enroller(store) as a, open_enroller(store) as b:
        a.enroll("alice", vectors[0])
        assert b.identify(vectors[0]).identity == "alice"
        b.enroll("bob", vectors[1])
        a.enroll("carol", vectors[2])  # a must apply b's write before its own
        assert a.identify(vectors[1]).identity == "bob"
        assert b.identify(vectors[2]).identity == "carol"
        b.remove("alice")
        assert not a.identify(vectors[0]).accepted  # the read applied b's removal
        assert "alice" not in a.matcher
        a.replace("bob", vectors[3])
        assert b.identify(vectors[3]).identity == "bob"
        assert b.identify(vectors[1]).distance > 0.1  # bob's old template is gone
        assert b.matcher.template_count("bob") == 1
        assert b.remove("carol") == 1  # enrolled through a
        assert a.sync() == 1  # carol's template went
        assert a.sync() == 0
        assert a.matcher.identities == b.matcher.identities == ("bob",)
    with open_enroller(store) as again:
        assert again.index_status == "ok"
        assert again.matcher.identities == ("bob",)
        assert again.identify(vectors[3]).identity == "bob"


def test_an_index_saved_behind_the_store_is_not_trusted(store, rng):
    """An index written while another process's write was unseen is stamped as stale."""
    vectors = unit_rows(rng, 2)
    a = open_enroller(store)
    b = open_enroller(store)
    a.enroll("alice", vectors[0])
    b._store.add("bob", vectors[1:2])  # committed behind a's back, not yet synced by a
    a.matcher.save(index_path_for(store), metadata={"sequence": 0})  # scribble a file
    a.close()  # syncs first: the file it writes holds bob
    b._store.close()
    with open_enroller(store) as again:
        assert again.index_status == "ok"
        assert again.identify(vectors[1]).identity == "bob"


def test_a_store_rekeyed_by_another_process_is_refused(store, rng):
    from faceid_sdk import ProtectionKeyError, TemplateProtector
    from faceid_sdk._protect import generate_key

    key = TemplateProtector(generate_key(), DIM)
    vectors = unit_rows(rng, 2)
    with open_enroller(store) as a, open_enroller(store) as b:
        a.enroll("alice", vectors[0])
        b.rotate_key(key)
        assert b.identify(vectors[0]).identity == "alice"
        with pytest.raises(ProtectionKeyError, match="re-keyed by another process"):
            a.identify(vectors[0])
