"""Index files are untrusted: every mutation, truncation, foreign or stale file is caught at
Enroller open and the index is rebuilt from the store, with every identity intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import Enroller, IndexFileError, Matcher, TemplateProtector
from faceid_sdk._enroll import index_path_for
from faceid_sdk.testing import near, unit_vectors

from ..conftest import DIM, MODEL_ID

PEOPLE = 6


def _make_store(path: Path, seed: int = 0) -> np.ndarray:
    templates = unit_vectors(2 * PEOPLE, DIM, seed=seed)
    with Enroller(path, MODEL_ID, DIM) as enroller:
        for i in range(PEOPLE):
            enroller.enroll(f"p{i}", templates[2 * i : 2 * i + 2])
    return templates


def _open_and_check(store: Path, templates: np.ndarray, allowed: set[str]) -> str:
    """Open, check every identity answers, return index_status; never saves the index."""
    enroller = Enroller(store, MODEL_ID, DIM)
    try:
        status = enroller.index_status
        assert status in allowed, status
        assert len(enroller) == PEOPLE and len(enroller.matcher) == 2 * PEOPLE
        queries = np.stack([near(templates[2 * i], 0.2, seed=i) for i in range(PEOPLE)])
        got = [r.identity for r in enroller.identify_batch(queries) if r.accepted]
        assert got == [f"p{i}" for i in range(PEOPLE)]
        return status
    finally:
        enroller._store.close()


def _mutations(good: bytes, rng: np.random.Generator, step: int):
    """Single bit flips at every *step*-th byte, truncations, and random multi-byte edits."""
    for pos in range(0, len(good), step):
        data = bytearray(good)
        data[pos] ^= 1 << int(rng.integers(8))
        yield bytes(data)
    for cut in range(0, len(good), step):
        yield good[:cut]
    for _ in range(100):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), int(rng.integers(2, 16))):
            data[pos] = int(rng.integers(256))
        yield bytes(data)
    yield good + b"\0"
    yield b""


def _run_mutations(folder: Path, step: int) -> int:
    folder.mkdir(exist_ok=True)
    store = folder / "faces.db"
    templates = _make_store(store)
    index = index_path_for(store)
    good = index.read_bytes()
    tried = 0
    for mutated in _mutations(good, np.random.default_rng(7), step):
        if mutated == good:
            continue
        index.write_bytes(mutated)
        _open_and_check(store, templates, {"corrupt", "stale"})
        tried += 1
    index.write_bytes(good)
    assert _open_and_check(store, templates, {"ok"}) == "ok"
    return tried


def test_mutated_index_files_are_rebuilt(tmp_path):
    """A sample of bit flips, truncations and random edits: each detected, each rebuilt."""
    tried = _run_mutations(tmp_path, step=23)
    assert tried > 150
    print(f"\nindex mutations rebuilt at Enroller open: {tried}")


@pytest.mark.slow
def test_every_bit_flip_and_truncation_is_refused(tmp_path):
    """Every header and manifest bit flip and truncation, and a sample in the FAISS section,
    is refused by the loader before FAISS parses a byte (rebuilding at open: the test above)."""
    store = tmp_path / "faces.db"
    _make_store(store)
    index = index_path_for(store)
    good = index.read_bytes()
    expect = Matcher.read_manifest(index).metadata
    bad = tmp_path / "bad.index"
    refused = 0
    # Every bit and every cut in the preamble and manifest (where the parsing logic is); in
    # the FAISS section (behind its SHA-256) one bit of every 5th byte, to keep within budget.
    faiss_start = len(good) - Matcher.read_manifest(index).faiss_size
    for pos in [*range(faiss_start), *range(faiss_start, len(good), 5)]:
        for bit in range(8) if pos < faiss_start else (pos % 8,):
            data = bytearray(good)
            data[pos] ^= 1 << bit
            bad.write_bytes(bytes(data))
            with pytest.raises(IndexFileError):
                Matcher.load(bad, expect=expect, dim=DIM)
            refused += 1
    for cut in [*range(faiss_start), *range(faiss_start, len(good), 5)]:
        bad.write_bytes(good[:cut])
        with pytest.raises(IndexFileError):
            Matcher.load(bad, expect=expect, dim=DIM)
        refused += 1
    print(f"\nindex files: {refused} bit flips and truncations refused by the loader")


def test_unreadable_index_paths_are_rebuilt(tmp_path):
    """A directory or a dangling symlink where the index belongs is rebuilt around."""
    store = tmp_path / "faces.db"
    templates = _make_store(store)
    index = index_path_for(store)
    index.unlink()
    index.mkdir()
    assert _open_and_check(store, templates, {"corrupt"}) == "corrupt"
    index.rmdir()
    index.symlink_to(tmp_path / "nowhere")
    assert _open_and_check(store, templates, {"missing", "corrupt"})


def test_valid_index_of_another_store_is_refused(tmp_path):
    """Same model, same sequence, same count, valid checksums: another store's file is still
    refused (the manifest names its store) and the index is rebuilt from this store."""
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    templates = _make_store(ours, seed=0)
    _make_store(theirs, seed=1)
    manifest = Matcher.read_manifest(index_path_for(theirs))
    assert manifest.metadata["sequence"] == Matcher.read_manifest(index_path_for(ours)).metadata[
        "sequence"]
    shutil.copy(index_path_for(theirs), index_path_for(ours))
    assert _open_and_check(ours, templates, {"foreign"}) == "foreign"


@pytest.mark.parametrize("change", ["enroll", "remove", "replace", "rotate"])
def test_stale_index_is_rebuilt(tmp_path, change):
    """An older index file (saved before an enroll, remove, same-size replace or key rotation)
    is detected as stale and rebuilt."""
    store = tmp_path / "faces.db"
    templates = _make_store(store)
    old = index_path_for(store).read_bytes()
    protector = TemplateProtector(bytes(32), DIM) if change == "rotate" else None
    with Enroller(store, MODEL_ID, DIM) as enroller:
        if change == "enroll":
            enroller.enroll("extra", unit_vectors(1, DIM, seed=99))
            enroller.remove("extra")  # back to the same count
        elif change == "remove":
            enroller.enroll("extra", unit_vectors(2, DIM, seed=99))
        elif change == "replace":
            enroller.replace("p0", templates[0:2][::-1])  # same vectors, new rows
        else:
            enroller.rotate_key(protector)
    index_path_for(store).write_bytes(old)
    enroller = Enroller(store, MODEL_ID, DIM, protector=protector)
    try:
        assert enroller.index_status == "stale"
        expected = PEOPLE + (change == "remove")
        assert len(enroller) == expected
        for i in range(PEOPLE):
            assert enroller.identify(templates[2 * i]).identity == f"p{i}"
    finally:
        enroller._store.close()
