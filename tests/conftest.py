from __future__ import annotations

import numpy as np
import pytest

from faceid_sdk.testing import unit_vectors

pytest_plugins = ["tests.postgres"]

#: Small dimension and a fake model id keep the core tests fast and model-free.
DIM = 16
MODEL_ID = "test-model-16"


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """Random L2-normalized float32 rows."""
    return unit_vectors(n, dim, seed=rng)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
