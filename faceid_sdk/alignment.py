"""Face preprocessing shared by training, the server and the browser client.

One pipeline, everywhere:

1. **Detect** faces with Intel's ``face-detection-retail-0004`` (Apache-2.0, shipped in the
   package, run with OpenVINO; :mod:`faceid_sdk.face_models`).
2. **Locate five points** with ``landmarks-regression-retail-0009`` on the detector's box made
   square: the eye centres, the nose tip and the mouth corners, which are the very points of
   the alignment template.
3. **Similarity transform** (rotation, uniform scale, translation; least squares, Umeyama
   1991) from those points onto :data:`TEMPLATE_112`, warped into a 112x112 crop.
4. **Resize** the 112x112 crop to the 96x96 model input with area interpolation.
5. **Normalize** pixels: RGB order, ``x / 127.5 - 1`` (range [-1, 1]), float32, NHWC.

Coordinates are pixels in the 112x112 crop, x to the right, y down, origin at the top-left
corner of the top-left pixel's centre (OpenCV's convention).

:data:`TEMPLATE_112` is the template of the aligned datasets (``celeba-aligned``,
``glint-aligned``), so their crops and this pipeline's agree: re-aligning 400 aligned CelebA
crops with it moves the template points by 1.2 px median (2.9 px at the 95th percentile) in
the 112x112 crop (``docs/model-card.md``).

Which face a photo means is decided here, once, for every caller (:meth:`FaceAligner.align_one`):
faces whose eyes are closer than :attr:`FaceAligner.min_eye_distance` pixels do not count;
no usable face, or several where the caller cannot know which one is meant, is refused with
:class:`~faceid_sdk.errors.InvalidImageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .errors import InvalidImageError
from .resample import warp

__all__ = [
    "CROP_SIZE",
    "MODEL_INPUT_SIZE",
    "SEVERAL_FACES",
    "TEMPLATE_112",
    "AlignedFace",
    "FaceAligner",
    "crop_to_model_input",
    "estimate_similarity",
    "load_image",
    "normalize_pixels",
    "warp_to_template",
]

CROP_SIZE = 112
MODEL_INPUT_SIZE = 96

#: The alignment template: left eye centre, right eye centre (image left/right), nose tip,
#: left and right mouth corner, in the 112x112 crop. The aligned datasets were made with it
#: (/work/shared/data/README.md) and the shipped landmark model finds exactly these points.
TEMPLATE_112: npt.NDArray[np.float64] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def estimate_similarity(src: npt.ArrayLike, dst: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Least-squares similarity transform (Umeyama 1991) mapping *src* points onto *dst*.

    Returns the 2x3 matrix ``M`` with ``dst ≈ M @ [x, y, 1]``. Reflections are excluded.
    """
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ValueError(
            f"'src' and 'dst' must both be (n, 2) point arrays with n >= 2 "
            f"(got {s.shape} and {d.shape})"
        )
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    var_s = (sc**2).sum() / len(s)
    if var_s <= 1e-12:
        raise ValueError("'src' points must not all coincide (got zero spread)")
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign)) / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def warp_to_template(
    image: npt.NDArray[np.uint8],
    points: npt.ArrayLike,
    template: npt.ArrayLike | None = None,
    size: int = CROP_SIZE,
) -> tuple[npt.NDArray[np.uint8], float]:
    """Warp *image* so that *points* land on *template*; returns the crop and the RMS residual
    (pixels in the crop) of the points after the transform."""
    tpl = TEMPLATE_112 if template is None else np.asarray(template, np.float64)
    pts = np.asarray(points, np.float64)
    m = estimate_similarity(pts, tpl * (size / CROP_SIZE))
    mapped = pts @ m[:, :2].T + m[:, 2]
    residual = float(np.sqrt(((mapped - tpl * (size / CROP_SIZE)) ** 2).sum(1).mean()))
    return warp(image, m, size), residual


def crop_to_model_input(crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Resize a 112x112 aligned crop (uint8 RGB) to the 96x96 model input (area interpolation)."""
    import cv2

    if crop.shape[:2] == (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE):
        return crop
    out = cv2.resize(crop, (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.asarray(out, np.uint8)


def normalize_pixels(images: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """uint8 RGB -> float32 ``x / 127.5 - 1``: the model's input normalization."""
    return np.asarray(images, np.float32) / np.float32(127.5) - np.float32(1.0)


def load_image(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read an image file as an RGB uint8 array, honouring EXIF orientation.

    A file that is not a readable image raises :class:`InvalidImageError` (``code``
    ``"not_image"``); a missing one raises :class:`FileNotFoundError`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise InvalidImageError(
            f"{path} is not an image that can be read ({type(exc).__name__}): "
            "give a JPEG, PNG, BMP, TIFF or WebP photo",
            code="not_image",
        ) from None


@attrs.frozen(eq=False)
class AlignedFace:
    """One detected face: the 96x96 model input, where it was found and how well it fit.

    ``box`` is ``(left, top, right, bottom)`` and ``points`` the five template points, both in
    the photo's pixels; ``eye_distance`` is the distance between the eye centres there.
    """

    crop: npt.NDArray[np.uint8]
    box: tuple[int, int, int, int]
    points: npt.NDArray[np.float64]
    residual: float
    score: float = 1.0

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.points[1] - self.points[0])))

    def __repr__(self) -> str:
        return (
            f"<AlignedFace box={self.box} eyes={self.eye_distance:.0f}px "
            f"residual={self.residual:.2f}px>"
        )


