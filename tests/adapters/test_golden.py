"""The golden file is consistent and small, and its split makes sense."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def test_golden_faces_match_their_description(golden: Any) -> None:
    """Faces load with the shape and SHA-256 the JSON records (checked by Golden.load)."""
    assert golden.faces.dtype == np.uint8
    assert golden.faces.shape[1:] == (96, 96, 3)
    assert len(golden.labels) == len(golden.faces)


def test_golden_split_enrolls_and_queries_disjoint_faces(golden: Any) -> None:
    """Enrolled and query faces are disjoint; queries include people never enrolled."""
    assert not set(golden.enroll) & set(golden.query)
    enrolled = {golden.labels[i] for i in golden.enroll}
    assert any(golden.labels[i] not in enrolled for i in golden.query)
    assert any(golden.labels[i] in enrolled for i in golden.query)


def test_golden_files_stay_small(golden: Any) -> None:
    """The fixture stays under 300 KB (it is committed and read by Node too)."""
    size = golden.faces_path.stat().st_size + golden.path.stat().st_size
    assert size < 300_000


def test_tolerances_cover_every_precision(golden: Any) -> None:
    """float32, float16 and uint8 each have tolerances, tighter for more bits."""
    t = golden.tolerances
    assert set(t) == {"float32", "float16", "uint8"}
    assert t["float32"].min_cosine > t["float16"].min_cosine > t["uint8"].min_cosine
    doc = json.loads(golden.path.read_text())
    assert doc["pixel_normalization"] == "x / 127.5 - 1"
