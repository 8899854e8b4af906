"""One store, one answer: the SDK, the CLI and the server decide with one policy.

A "hub" (a vector under the threshold of two people) is the case that used to split them:
the CLI verified it, the server refused it, and ``Matcher(reject_ambiguous=True).verify``
accepted it. Here every surface is asked about the same hub, a genuine probe and a
stranger, with the default policy and with ``--allow-ambiguous``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk import Enroller, FeatureCodec
from faceid_sdk.cli import main
from faceid_sdk.testing import near, unit_vectors

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from faceid_sdk.server import ServerSettings, create_app

MODEL_ID = "one-decision-test"
DIM = 16
THRESHOLD = 0.8


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "faces.db"
    alice = unit_vectors(1, DIM, seed=1)[0]
    bob = near(alice, 0.6, seed=2)
    with Enroller(path, MODEL_ID, DIM) as enroller:
        enroller.save_calibrated_threshold(THRESHOLD, "test")
        enroller.enroll("alice", alice)
        enroller.enroll("bob", bob)
        enroller.enroll("carol", unit_vectors(1, DIM, seed=3)[0])
    return path


def _probes() -> dict[str, np.ndarray]:
    alice = unit_vectors(1, DIM, seed=1)[0]
    bob = near(alice, 0.6, seed=2)
    hub = (alice + bob) / np.linalg.norm(alice + bob)
    return {
        "hub": hub.astype(np.float32),
        "genuine": near(unit_vectors(1, DIM, seed=3)[0], 0.2, seed=4),
        "stranger": unit_vectors(1, DIM, seed=99)[0],
    }


def _sdk(store: Path, allow: bool, probe: np.ndarray, claim: str | None) -> tuple[bool, str]:
    with Enroller.open(store, reject_ambiguous=not allow) as enroller:
        result = enroller.identify(probe) if claim is None else enroller.verify(probe, claim)
    return result.accepted, result.reason


def _cli(store: Path, tmp: Path, allow: bool, probe: np.ndarray,
         claim: str | None) -> tuple[bool, str]:
    vectors = tmp / "probe.npy"
    np.save(vectors, probe[np.newaxis, :])
    command = ["identify"] if claim is None else ["verify", claim]
    args = [*command, "--vectors", str(vectors), "--store", str(store), "--json"]
    if allow:
        args.append("--allow-ambiguous")
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    row = json.loads(result.stdout)[0]
    assert result.exit_code == (0 if row["accepted"] else 1)
    return row["accepted"], row["reason"]


def _http(store: Path, allow: bool, probe: np.ndarray, claim: str | None) -> tuple[bool, str]:
    with Enroller.open(store, reject_ambiguous=not allow) as enroller, \
            TestClient(create_app(enroller, settings=ServerSettings(rate_per_second=None))) as c:
        payload = FeatureCodec(MODEL_ID, DIM).encode_text(probe)
        if claim is None:
            body = c.post("/api/v1/identify", json={"features": payload}).json()
            return body["recognised"], body["reason"]
        body = c.post("/api/v1/verify", json={"features": payload, "identity": claim}).json()
        return body["verified"], body["reason"]


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allow-ambiguous"])
@pytest.mark.parametrize(("probe", "claim"), [
    ("hub", None), ("hub", "alice"), ("hub", "bob"), ("genuine", None), ("genuine", "carol"),
    ("stranger", None), ("stranger", "alice"),
])
def test_every_surface_gives_the_same_answer(store: Path, tmp_path: Path, allow: bool,
                                             probe: str, claim: str | None) -> None:
    vector = _probes()[probe]
    sdk = _sdk(store, allow, vector, claim)
    assert _cli(store, tmp_path, allow, vector, claim) == sdk
    assert _http(store, allow, vector, claim) == sdk
    expected = {
        "hub": (True, "match") if allow else (False, "ambiguous"),
        "genuine": (True, "match"),
        "stranger": (False, "no_match"),
    }[probe]
    assert sdk == expected


def test_opening_with_another_policy_keeps_the_index(store: Path) -> None:
    """Settings are not index data: the CLI's and the server's policies share one index file."""
    for allow in (False, True, False):
        with Enroller.open(store, reject_ambiguous=not allow) as enroller:
            assert enroller.index_status == "ok"
    with Enroller.open(store, runner_up=True, threshold=0.3) as enroller:
        assert enroller.index_status == "ok" and enroller.policy.threshold == 0.3
