"""What every backend shares: input checks, pixel normalization and the photo path.

Nothing here imports a deep-learning framework: the ONNX backend must load with
``faceid-sdk[onnx]`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceid_sdk.alignment import MODEL_INPUT_SIZE, normalize_pixels

__all__ = ["DEFAULT_BATCH_SIZE", "PhotoMixin", "as_faces", "batches"]

#: Faces per forward pass. 32 amortizes per-call overhead on every backend measured
#: (docs/backends.md) while keeping activations small (~30 MB).
DEFAULT_BATCH_SIZE = 32


def as_faces(faces: Any, size: int = MODEL_INPUT_SIZE) -> npt.NDArray[np.uint8]:
    """Return *faces* as a C-contiguous ``(n, size, size, 3)`` uint8 array, or raise ValueError.

    One face ``(size, size, 3)`` becomes a batch of one. Floats are refused rather than
    guessed at: a [0, 1] image and a [-1, 1] image look alike and give silently wrong
    vectors.
    """
    array = np.asarray(faces)
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.dtype != np.uint8:
        raise ValueError(
            f"'faces' must be uint8 RGB pixels (got dtype {array.dtype}); pass the aligned "
            "crops as returned by faceid_sdk.alignment, not normalized floats"
        )
    if array.ndim != 4 or array.shape[1:] != (size, size, 3):
        raise ValueError(
            f"'faces' must have shape (n, {size}, {size}, 3) or ({size}, {size}, 3) "
            f"(got {array.shape}); align photos with faceid_sdk.alignment.FaceAligner first"
        )
    return np.ascontiguousarray(array)


def batches(n: int, batch_size: int) -> Iterable[slice]:
    """Consecutive slices of at most *batch_size* covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"'batch_size' must be an int >= 1 (got {batch_size!r})")
    return batch_size


class PhotoMixin:
    """Photos in, vectors out, for any class that has ``embed_aligned`` and ``dim``.

    The photo path (detect, 5 points, similarity warp, resize) is the one the browser and
    training use (:mod:`faceid_sdk.alignment`); it needs ``faceid-sdk[vision]``.
    """

    dim: int
    _aligner: Any = None

    def embed_aligned(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _align(self, image: npt.NDArray[np.uint8], where: str) -> npt.NDArray[np.uint8]:
        from faceid_sdk.alignment import FaceAligner

        if self._aligner is None:
            self._aligner = FaceAligner()
        crop: npt.NDArray[np.uint8] = self._aligner.align_one(image, where=where).crop
        return crop

    def embed_images(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """One vector per RGB uint8 photo showing one face; a photo without exactly one usable
        face raises :class:`~faceid_sdk.errors.InvalidImageError` (``no_face``, ``too_small``,
        ``several_faces``)."""
        crops = [self._align(np.asarray(im), f"image {i}") for i, im in enumerate(images)]
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_aligned(np.stack(crops))

    def embed_paths(self, paths: Sequence[str | Path]) -> npt.NDArray[np.float32]:
        """One vector per photo file, as :meth:`embed_images` (and ``not_image`` for files
        that are not images). To skip and report unusable photos instead of raising, use
        :func:`faceid_sdk.photos.embed_photos`."""
        from faceid_sdk.alignment import load_image

        crops = [self._align(load_image(p), str(p)) for p in paths]
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_aligned(np.stack(crops))


def normalized(faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The model's input: ``x / 127.5 - 1`` (see :mod:`faceid_sdk.alignment`)."""
    return np.ascontiguousarray(normalize_pixels(faces))
