"""Forged vectors that sit close to many people (the zero vector, a gallery centroid) are
never a recognition or a verification."""

from __future__ import annotations

import base64
import struct
import warnings
import zlib

import numpy as np
from server_helpers import API, DIM, MODEL_ID

from faceid_sdk import FeatureCodec


def _hub_gallery(enroller, rng, people: int = 12) -> np.ndarray:
    """People whose templates share a strong common direction, like real face embeddings."""
    common = rng.standard_normal(DIM).astype(np.float32)
    common /= np.linalg.norm(common)
    rows = common + 0.12 * rng.standard_normal((people, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for i, row in enumerate(rows):
        enroller.enroll(f"p{i}", row)
    centroid = rows.mean(0)
    return centroid / np.linalg.norm(centroid)


def test_centroid_vector_is_ambiguous_for_identify_and_verify(enroller, client, codec, rng):
    """The normalized centroid is under the threshold of several people: identify answers
    'ambiguous' and verify refuses it for every claimed identity."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        centroid = _hub_gallery(enroller, rng)
    near_many = [c for c in enroller.candidates(centroid, k=12) if c.distance < 0.5]
    assert len(near_many) >= 3  # the attack would work without the defence
    forged = codec.encode_text(centroid)
    r = client.post(f"{API}/identify", json={"features": forged}).json()
    assert r["recognised"] is False and r["reason"] == "ambiguous"
    for c in near_many:
        r = client.post(f"{API}/verify", json={"identity": c.identity, "features": forged}).json()
        assert r == {"verified": False, "identity": c.identity, "reason": "ambiguous"}


def test_genuine_capture_still_verifies(enroller, client, codec, rng):
    """The defence does not refuse a capture close to its owner only."""
    row = rng.standard_normal(DIM).astype(np.float32)
    enroller.enroll("alice", row / np.linalg.norm(row))
    enroller.enroll("bob", -row / np.linalg.norm(row))
    probe = codec.encode_text(row / np.linalg.norm(row))
    r = client.post(f"{API}/verify", json={"identity": "alice", "features": probe}).json()
    assert r["verified"] is True and r["reason"] == "match"


def test_zero_and_unnormalized_vectors_are_refused(client, enroller, rng):
    """A well-formed payload carrying the zero vector (CRC fixed) is refused as 'norm'."""
    row = rng.standard_normal(DIM).astype(np.float32)
    enroller.enroll("alice", row / np.linalg.norm(row))
    good = FeatureCodec(MODEL_ID, DIM).encode(row / np.linalg.norm(row))
    header = good[: len(good) - 4 - 4 * DIM]
    for values in (np.zeros(DIM, np.float32), 3 * row):
        body = header + values.astype("<f4").tobytes()
        payload = body + struct.pack("<I", zlib.crc32(body))
        text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        r = client.post(f"{API}/identify", json={"features": text})
        assert r.status_code == 422 and r.json()["error"]["reason"] == "norm", r.text
