"""Coercion of user-supplied vectors into what FAISS needs: C-contiguous float32 rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidFeatureError

#: How far the L2 norm of a feature vector may stray from 1.0 (float32 round-off and
#: float16 quantization stay far below this; an unnormalized vector is far above it).
NORM_TOLERANCE = 1e-2

FloatMatrix = npt.NDArray[np.float32]


def as_matrix(vectors: Any, dim: int, *, name: str = "vectors") -> FloatMatrix:
    """Return *vectors* (one vector or a 2-D array of rows) as a C-contiguous float32 matrix.

    Rejects wrong shapes and non-finite values with :class:`InvalidFeatureError`. Does not
    check norms: see :func:`check_unit_norm`.
    """
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidFeatureError(
            f"{name} must be numbers convertible to float32 (got {type(vectors).__name__}: {exc})",
            code="dtype",
        ) from None
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise InvalidFeatureError(
            f"{name} must have shape ({dim},) or (n, {dim}) (got {array.shape})",
            code="dimension",
        )
    if not np.isfinite(array).all():
        raise InvalidFeatureError(f"{name} must be finite (got NaN or Inf)", code="non_finite")
    return np.ascontiguousarray(array)


def check_unit_norm(matrix: FloatMatrix, *, name: str = "vectors") -> None:
    """Raise :class:`InvalidFeatureError` unless every row has an L2 norm within tolerance of 1.

    Features are L2-normalized by the model. The zero vector would lie at distance 1.0 from
    every unit template and match anyone under a loose threshold, so it is refused here.
    """
    norms = np.linalg.norm(matrix, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise InvalidFeatureError(
            f"{name} must be L2-normalized (norm 1 ± {NORM_TOLERANCE}); row {int(bad[0])} has "
            f"norm {float(norms[bad[0]]):.6g}: divide by np.linalg.norm(v) before sending",
            code="norm",
        )


def l2_normalize(vectors: Any) -> FloatMatrix:
    """Return rows scaled to unit L2 norm (zero rows are left as zeros and will be refused)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[np.newaxis, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(norms > 0, matrix / norms, 0.0)
    return np.ascontiguousarray(scaled, dtype=np.float32)
