"""Shared helpers of the server tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import numpy as np

DIM = 16
MODEL_ID = "test-model-16"
API = "/api/v1"


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(vector: np.ndarray, rng: np.random.Generator, scale: float = 0.03) -> np.ndarray:
    """Another capture of the same face: a small perturbation, renormalized."""
    moved = vector + scale * rng.standard_normal(vector.shape).astype(np.float32)
    return (moved / np.linalg.norm(moved)).astype(np.float32)
