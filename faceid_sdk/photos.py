"""Photos in, vectors out: the one road from files and folders to feature vectors.

Every command that reads photos (``embed``, ``enroll``/``identify``/``verify`` with photos,
``calibrate``, ``payload``) goes through :func:`embed_photos`, so they load the same
extractor, align the same way (:class:`faceid_sdk.alignment.FaceAligner`) and refuse the same
photos for the same reasons. A photo that cannot be used is never dropped silently: it comes
back in :attr:`PhotoVectors.skipped` with its reason, and the caller reports it.

Needs ``faceid-sdk[vision]`` for decoding and alignment, and an extractor backend
(``faceid-sdk[onnx]`` or ``[tensorflow]``) for the vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .errors import InvalidImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "PhotoVectors",
    "Skipped",
    "align_photos",
    "collect_images",
    "embed_photos",
]

#: File name endings taken from folders (a file named explicitly is always tried).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


@attrs.frozen
class Skipped:
    """A file that gave no vector: where, a stable ``code`` and a sentence for people."""

    path: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@attrs.frozen(eq=False)
class PhotoVectors:
    """One unit vector per usable photo, in input order, and every photo that was skipped."""

    vectors: npt.NDArray[np.float32]
    paths: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    model_id: str

    def __repr__(self) -> str:
        return (
            f"<PhotoVectors {len(self.paths)} vectors of {self.model_id}, "
            f"{len(self.skipped)} skipped>"
        )

    def __len__(self) -> int:
        return len(self.paths)

    def require_some(self) -> PhotoVectors:
        """Return self, or raise :class:`InvalidImageError` when no photo gave a vector (with
        the one file's own reason when a single file was given)."""
        if len(self):
            return self
        if len(self.skipped) == 1:
            only = self.skipped[0]
            raise InvalidImageError(only.reason, code=only.code)
        codes = sorted({s.code for s in self.skipped})
        raise InvalidImageError(
            f"no usable face in the {len(self.skipped)} file(s) given (reasons: "
            f"{', '.join(codes) or 'no files'}): use clear photos of one face each",
            code=codes[0] if len(codes) == 1 else "no_face",
        )


def collect_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Expand *paths* (files and folders, searched recursively, sorted) into image files.

    Files in folders whose names do not end like an image are skipped with code
    ``"not_image"`` (hidden files are ignored); a path that does not exist is skipped with
    ``"missing"``.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                if any(part.startswith(".") for part in f.relative_to(p).parts):
                    continue
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                else:
                    skipped.append(Skipped(str(f), "not_image", "not an image file name"))
        elif p.is_file():
            files.append(p)
        else:
            skipped.append(Skipped(str(p), "missing", "no such file or folder"))
    return files, skipped


def _aligned_crop(image: npt.NDArray[np.uint8], where: str) -> npt.NDArray[np.uint8]:
    from .alignment import CROP_SIZE, MODEL_INPUT_SIZE, crop_to_model_input

    if image.shape[:2] not in ((CROP_SIZE, CROP_SIZE), (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)):
        raise InvalidImageError(
            f"{where} is {image.shape[1]}x{image.shape[0]}, not an aligned "
            f"{CROP_SIZE}x{CROP_SIZE} or {MODEL_INPUT_SIZE}x{MODEL_INPUT_SIZE} crop: "
            "drop --aligned to detect and align photos",
            code="not_aligned",
        )
    return crop_to_model_input(image)


def align_photos(
    files: Sequence[str | Path],
    *,
    aligned: bool = False,
    several: str = "refuse",
    aligner: Any = None,
) -> tuple[npt.NDArray[np.uint8], list[str], list[Skipped]]:
    """96x96 model inputs of *files*: ``(crops, kept_paths, skipped)``.

    *aligned*: the files are crops already on the template (112x112 or 96x96); anything else
    is skipped with ``"not_aligned"``. Otherwise each photo goes through *aligner* (a
    :class:`~faceid_sdk.alignment.FaceAligner`, made on first need), with *several* as in
    :meth:`~faceid_sdk.alignment.FaceAligner.align_one`.
    """
    from .alignment import FaceAligner, load_image

    crops, kept, skipped = [], [], []
    for f in files:
        try:
            image = load_image(f)
            if aligned:
                crops.append(_aligned_crop(image, str(f)))
            else:
                if aligner is None:
                    aligner = FaceAligner()
                crops.append(aligner.align_one(image, several=several, where=str(f)).crop)
            kept.append(str(f))
        except InvalidImageError as exc:
            skipped.append(Skipped(str(f), exc.code, str(exc)))
        except OSError as exc:
            skipped.append(Skipped(str(f), "unreadable", exc.strerror or str(exc)))
    stack = np.stack(crops) if crops else np.zeros((0, 96, 96, 3), np.uint8)
    return stack, kept, skipped


def embed_photos(
    paths: Iterable[str | Path],
    extractor: Any = None,
    *,
    aligned: bool = False,
    several: str = "refuse",
    batch_size: int = 64,
) -> PhotoVectors:
    """Vectors of every usable photo under *paths* (files or folders).

    *extractor*: any :class:`~faceid_sdk.extractors.Extractor`; by default the lightest
    installed backend with the shipped model. The vectors are tagged with its model id.
    """
    from .extractors import default_extractor

    files, skipped = collect_images(paths)
    if extractor is None:
        extractor = default_extractor()
    crops, kept, refused = align_photos(files, aligned=aligned, several=several)
    parts = [
        np.asarray(extractor.embed_aligned(crops[i : i + batch_size]), np.float32)
        for i in range(0, len(crops), batch_size)
    ]
    vectors = np.concatenate(parts) if parts else np.zeros((0, extractor.dim), np.float32)
    return PhotoVectors(vectors, tuple(kept), tuple(skipped + refused), extractor.model_id)