#: How :meth:`FaceAligner.align_one` treats a photo with several usable faces.
SEVERAL_FACES = ("refuse", "main")


class FaceAligner:
    """Detects faces and aligns them onto :data:`TEMPLATE_112`; models load on first use.

    Args:
        min_confidence: detector confidence below which a box is not a face.
        min_eye_distance: eye centres closer than this (photo pixels) make a face too small
            to recognise (the template has 35 px in the 112x112 crop); such faces are ignored
            when counting faces, as the browser client does.
        threads: OpenVINO CPU threads.
    """

    def __init__(
        self, min_confidence: float = 0.5, min_eye_distance: float = 20.0, threads: int = 1
    ) -> None:
        from .face_models import OpenVinoFaceModels

        if not 0.0 < min_confidence < 1.0:
            raise ValueError(f"'min_confidence' must be in (0, 1) (got {min_confidence!r})")
        if min_eye_distance < 0:
            raise ValueError(f"'min_eye_distance' must be >= 0 (got {min_eye_distance!r})")
        self.min_confidence = min_confidence
        self.min_eye_distance = min_eye_distance
        self._models = OpenVinoFaceModels(threads)

    def __repr__(self) -> str:
        return (
            f"<FaceAligner min_confidence={self.min_confidence} "
            f"min_eye_distance={self.min_eye_distance}>"
        )

    def align_all(self, image: npt.NDArray[np.uint8]) -> list[AlignedFace]:
        """Every face in *image* (small ones included), largest first; ``[]`` when none."""
        image = _as_rgb(image)
        faces = []
        for (x0, y0, x1, y1), score in self._models.detect(image, self.min_confidence):
            cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
            roi = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            points = self._models.landmarks(image, roi)
            crop, residual = warp_to_template(image, points)
            box = (round(x0), round(y0), round(x1), round(y1))
            faces.append(AlignedFace(crop_to_model_input(crop), box, points, residual, score))
        return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def usable(self, faces: Sequence[AlignedFace]) -> list[AlignedFace]:
        """The faces large enough to recognise."""
        return [f for f in faces if f.eye_distance >= self.min_eye_distance]

    def align_one(
        self, image: npt.NDArray[np.uint8], *, several: str = "refuse", where: str = "the image"
    ) -> AlignedFace:
        """The one face *image* is about, or :class:`InvalidImageError` saying why there is none.

        *several*: ``"refuse"`` (the caller cannot know which face is meant: an identify or
        enroll request) or ``"main"`` (the photo is known to show one person, as in a labelled
        dataset: the face nearest the centre among those at least half the largest one's area).
        """
        if several not in SEVERAL_FACES:
            raise ValueError(f"'several' must be one of {SEVERAL_FACES} (got {several!r})")
        faces = self.align_all(image)
        usable = self.usable(faces)
        if not faces:
            raise InvalidImageError(
                f"no face found in {where}: use a photo where one face is clearly visible",
                code="no_face",
            )
        if not usable:
            raise InvalidImageError(
                f"face too small in {where} (eyes {faces[0].eye_distance:.0f} px apart, need "
                f"{self.min_eye_distance:.0f}): use a closer or larger photo",
                code="too_small",
            )
        if len(usable) == 1:
            return usable[0]
        if several == "refuse":
            raise InvalidImageError(
                f"{len(usable)} faces found in {where}: use a photo of one person only",
                code="several_faces",
            )
        return _main_face(usable, image.shape[1], image.shape[0])


def _main_face(faces: Sequence[AlignedFace], width: int, height: int) -> AlignedFace:
    def area(f: AlignedFace) -> int:
        return (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])

    largest = max(area(f) for f in faces)
    big = [f for f in faces if area(f) >= largest / 2]
    return min(
        big,
        key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - width / 2,
                               (f.box[1] + f.box[3]) / 2 - height / 2),
    )


def _as_rgb(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InvalidImageError(
            "an image must be an (height, width, 3) uint8 RGB array "
            f"(got shape {array.shape} of {array.dtype}); load files with load_image()",
            code="not_image",
        )
    return array
