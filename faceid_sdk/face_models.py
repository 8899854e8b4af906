"""The shipped face detector and five-point landmark model, run with OpenVINO.

Both are Intel Open Model Zoo models (Apache-2.0), shipped as package files in
``faceid_sdk/models/face/`` and loaded from there, never from anywhere else:

``face-detection-retail-0004``
    SqueezeNet-light + SSD; input 1x3xSxS BGR 0..255 (the whole image, resized without
    keeping the aspect ratio); output 200 boxes ``[image, label, confidence, x0, y0, x1, y1]``
    in coordinates normalized to the image. Published at S = 300; the SSD reshapes, and a photo
    gets the smallest of :data:`DETECTOR_SIZES` that is at least half its longer side (a
    112-px or an LFW photo runs at 160, a 640x480 camera frame at 300): the smallest face worth
    recognising (eyes 20 px apart, a box of about 55 px) still spans 27 px or more of the
    detector's input. Against the earlier rule (0.85 of the longer side) it found a face in
    the same 447 of 450 LFW, Pins and CelebA photos at 2.1x less time per photo.
``landmarks-regression-retail-0009``
    input 1x3x48x48 BGR 0..255 face crop; output the five points of the alignment template
    (eye centres, nose tip, mouth corners), normalized to the crop.

Only this module knows the models' tensor layouts; :mod:`faceid_sdk.alignment` sees boxes and
points in image pixels.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import BackendUnavailableError
from .resample import warp

__all__ = ["MODELS_DIR", "OpenVinoFaceModels", "openvino_cpu_config"]

MODELS_DIR = Path(__file__).parent / "models" / "face"
DETECTOR_FILE = "face-detection-retail-0004.xml"
LANDMARKS_FILE = "landmarks-regression-retail-0009.xml"
DETECTOR_SIZES = (160, 224, 300)
#: The detector's input is the smallest of DETECTOR_SIZES at least this share of the photo's
#: longer side (clients/web/face_core.js has the same rule).
DETECTOR_COVERAGE = 0.5
LANDMARKS_SIZE = 48


def _core() -> Any:
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(
            "face detection needs OpenVINO (missing: openvino); install 'faceid-sdk[vision]'"
        ) from None
    return openvino.Core()


def _to_nchw_bgr(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(rgb[None, :, :, ::-1].transpose(0, 3, 1, 2), np.float32)


def openvino_cpu_config(threads: int) -> dict[str, Any]:
    """How every OpenVINO model of the project is compiled: *threads* CPU threads, one
    inference at a time, float32.

    On CPUs with AMX or AVX-512 BF16, OpenVINO would otherwise run in bfloat16, which moves
    the five points by 1-2 % of the eye distance and differs from machine to machine (pinned,
    every server, every training crop and the browser, TF.js in float32, find the same points
    in the same photo), and it is not even faster everywhere: 1.7x faster on a CPU with AMX,
    1.5x slower for the teacher on one with AVX-512 BF16 only (9.1 against 6.1 ms a face).
    """
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"}


class OpenVinoFaceModels:
    """Detector + landmarks, compiled once per process on first use, one inference at a time.

    *threads* bounds OpenVINO's CPU threads (1 keeps a server's request threads and a training
    pipeline's workers from oversubscribing the cores).
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._core: Any = None
        self._det: dict[int, Any] = {}
        self._lmk: Any = None

    def _config(self) -> dict[str, Any]:
        return openvino_cpu_config(self.threads)

    def _load(self) -> None:
        if self._lmk is not None:
            return
        for name in (DETECTOR_FILE, LANDMARKS_FILE):
            if not (MODELS_DIR / name).is_file():
                raise BackendUnavailableError(
                    f"the face model {name} is missing from {MODELS_DIR}; reinstall faceid-sdk"
                )
        self._core = _core()
        self._lmk = self._core.compile_model(
            str(MODELS_DIR / LANDMARKS_FILE), "CPU", self._config()
        )

    def _detector(self, size: int) -> Any:
        if size not in self._det:
            model = self._core.read_model(str(MODELS_DIR / DETECTOR_FILE))
            model.reshape([1, 3, size, size])
            self._det[size] = self._core.compile_model(model, "CPU", self._config())
        return self._det[size]

    @staticmethod
    def detector_size(width: int, height: int) -> int:
        """The detector input side used for a photo of this size."""
        need = DETECTOR_COVERAGE * max(width, height)
        return next((s for s in DETECTOR_SIZES if s >= need), DETECTOR_SIZES[-1])

    def detect(
        self, image: npt.NDArray[np.uint8], min_confidence: float
    ) -> list[tuple[tuple[float, float, float, float], float]]:
        """``((x0, y0, x1, y1), confidence)`` in image pixels, for every box above
        *min_confidence*, in the detector's order."""
        import cv2

        h, w = image.shape[:2]
        size = self.detector_size(w, h)
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
        small = cv2.resize(image, (size, size), interpolation=interp)
        with self._lock:
            self._load()
            out = self._detector(size)(_to_nchw_bgr(np.asarray(small, np.uint8)))[0]
        rows = np.asarray(out).reshape(-1, 7)
        rows = rows[(rows[:, 2] >= min_confidence) & (rows[:, 0] >= 0)]
        found = []
        for _, _, conf, x0, y0, x1, y1 in rows:
            box = (
                float(np.clip(x0, 0, 1) * w),
                float(np.clip(y0, 0, 1) * h),
                float(np.clip(x1, 0, 1) * w),
                float(np.clip(y1, 0, 1) * h),
            )
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                found.append((box, float(conf)))
        return found

    def landmarks(
        self, image: npt.NDArray[np.uint8], roi: tuple[float, float, float, float]
    ) -> npt.NDArray[np.float64]:
        """The five template points inside the square *roi* ``(x0, y0, x1, y1)``, in image
        pixels (the roi may extend past the image: the outside is edge-replicated)."""
        x0, y0, x1, y1 = roi
        side = max(x1 - x0, y1 - y0)
        scale = LANDMARKS_SIZE / side
        # An affine crop (not slicing) so that a roi past the border keeps its geometry.
        m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        crop = warp(image, m, LANDMARKS_SIZE)
        with self._lock:
            self._load()
            out = self._lmk(_to_nchw_bgr(np.asarray(crop, np.uint8)))[0]
        pts = np.asarray(out, np.float64).reshape(5, 2)
        return np.asarray(pts * side + np.array([x0, y0]), np.float64)
