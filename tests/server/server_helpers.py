"""Shared helpers of the server tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import jsonschema
except ImportError:  # optional: the status check below still runs
    jsonschema = None

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


def check_documented(doc: dict[str, Any], method: str, path: str, response: Any) -> None:
    """Assert *response* has a status the OpenAPI document lists for the operation, and
    (when jsonschema is installed) a body that matches the documented schema."""
    operation = doc["paths"][path][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, (
        f"{method} {path} answered {response.status_code}, which the OpenAPI document "
        f"does not list ({sorted(operation['responses'])}): {response.text[:200]}")
    if jsonschema is None:
        return
    schema = documented["content"]["application/json"]["schema"]
    root = {**schema, "components": doc["components"]}
    jsonschema.Draft202012Validator(root).validate(response.json())
