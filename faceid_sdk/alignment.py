"""Face preprocessing shared by training, the server and the browser client.

One pipeline, everywhere:

1. **Detect** faces with dlib's HOG detector (public domain), upsampling once so that faces
   down to ~40 px are found.
2. **Locate five points** with dlib's public-domain 5-point predictor
   (``shape_predictor_5_face_landmarks.dat`` from ``face_recognition_models``): the outer and
   inner corner of each eye and the base of the nose. dlib's 68-point model is *not* used: it
   is not licensed for commercial use.
3. **Similarity transform** (rotation, uniform scale, translation; least squares, Umeyama
   1991) from those points onto :data:`DLIB5_TEMPLATE_112`, warped into a 112x112 crop.
4. **Resize** the 112x112 crop to the 96x96 model input with area interpolation.
5. **Normalize** pixels: RGB order, ``x / 127.5 - 1`` (range [-1, 1]), float32, NHWC.

Coordinates are pixels in the 112x112 crop, x to the right, y down, origin at the top-left
corner of the top-left pixel's centre (OpenCV's convention).

The training data (``celeba-aligned``) was aligned onto :data:`README_TEMPLATE_112` (eye
centres, nose tip, mouth corners) with a landmark model we may not ship. The 5-point model
finds other points, so :data:`DLIB5_TEMPLATE_112` was *calibrated*: the 5-point predictor was
run on the 4,792 aligned crops and its points averaged, so that a photo aligned by this
pipeline lands where the training crops are (residual in ``docs/model-card.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .errors import BackendUnavailableError

__all__ = [
    "CROP_SIZE",
    "DLIB5_TEMPLATE_112",
    "MODEL_INPUT_SIZE",
    "README_TEMPLATE_112",
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

#: The template of the aligned datasets: left eye, right eye (image left/right), nose tip,
#: left and right mouth corner, in the 112x112 crop (see /work/shared/data/README.md).
README_TEMPLATE_112: npt.NDArray[np.float64] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)

#: Where dlib's 5-point predictor finds its points on the aligned training crops, in dlib's
#: order: outer and inner corner of the eye on the image's right, outer and inner corner of
#: the eye on the image's left, base of the nose. Calibrated as the mean over the 4,588
#: celeba-aligned crops on which the HOG detector fires (it misses 4.3% of the tight crops):
#: per-crop RMS residual after a similarity fit to these points is 1.57 px (median 1.30,
#: 95th percentile 3.64) in the 112x112 crop; see docs/model-card.md.
DLIB5_TEMPLATE_112: npt.NDArray[np.float64] = np.array(
    [
        [80.56, 52.45],
        [66.26, 53.49],
        [31.07, 52.73],
        [45.32, 53.60],
        [55.80, 80.40],
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
    import cv2

    tpl = DLIB5_TEMPLATE_112 if template is None else np.asarray(template, np.float64)
    pts = np.asarray(points, np.float64)
    m = estimate_similarity(pts, tpl * (size / CROP_SIZE))
    mapped = pts @ m[:, :2].T + m[:, 2]
    residual = float(np.sqrt(((mapped - tpl * (size / CROP_SIZE)) ** 2).sum(1).mean()))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src: npt.NDArray[Any] = image
    if scale < 0.5:
        # Shrinking a big photo with bilinear sampling aliases; pre-shrink with area
        # averaging so the crop looks like the (area-resized) training crops.
        f = 1.0 / (2.0 * scale)
        h, w = image.shape[:2]
        src = cv2.resize(
            image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
        )
        m = m.copy()
        m[:, :2] *= f
    crop = cv2.warpAffine(
        src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(crop, np.uint8), residual


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
    """Read an image file as an RGB uint8 array, honouring EXIF orientation."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@attrs.frozen(eq=False)
class AlignedFace:
    """One detected face: the 96x96 model input, where it was found and how well it fit."""

    crop: npt.NDArray[np.uint8]
    box: tuple[int, int, int, int]
    points: npt.NDArray[np.float64]
    residual: float

    def __repr__(self) -> str:
        return f"<AlignedFace box={self.box} residual={self.residual:.2f}px>"


class FaceAligner:
    """Detects faces and aligns them onto the template; dlib models load on first use."""

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._detector: Any = None
        self._predictor: Any = None

    def _load(self) -> None:
        if self._detector is not None:
            return
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:
            raise BackendUnavailableError(
                f"face alignment needs dlib and face_recognition_models (missing: {exc.name}); "
                "install 'faceid-sdk[vision]'"
            ) from None
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        """Face boxes ``(left, top, right, bottom)``, largest first."""
        self._load()
        dets = self._detector(np.ascontiguousarray(image), self.upsample)
        boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def landmarks(
        self, image: npt.NDArray[np.uint8], box: Sequence[int]
    ) -> npt.NDArray[np.float64]:
        """dlib's five points inside *box*, as a (5, 2) array."""
        import dlib

        self._load()
        shape = self._predictor(np.ascontiguousarray(image), dlib.rectangle(*(int(v) for v in box)))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def align(self, image: npt.NDArray[np.uint8], box: Sequence[int]) -> AlignedFace:
        pts = self.landmarks(image, box)
        crop, residual = warp_to_template(image, pts)
        b = tuple(int(v) for v in box)
        return AlignedFace(crop_to_model_input(crop), (b[0], b[1], b[2], b[3]), pts, residual)

    def align_all(self, image: npt.NDArray[np.uint8]) -> list[AlignedFace]:
        """Every face in *image*, largest first; an empty list when there is none."""
        return [self.align(image, b) for b in self.detect(image)]

    def align_largest(self, image: npt.NDArray[np.uint8]) -> AlignedFace | None:
        """The largest face, or ``None`` when no face is found (callers must report it)."""
        boxes = self.detect(image)
        return self.align(image, boxes[0]) if boxes else None
