from __future__ import annotations

import numpy as np
import pytest

DIM = 16
MODEL_ID = "test-model-16"


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """Random L2-normalized float32 rows."""
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
