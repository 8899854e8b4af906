"""Datasets as in-memory uint8 arrays, and the fixed splits used for training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "FaceSet",
    "closed_set_split",
    "load_cache",
    "select_identities",
    "unseen_celeba_ids",
]

_SPLITS = Path(__file__).parent / "splits"


@attrs.frozen(eq=False)
class FaceSet:
    """Aligned 96x96 uint8 RGB crops with identity names, source paths and teacher targets."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.str_]
    paths: npt.NDArray[np.str_]
    teacher: npt.NDArray[np.float32] | None

    def __repr__(self) -> str:
        return f"<FaceSet {len(self)} images, {len(np.unique(self.labels))} identities>"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, mask: npt.NDArray[np.bool_]) -> FaceSet:
        return FaceSet(
            self.images[mask],
            self.labels[mask],
            self.paths[mask],
            None if self.teacher is None else self.teacher[mask],
        )

    @classmethod
    def concat(cls, sets: Sequence[FaceSet]) -> FaceSet:
        teach = None
        if all(s.teacher is not None for s in sets):
            teach = np.concatenate([s.teacher for s in sets if s.teacher is not None])
        return cls(
            np.concatenate([s.images for s in sets]),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.paths for s in sets]),
            teach,
        )


def load_cache(path: str | Path, prefix: str = "") -> FaceSet:
    """Load a cache written by ``faceid_sdk.training.prepare``; *prefix* namespaces identities
    (``"celeba/"``) so that two datasets never share a class by accident."""
    with np.load(path) as z:
        ok = z["found"] if "found" in z.files else np.ones(len(z["labels"]), bool)
        teacher = z["teacher"][ok] if bool(z["has_teacher"]) else None
        if teacher is not None:
            teacher = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
        return FaceSet(
            z["images"][ok],
            np.char.add(prefix, z["labels"][ok].astype(str)),
            np.char.add(prefix, z["paths"][ok].astype(str)),
            None if teacher is None else teacher.astype(np.float32),
        )


def unseen_celeba_ids() -> list[str]:
    """The 60 CelebA identities that no shipped model has seen (committed, fixed)."""
    text = (_SPLITS / "celeba_unseen_ids.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def select_identities(
    labels: npt.NDArray[np.str_], *, max_identities: int | None = None,
    max_per_identity: int | None = None, min_images: int = 10, seed: int = 0,
) -> npt.NDArray[np.bool_]:
    """Mask of a paper-sized subset: *max_identities* people drawn (seeded) among those with at
    least *min_images* photos (the paper's set has ~27 a person), and at most
    *max_per_identity* photos of each; ``None`` leaves that dimension whole."""
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)
    if max_identities is not None:
        counts = np.array([np.sum(labels == i) for i in ids])
        eligible = ids[counts >= min_images]
        ids = np.sort(rng.choice(eligible, min(max_identities, len(eligible)), replace=False))
    keep = np.zeros(len(labels), bool)
    for i in ids:
        idx = np.flatnonzero(labels == i)
        if max_per_identity is not None and len(idx) > max_per_identity:
            idx = rng.choice(idx, max_per_identity, replace=False)
        keep[idx] = True
    return keep


def closed_set_split(
    labels: npt.NDArray[np.str_], per_identity: int = 2, min_left: int = 2, seed: int = 0
) -> npt.NDArray[np.bool_]:
    """Mask of the images held out for the paper's protocol: *per_identity* per identity, drawn
    with *seed*, from identities that keep at least *min_left* images for training."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for ident in np.unique(labels):
        idx = np.flatnonzero(labels == ident)
        if len(idx) >= per_identity + min_left:
            test[rng.choice(idx, per_identity, replace=False)] = True
    return test
