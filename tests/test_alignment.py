"""Alignment: the similarity fit, the calibrated template, and the dlib pipeline on photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceid_sdk.alignment import (
    DLIB5_TEMPLATE_112,
    README_TEMPLATE_112,
    crop_to_model_input,
    estimate_similarity,
    load_image,
    normalize_pixels,
    warp_to_template,
)

FIXTURES = Path(__file__).parent / "fixtures" / "faces"


@settings(max_examples=50, deadline=None)
@given(
    angle=st.floats(-np.pi, np.pi),
    scale=st.floats(0.1, 10),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
)
def test_similarity_recovers_a_known_transform(
    angle: float, scale: float, tx: float, ty: float
) -> None:
    """Umeyama's fit returns the exact rotation, scale and shift that generated the points."""
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])
    dst = README_TEMPLATE_112 @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(
        estimate_similarity(README_TEMPLATE_112, dst), m, atol=1e-6 * max(1, scale)
    )


def test_similarity_never_reflects() -> None:
    """A mirrored point set is fitted by a rotation, not a reflection (det > 0)."""
    mirrored = README_TEMPLATE_112 * [-1, 1]
    m = estimate_similarity(README_TEMPLATE_112, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("bad", [np.zeros((5, 3)), np.zeros((1, 2)), np.ones((5, 2))])
def test_similarity_rejects_unusable_points(bad: np.ndarray) -> None:
    """Wrong shapes and coincident points raise ValueError naming the argument."""
    with pytest.raises(ValueError, match="src"):
        estimate_similarity(bad, np.zeros_like(bad) if bad.shape == (5, 2) else np.zeros((5, 2)))


def test_calibrated_template_is_a_face() -> None:
    """dlib's eye corners sit at eye height of the README template, the nose base below it."""
    eyes_y = README_TEMPLATE_112[:2, 1].mean()
    assert np.all(np.abs(DLIB5_TEMPLATE_112[:4, 1] - eyes_y) < 4)
    assert README_TEMPLATE_112[2, 1] < DLIB5_TEMPLATE_112[4, 1] < README_TEMPLATE_112[3, 1]
    # image-right eye (dlib points 0, 1) lies right of the image-left eye (points 2, 3)
    assert (
        DLIB5_TEMPLATE_112[0, 0]
        > DLIB5_TEMPLATE_112[1, 0]
        > DLIB5_TEMPLATE_112[3, 0]
        > DLIB5_TEMPLATE_112[2, 0]
    )


def test_warp_puts_points_on_the_template() -> None:
    """Points given exactly on a scaled template warp with zero residual into a 112 crop."""
    img = np.zeros((400, 400, 3), np.uint8)
    crop, residual = warp_to_template(img, DLIB5_TEMPLATE_112 * 2.5 + 30)
    assert crop.shape == (112, 112, 3)
    assert residual < 1e-6
    assert crop_to_model_input(crop).shape == (96, 96, 3)


def test_pixel_normalization_range() -> None:
    """uint8 0 and 255 map to -1 and 1 exactly (x / 127.5 - 1), as float32."""
    out = normalize_pixels(np.array([0, 255], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.0, 1.0])


@pytest.fixture(scope="module")
def aligner():  # type: ignore[no-untyped-def]
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from faceid_sdk.alignment import FaceAligner

    return FaceAligner()


@pytest.mark.parametrize("photo", sorted((FIXTURES / "raw").glob("*.jpg")), ids=lambda p: p.name)
def test_aligns_a_real_photo(aligner, photo: Path) -> None:  # type: ignore[no-untyped-def]
    """A CelebA photo yields one 96x96 crop whose points fit the template within a few px."""
    face = aligner.align_largest(load_image(photo))
    assert face is not None
    assert face.crop.shape == (96, 96, 3) and face.crop.dtype == np.uint8
    assert face.residual < 6.0
    assert "residual" in repr(face)


def test_no_face_is_reported_as_none(aligner) -> None:  # type: ignore[no-untyped-def]
    """A blank image has no face: align_largest returns None for the caller to report."""
    assert aligner.align_largest(np.full((200, 200, 3), 127, np.uint8)) is None
    assert aligner.align_all(np.full((200, 200, 3), 127, np.uint8)) == []


def test_aligned_crop_resembles_the_training_crop(aligner) -> None:  # type: ignore[no-untyped-def]
    """Re-aligning an already aligned crop changes it little: the template is calibrated."""
    crop = load_image(next((FIXTURES / "aligned" / "7203").glob("*.jpg")))
    face = aligner.align(crop, (18, 28, 98, 109))
    direct = crop_to_model_input(crop).astype(np.float32)
    diff = np.abs(face.crop.astype(np.float32) - direct).mean()
    assert diff < 20, diff
