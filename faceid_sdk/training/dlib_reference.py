"""dlib's ResNet face descriptor as a reference row (evaluation and benchmarks only).

Needs the ``dlib`` extra (``dlib-bin``, ``face-recognition-models``). The models package's
``__init__`` imports ``pkg_resources``, which recent setuptools no longer has, so its files
are found from the package's location without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DlibDescriptor", "model_path"]

# Mean HOG box dlib finds on 112x112 template crops; used where HOG misses on a crop, so the
# landmark predictor still starts from the kind of box it was trained with.
FALLBACK_BOX_112 = (18, 28, 98, 109)


def model_path(name: str) -> str:
    """Path of one of ``face_recognition_models``' files (e.g. ``shape_predictor_5_face_
    landmarks.dat``); ImportError with what to install when the package is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dlib's models are missing: pip install -e '.[dlib]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ImportError(f"{path} is missing: reinstall face-recognition-models")
    return str(path)


class DlibDescriptor:
    """dlib's 128-d descriptor of 112x112 aligned crops: HOG (fallback box) and dlib's 5-point
    model on the crop, its 150x150 chip, the ResNet. Results cached in *cache* (``.npz``) by
    the crops' hash, since dlib is slow (~0.1 s a face) and does not change."""

    def __init__(self, cache: Path | None = None) -> None:
        import dlib

        self._dlib = dlib
        self._det = dlib.get_frontal_face_detector()
        self._sp = dlib.shape_predictor(model_path("shape_predictor_5_face_landmarks.dat"))
        self._fr = dlib.face_recognition_model_v1(
            model_path("dlib_face_recognition_resnet_model_v1.dat"))
        self._cache = cache

    def _compute(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        dlib = self._dlib
        chips = []
        for img in crops:
            img = np.ascontiguousarray(img)
            dets = self._det(img, 1)
            box = max(dets, key=lambda r: r.area()) if len(dets) else dlib.rectangle(
                *FALLBACK_BOX_112)
            chips.append(dlib.get_face_chip(img, self._sp(img, box), size=150, padding=0.25))
        out = np.asarray(self._fr.compute_face_descriptor(chips), np.float32)
        unit: npt.NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def __call__(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        key = hashlib.sha256(np.ascontiguousarray(crops).tobytes()).hexdigest()[:16]
        stored: dict[str, Any] = {}
        if self._cache is not None and self._cache.is_file():
            with np.load(self._cache) as z:
                stored = {k: z[k] for k in z.files}
        if key not in stored:
            stored[key] = self._compute(crops)
            if self._cache is not None:
                np.savez(self._cache, **stored)
        result: npt.NDArray[np.float32] = stored[key].astype(np.float32)
        return result
