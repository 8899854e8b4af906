"""Enroll, identify and remove from several threads at once: no lost or phantom identities."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk import Enroller, TemplateProtector, UnknownIdentityError
from faceid_sdk.testing import unit_vectors

from ..conftest import DIM, MODEL_ID

# Random 16-d vectors are sometimes close: the duplicate warning is expected noise here.
pytestmark = pytest.mark.filterwarnings("ignore::faceid_sdk.PossibleDuplicateWarning")

STABLE = 30  # enrolled before the storm, never removed: must always be found


def _vector(name: str) -> np.ndarray:
    seed = int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "big") ^ len(name)
    return unit_vectors(1, DIM, seed=seed)[0]


def _storm(store: Path, protector: TemplateProtector | None, seconds: float) -> dict[str, int]:
    enroller = Enroller(store, MODEL_ID, DIM, protector=protector)
    stable = [f"stable-{i}" for i in range(STABLE)]
    for name in stable:
        enroller.enroll(name, _vector(name))
    ever: set[str] = set(stable)  # every name that was ever submitted for enrollment
    present: set[str] = set(stable)  # expected final set, maintained by the writers
    book = threading.Lock()
    errors: list[BaseException] = []
    counts = {"enroll": 0, "remove": 0, "identify": 0, "verify": 0}
    stop = time.monotonic() + seconds

    def count(kind: str) -> None:
        with book:
            counts[kind] += 1

    def writer(w: int) -> None:
        rng = np.random.default_rng(w)
        mine: list[str] = []
        i = 0
        while time.monotonic() < stop:
            if mine and rng.random() < 0.4:
                name = mine.pop(int(rng.integers(len(mine))))
                enroller.remove(name)
                with book:
                    present.discard(name)
                count("remove")
            else:
                name = f"w{w}-{i}"
                i += 1
                with book:
                    ever.add(name)  # before the call: identify may see it at once
                enroller.enroll(name, _vector(name))
                with book:
                    present.add(name)
                mine.append(name)
                count("enroll")

    def reader(r: int) -> None:
        rng = np.random.default_rng(100 + r)
        while time.monotonic() < stop:
            name = stable[int(rng.integers(STABLE))]
            result = enroller.identify(_vector(name))
            assert result.identity == name and result.accepted, (name, result)
            count("identify")
            batch = enroller.identify_batch(unit_vectors(8, DIM, seed=rng))
            with book:
                phantoms = {r.identity for r in batch if r.identity is not None} - ever
            assert not phantoms, phantoms
            count("identify")
            assert enroller.verify(_vector(name), name).accepted
            count("verify")

    def guard(target, *args):
        try:
            target(*args)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(writer, w)) for w in range(3)]
    threads += [threading.Thread(target=guard, args=(reader, r)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    assert not errors, errors[0]

    stored = {r.identity for r in enroller.identities()}
    indexed = set(enroller.matcher.identities)
    assert stored == indexed == present
    assert len(enroller.matcher) == sum(r.template_count for r in enroller.identities())
    enroller.close()
    # And after a reopen (saved index) and a rebuild (no index), the same set.
    with Enroller(store, MODEL_ID, DIM, protector=protector) as reopened:
        assert reopened.index_status == "ok"
        assert set(reopened.matcher.identities) == present
    Path(str(store) + ".index").unlink()
    with Enroller(store, MODEL_ID, DIM, protector=protector) as rebuilt:
        assert set(rebuilt.matcher.identities) == present
        for name in present:
            assert rebuilt.identify(_vector(name)).identity == name
        with pytest.raises(UnknownIdentityError):
            rebuilt.remove("never-enrolled")
    return {**counts, "final": len(present), "ever": len(ever)}


def test_concurrent_enroll_identify_remove(tmp_path):
    """3 writers and 3 readers for 2 s: final store == matcher == expected, no phantoms."""
    counts = _storm(tmp_path / "faces.db", None, seconds=2.0)
    assert counts["enroll"] > 10 and counts["remove"] > 3 and counts["identify"] > 50


@pytest.mark.slow
def test_concurrent_storm_with_protection(tmp_path):
    """The same for 8 s on a protected store; prints the operation counts."""
    counts = _storm(tmp_path / "faces.db", TemplateProtector(bytes(range(32)), DIM), seconds=8.0)
    print(f"\nconcurrency: {counts}")
