"""Template protection: a keyed rotation that changes what is stored but no decision."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pytest

from faceid_sdk import (
    Enroller,
    PossibleDuplicateWarning,
    ProtectionKeyError,
    TemplateProtector,
    rebuild_index,
)
from faceid_sdk._protect import KEY_ENV, KEY_FILE_ENV, protector_from_environment, rekey_matrix
from faceid_sdk.testing import near, unit_vectors

from .conftest import DIM, MODEL_ID

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def _gallery(seed: int = 7, people: int = 60, dim: int = DIM):
    """Two templates per person plus mated, impostor and look-alike queries."""
    rng = np.random.default_rng(seed)
    templates = unit_vectors(2 * people, dim, seed=rng)
    mated = np.stack([near(templates[2 * i], 0.3, seed=i) for i in range(people)])
    impostors = unit_vectors(people, dim, seed=rng)
    # Close to person-0 and to the look-alike "twin" (see _enroll_all): an ambiguous query.
    both = near(templates[0], 0.1, seed=5)[None]
    queries = np.concatenate([mated, impostors, both])
    return templates, np.ascontiguousarray(queries, dtype=np.float32)


def _decisions(enroller: Enroller, queries: np.ndarray) -> list[tuple]:
    out = []
    for q in queries:
        r = enroller.identify(q)
        v = enroller.verify(q, "person-0")
        out.append((r.identity, r.accepted, r.ambiguous, r.runner_up, round(r.distance, 4),
                    v.accepted, round(v.distance, 4),
                    tuple(c.identity for c in enroller.candidates(q, k=3))))
    return out


def _enroll_all(enroller: Enroller, templates: np.ndarray) -> None:
    for i in range(len(templates) // 2):
        enroller.enroll(f"person-{i}", templates[2 * i : 2 * i + 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PossibleDuplicateWarning)
        enroller.enroll("twin", near(templates[0], 0.3, seed=99))


def test_rotation_is_deterministic_orthogonal_and_pinned():
    """Same key, same matrix on every run and NumPy version (pinned digits); Q is orthogonal."""
    p = TemplateProtector(KEY_A, 4)
    assert p == TemplateProtector(KEY_A, 4)
    assert p != TemplateProtector(KEY_B, 4)
    np.testing.assert_allclose(p.matrix @ p.matrix.T, np.eye(4), atol=1e-12)
    # Pinned: a change in the derivation would orphan every protected store.
    assert p.key_id == PINNED_KEY_ID
    np.testing.assert_allclose(p.matrix[0], PINNED_ROW0, atol=1e-12)
    big = TemplateProtector(KEY_A, 128)
    np.testing.assert_allclose(big.matrix @ big.matrix.T, np.eye(128), atol=1e-12)


PINNED_KEY_ID = "eba68513974759e6"
PINNED_ROW0 = [0.3193733814026971, 0.6342062801858136, 0.6644079158346384, 0.23312048129787594]


def test_repr_hides_the_secret():
    """The repr names the key id and dim, never the matrix."""
    text = repr(TemplateProtector(KEY_A, DIM))
    assert text.startswith("<TemplateProtector key_id=") and len(text) < 80


def test_distances_are_preserved():
    """Pairwise distances of protected vectors equal those of raw vectors (float32 round-off)."""
    raw = unit_vectors(50, 128, seed=3)
    protected = TemplateProtector(KEY_A, 128).protect(raw)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=2)
    d_pro = np.linalg.norm(protected[:, None] - protected[None], axis=2)
    assert np.abs(d_raw - d_pro).max() < 1e-5
    assert np.abs(raw - protected).max() > 0.1  # and they are not the raw vectors


def test_decisions_identical_before_after_protection_and_rotation(tmp_path):
    """Raw store, protected store, re-keyed store and reopened store decide every query alike."""
    templates, queries = _gallery()
    with Enroller(tmp_path / "raw.db", MODEL_ID, DIM, runner_up=True) as raw:
        _enroll_all(raw, templates)
        expected = _decisions(raw, queries)
    assert any(d[1] for d in expected) and any(not d[1] for d in expected)
    assert any(d[2] for d in expected), "the gallery should contain an ambiguous query"

    store = tmp_path / "protected.db"
    a, b = TemplateProtector(KEY_A, DIM), TemplateProtector(KEY_B, DIM)
    with Enroller(store, MODEL_ID, DIM, protector=a, runner_up=True) as protected:
        _enroll_all(protected, templates)
        assert _decisions(protected, queries) == expected
        assert protected.rotate_key(b) == len(templates) + 1
        assert _decisions(protected, queries) == expected
    with Enroller(store, MODEL_ID, DIM, protector=b, runner_up=True) as reopened:
        assert reopened.index_status == "ok"
        assert _decisions(reopened, queries) == expected
        # Protecting a raw store and un-protecting a protected one keep decisions too.
        assert reopened.rotate_key(None) == len(templates) + 1
        assert _decisions(reopened, queries) == expected
        reopened.rotate_key(a)
        assert _decisions(reopened, queries) == expected


def test_store_holds_only_protected_vectors(tmp_path):
    """What SQLite and the index file hold is Q·x, not x; the key itself is nowhere."""
    store = tmp_path / "faces.db"
    templates, _ = _gallery(people=5)
    p = TemplateProtector(KEY_A, DIM)
    with Enroller(store, MODEL_ID, DIM, protector=p) as enroller:
        _enroll_all(enroller, templates)
    db = sqlite3.connect(store)
    rows = db.execute("SELECT vector FROM templates ORDER BY id")
    blobs = [np.frombuffer(b, "<f4") for (b,) in rows]
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    stored = np.stack(blobs)[: len(templates)]  # the last row is the look-alike "twin"
    np.testing.assert_allclose(stored, p.protect(templates), atol=1e-6)
    assert np.abs(stored - templates).max() > 0.1
    assert meta["protection_key_id"] == p.key_id
    for data in (store.read_bytes(), (tmp_path / "faces.db.index").read_bytes()):
        assert KEY_A not in data and KEY_A.hex().encode() not in data


def test_rotation_is_recovered_from_dim_known_pairs():
    """Honest limit: 128 known (raw, protected) pairs give the key matrix back (Procrustes)."""
    dim = 128
    p = TemplateProtector(KEY_A, dim)
    raw = unit_vectors(dim, dim, seed=11)
    protected = p.protect(raw)
    # Orthogonal Procrustes: Q minimizing |raw Q^T - protected| is (U V^T)^T, svd(raw^T protected).
    u, _, vt = np.linalg.svd(raw.T.astype(np.float64) @ protected)
    recovered = (u @ vt).T
    assert np.abs(recovered - p.matrix).max() < 1e-4
    # ...which then unprotects a whole stolen gallery.
    others = unit_vectors(500, dim, seed=12)
    assert np.abs(p.protect(others) @ recovered - others).max() < 1e-4
    # With fewer pairs than dimensions the rest of the space stays unknown.
    u, _, vt = np.linalg.svd(raw[:32].T.astype(np.float64) @ protected[:32])
    assert np.abs((u @ vt).T - p.matrix).max() > 0.1


def test_wrong_missing_and_unexpected_keys_are_refused(tmp_path):
    """A store keyed with A refuses B and no key; a raw store with templates refuses a key."""
    store = tmp_path / "faces.db"
    with Enroller(store, MODEL_ID, DIM, protector=TemplateProtector(KEY_A, DIM)) as e:
        e.enroll("alice", unit_vectors(1, DIM, seed=1))
    with pytest.raises(ProtectionKeyError, match="keyed with key id"):
        Enroller(store, MODEL_ID, DIM, protector=TemplateProtector(KEY_B, DIM))
    with pytest.raises(ProtectionKeyError, match="give that key"):
        Enroller(store, MODEL_ID, DIM)
    with pytest.raises(ProtectionKeyError, match="dim"):
        Enroller(store, MODEL_ID, DIM, protector=TemplateProtector(KEY_A, DIM + 1))
    raw = tmp_path / "raw.db"
    with Enroller(raw, MODEL_ID, DIM) as e:
        e.enroll("bob", unit_vectors(1, DIM, seed=2))
    with pytest.raises(ProtectionKeyError, match="unprotected templates"):
        Enroller(raw, MODEL_ID, DIM, protector=TemplateProtector(KEY_A, DIM))
    # The refusals left the store usable and unchanged.
    with Enroller(raw, MODEL_ID, DIM) as e:
        assert e.identify(unit_vectors(1, DIM, seed=2)[0]).identity == "bob"


def test_key_file_and_environment(tmp_path, monkeypatch):
    """Keys come from a 0600 hex file or the environment; Enroller.open picks them up."""
    path = tmp_path / "template.key"
    p = TemplateProtector.new_key_file(path, DIM)
    assert path.stat().st_mode & 0o777 == 0o600
    assert TemplateProtector.from_key_file(path, DIM) == p
    assert protector_from_environment(DIM, environ={}) is None
    assert protector_from_environment(DIM, environ={KEY_FILE_ENV: str(path)}) == p
    assert protector_from_environment(DIM, environ={KEY_ENV: path.read_text()}) == p
    store = tmp_path / "faces.db"
    with Enroller(store, MODEL_ID, DIM, protector=p) as e:
        e.enroll("alice", unit_vectors(1, DIM, seed=1))
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    with Enroller.open(store) as e:
        assert e.protector == p and e.identify(unit_vectors(1, DIM, seed=1)[0]).accepted
    monkeypatch.delenv(KEY_FILE_ENV)
    with pytest.raises(ProtectionKeyError, match="give that key"):
        Enroller.open(store)


@pytest.mark.parametrize(("text", "match"), [("zz" * 32, "hex"), ("ab" * 8 + "a", "hex"),
                                             ("ab" * 4, "at least 16 bytes")])
def test_malformed_keys_are_refused(tmp_path, text, match):
    """Non-hex and short keys fail with ProtectionKeyError saying what to do."""
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(ProtectionKeyError, match=match):
        TemplateProtector.from_key_file(path, DIM)
    with pytest.raises(ProtectionKeyError, match="cannot read"):
        TemplateProtector.from_key_file(tmp_path / "missing.key", DIM)


def test_failed_rotation_changes_nothing(tmp_path, monkeypatch):
    """A rotation that fails half-way rolls back: every template stays under the old key."""
    store = tmp_path / "faces.db"
    templates, queries = _gallery(people=10)
    a, b = TemplateProtector(KEY_A, DIM), TemplateProtector(KEY_B, DIM)
    with Enroller(store, MODEL_ID, DIM, protector=a) as e:
        _enroll_all(e, templates)
        expected = _decisions(e, queries)
        real = e._store._db
        calls = {"n": 0}

        class Failing:
            def __getattr__(self, name):
                return getattr(real, name)

            def execute(self, sql, *args):
                if sql.startswith("UPDATE templates"):
                    calls["n"] += 1
                    if calls["n"] == 5:
                        raise sqlite3.OperationalError("database or disk is full")
                return real.execute(sql, *args)

        monkeypatch.setattr(e._store, "_db", Failing())
        with pytest.raises(Exception, match="disk is full"):
            e.rotate_key(b)
        monkeypatch.setattr(e._store, "_db", real)
        assert e.protector == a and e._store.protection_key_id == a.key_id
        assert _decisions(e, queries) == expected
    with Enroller(store, MODEL_ID, DIM, protector=a) as e:
        assert _decisions(e, queries) == expected


def test_rebuild_index_needs_no_key(tmp_path):
    """rebuild_index works from the protected store alone and the keyed Enroller accepts it."""
    store = tmp_path / "faces.db"
    p = TemplateProtector(KEY_A, DIM)
    vector = unit_vectors(1, DIM, seed=4)[0]
    with Enroller(store, MODEL_ID, DIM, protector=p) as e:
        e.enroll("alice", vector)
    (tmp_path / "faces.db.index").unlink()
    assert rebuild_index(store).previous == "missing"
    with Enroller(store, MODEL_ID, DIM, protector=p) as e:
        assert e.index_status == "ok" and e.identify(vector).identity == "alice"


def test_rekey_matrix_composes():
    """Re-keying A -> B with one matrix equals unprotecting with A then protecting with B."""
    a, b = TemplateProtector(KEY_A, DIM), TemplateProtector(KEY_B, DIM)
    raw = unit_vectors(10, DIM, seed=5)
    np.testing.assert_allclose(a.protect(raw) @ rekey_matrix(a, b, DIM), b.protect(raw),
                               atol=1e-6)
    np.testing.assert_allclose(a.unprotect(a.protect(raw)), raw, atol=1e-6)


def test_write_after_another_process_rekeyed_is_refused(tmp_path):
    """An Enroller whose store another process re-keyed refuses to write old-key templates."""
    store = tmp_path / "faces.db"
    a, b = TemplateProtector(KEY_A, DIM), TemplateProtector(KEY_B, DIM)
    first = Enroller(store, MODEL_ID, DIM, protector=a)
    first.enroll("alice", unit_vectors(1, DIM, seed=1))
    with Enroller(store, MODEL_ID, DIM, protector=a) as second:
        second.rotate_key(b)
    with pytest.raises(ProtectionKeyError, match="re-keyed"):
        first.enroll("bob", unit_vectors(1, DIM, seed=2))
    first._store.close()
    with Enroller(store, MODEL_ID, DIM, protector=b) as e:
        assert [r.identity for r in e.identities()] == ["alice"]


def test_rotate_key_command(tmp_path, monkeypatch):
    """rotate-key protects a raw store, re-keys it, and refuses a wrong or missing old key."""
    from click.testing import CliRunner

    from faceid_sdk._cli_trust import rotate_key_command

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    store = tmp_path / "faces.db"
    vector = unit_vectors(1, DIM, seed=1)[0]
    with Enroller(store, MODEL_ID, DIM) as e:
        e.enroll("alice", vector)
    runner = CliRunner()
    key1, key2 = tmp_path / "k1.key", tmp_path / "k2.key"
    result = runner.invoke(rotate_key_command, ["--store", str(store), "--generate-key-file",
                                                str(key1), "--json"])
    assert result.exit_code == 0, result.output
    assert '"templates": 1' in result.output and '"old_key_id": null' in result.output
    p1 = TemplateProtector.from_key_file(key1, DIM)
    TemplateProtector.new_key_file(key2, DIM)
    # Without the current key: a clear error and exit status 78.
    result = runner.invoke(rotate_key_command, ["--store", str(store), "--new-key-file", str(key2)])
    assert result.exit_code == 78 and "give that key" in result.output
    result = runner.invoke(rotate_key_command, ["--store", str(store), "--key-file", str(key1),
                                                "--new-key-file", str(key2)])
    assert result.exit_code == 0, result.output
    assert f"{p1.key_id} -> " in result.output
    with Enroller(store, MODEL_ID, DIM, protector=TemplateProtector.from_key_file(key2, DIM)) as e:
        assert e.identify(vector).identity == "alice"
    result = runner.invoke(rotate_key_command, ["--store", str(store), "--generate-key-file",
                                                str(key1)])
    assert result.exit_code == 2 and "never overwritten" in result.output
    assert runner.invoke(rotate_key_command, ["--help"]).exit_code == 0


def test_server_matches_through_the_protector(tmp_path):
    """The reference server enrolls and identifies correctly over a protected store."""
    pytest.importorskip("starlette")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from faceid_sdk import FeatureCodec
    from faceid_sdk.server import ServerSettings, create_app

    codec = FeatureCodec(MODEL_ID, DIM)
    vector = unit_vectors(1, DIM, seed=1)[0]
    with Enroller(tmp_path / "faces.db", MODEL_ID, DIM,
                  protector=TemplateProtector(KEY_A, DIM)) as enroller:
        app = create_app(enroller, settings=ServerSettings(rate_per_second=None))
        with TestClient(app) as client:
            r = client.post("/api/v1/enroll", json={"identity": "alice",
                                                    "features": [codec.encode_text(vector)]})
            assert r.status_code == 201, r.text
            query = codec.encode_text(near(vector, 0.2, seed=3))
            r = client.post("/api/v1/identify", json={"features": query})
            assert r.json()["identity"] == "alice", r.text
            r = client.post("/api/v1/verify", json={"identity": "alice", "features": query})
            assert r.json()["verified"] is True, r.text


def test_new_store_files_are_owner_only(tmp_path):
    """The database, its WAL and the index file are created mode 0600 (biometric data)."""
    store = tmp_path / "faces.db"
    with Enroller(store, MODEL_ID, DIM) as e:
        e.enroll("alice", unit_vectors(1, DIM, seed=1))
        assert (tmp_path / "faces.db-wal").stat().st_mode & 0o777 == 0o600
    for path in (store, tmp_path / "faces.db.index"):
        assert path.stat().st_mode & 0o777 == 0o600, path
