"""Alignment: the similarity fit, the template, and the OpenVINO pipeline on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceid_sdk.alignment import (
    TEMPLATE_112,
    crop_to_model_input,
    estimate_similarity,
    load_image,
    normalize_pixels,
    warp_to_template,
)
from faceid_sdk.errors import InvalidImageError

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
    dst = TEMPLATE_112 @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(
        estimate_similarity(TEMPLATE_112, dst), m, atol=1e-6 * max(1, scale)
    )


def test_similarity_never_reflects() -> None:
    """A mirrored point set is fitted by a rotation, not a reflection (det > 0)."""
    mirrored = TEMPLATE_112 * [-1, 1]
    m = estimate_similarity(TEMPLATE_112, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("bad", [np.zeros((5, 3)), np.zeros((1, 2)), np.ones((5, 2))])
def test_similarity_rejects_unusable_points(bad: np.ndarray) -> None:
    """Wrong shapes and coincident points raise ValueError naming the argument."""
    with pytest.raises(ValueError, match="src"):
        estimate_similarity(bad, np.zeros_like(bad) if bad.shape == (5, 2) else np.zeros((5, 2)))


def test_template_is_a_face() -> None:
    """Eyes level and apart, the nose tip below them, the mouth corners below the nose."""
    left, right, nose, mouth_l, mouth_r = TEMPLATE_112
    assert abs(left[1] - right[1]) < 1 and right[0] - left[0] > 30
    assert left[1] < nose[1] < mouth_l[1] and left[0] < nose[0] < right[0]
    assert mouth_l[0] < nose[0] < mouth_r[0]


def test_warp_puts_points_on_the_template() -> None:
    """Points given exactly on a scaled template warp with zero residual into a 112 crop."""
    img = np.zeros((400, 400, 3), np.uint8)
    crop, residual = warp_to_template(img, TEMPLATE_112 * 2.5 + 30)
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
    pytest.importorskip("openvino")
    from faceid_sdk.alignment import FaceAligner

    return FaceAligner()


RAW = sorted((FIXTURES / "raw").glob("*.jpg"))


@pytest.mark.parametrize("photo", RAW, ids=lambda p: p.name)
def test_aligns_a_real_photo(aligner, photo: Path) -> None:  # type: ignore[no-untyped-def]
    """A CelebA photo yields one 96x96 crop whose five points fit the template closely."""
    face = aligner.align_one(load_image(photo))
    assert face.crop.shape == (96, 96, 3) and face.crop.dtype == np.uint8
    assert face.residual < 6.0
    assert face.eye_distance > aligner.min_eye_distance
    assert 0.5 <= face.score <= 1.0
    left, right = face.points[0], face.points[1]
    assert left[0] < right[0], "image-left eye first, as in the template"
    assert "eyes=" in repr(face)


def test_no_face(aligner) -> None:  # type: ignore[no-untyped-def]
    """A blank image has no face: align_all is empty and align_one says so."""
    blank = np.full((200, 200, 3), 127, np.uint8)
    assert aligner.align_all(blank) == []
    with pytest.raises(InvalidImageError, match="no face found") as info:
        aligner.align_one(blank)
    assert info.value.code == "no_face" and info.value.exit_code == 65


def _canvas(
    photo: np.ndarray, scale: float, size: tuple[int, int], at: tuple[int, int]
) -> np.ndarray:
    import cv2

    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.full((*size, 3), 200, np.uint8)
    y, x = at
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def test_face_too_small(aligner) -> None:  # type: ignore[no-untyped-def]
    """A face whose eyes are closer than min_eye_distance is refused as too small."""
    photo = load_image(RAW[0])
    eyes = aligner.align_one(photo).eye_distance
    tiny = _canvas(photo, 12 / eyes, (400, 400), (150, 150))
    faces = aligner.align_all(tiny)
    assert faces and faces[0].eye_distance < aligner.min_eye_distance
    with pytest.raises(InvalidImageError, match="too small") as info:
        aligner.align_one(tiny)
    assert info.value.code == "too_small"


def test_several_faces_refused_or_resolved(aligner) -> None:  # type: ignore[no-untyped-def]
    """Two usable faces: refused by default; several='main' takes the centred one."""
    a, b = (load_image(p) for p in RAW[:2])
    height = max(a.shape[0], b.shape[0])
    side = np.full((height, a.shape[1] + b.shape[1] + 40, 3), 200, np.uint8)
    side[: a.shape[0], : a.shape[1]] = a
    side[: b.shape[0], a.shape[1] + 40 :] = b
    assert len(aligner.usable(aligner.align_all(side))) == 2
    with pytest.raises(InvalidImageError, match="2 faces found") as info:
        aligner.align_one(side)
    assert info.value.code == "several_faces"
    # One face centred, the same face again at the edge: 'main' picks the centred one.
    wide = np.full((a.shape[0], a.shape[1] * 4, 3), 200, np.uint8)
    x0 = wide.shape[1] // 2 - a.shape[1] // 2
    wide[:, x0 : x0 + a.shape[1]] = a
    wide[:, -a.shape[1] :] = a
    main = aligner.align_one(wide, several="main")
    centre = (main.box[0] + main.box[2]) / 2
    assert abs(centre - wide.shape[1] / 2) < a.shape[1] / 2


def test_not_an_image(tmp_path: Path, aligner) -> None:  # type: ignore[no-untyped-def]
    """Bytes that are no image, and arrays that are no RGB image, are refused clearly."""
    bad = tmp_path / "notimage.jpg"
    bad.write_text("hello")
    with pytest.raises(InvalidImageError, match="not an image") as info:
        load_image(bad)
    assert info.value.code == "not_image"
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidImageError, match="uint8 RGB"):
        aligner.align_all(np.zeros((10, 10), np.float32))


def test_aligned_crop_is_reproduced(aligner) -> None:  # type: ignore[no-untyped-def]
    """Re-aligning the dataset's aligned crops lands the template points within ~1-2 px:
    the pipeline makes the crops the model was trained on."""
    shifts = []
    for path in sorted((FIXTURES / "aligned").rglob("*.jpg")):
        crop = load_image(path)
        padded = np.pad(crop, ((56, 56), (56, 56), (0, 0)), mode="edge")
        face = aligner.align_one(padded)
        m = estimate_similarity(face.points - 56, TEMPLATE_112)
        moved = TEMPLATE_112 @ m[:, :2].T + m[:, 2]
        shifts.append(float(np.sqrt(((moved - TEMPLATE_112) ** 2).sum(1).mean())))
    assert np.median(shifts) < 2.0, shifts
    assert max(shifts) < 4.0, shifts
