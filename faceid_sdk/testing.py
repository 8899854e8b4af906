"""Helpers for testing code that uses faceid-sdk (shipped for your tests too).

    from faceid_sdk.testing import unit_vectors, FakeExtractor

Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["FakeExtractor", "near", "unit_vectors"]


def unit_vectors(
    n: int, dim: int, *, seed: int | np.random.Generator = 0
) -> npt.NDArray[np.float32]:
    """``n`` random L2-normalized float32 vectors of dimension ``dim`` (deterministic per seed)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def near(vector: npt.ArrayLike, distance: float, *, seed: int = 0) -> npt.NDArray[np.float32]:
    """A unit vector at exactly Euclidean ``distance`` (0 to 2) from the unit ``vector``."""
    v = np.asarray(vector, dtype=np.float64)
    v = v / np.linalg.norm(v)
    rng = np.random.default_rng(seed)
    other = rng.standard_normal(v.shape)
    other -= other.dot(v) * v
    other /= np.linalg.norm(other)
    cos = 1.0 - distance**2 / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors
    result = cos * v + np.sqrt(max(0.0, 1.0 - cos**2)) * other
    unit: npt.NDArray[np.float32] = (result / np.linalg.norm(result)).astype(np.float32)
    return unit


class FakeExtractor:
    """A deterministic stand-in for a real extractor: same pixels, same vector.

    Satisfies :class:`faceid_sdk.extractors.Extractor`; the vector is derived from a hash
    of the image bytes, so it says nothing about faces but is stable across runs.
    """

    def __init__(self, dim: int = 128, model_id: str = "fake-extractor") -> None:
        self._dim = dim
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def embed_aligned(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[np.newaxis]
        rows = []
        for face in faces:
            seed = int.from_bytes(hashlib.sha256(face.tobytes()).digest()[:8], "little")
            rows.append(unit_vectors(1, self._dim, seed=seed)[0])
        return np.stack(rows) if rows else np.empty((0, self._dim), np.float32)
