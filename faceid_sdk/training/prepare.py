"""Cache a folder-per-identity dataset as aligned 112x112 uint8 crops, once, before training.

Photos that are not aligned (``--raw``) go through the product's own pipeline
(:class:`faceid_sdk.alignment.FaceAligner`, several faces resolved with ``several="main"``:
each photo of a labelled dataset shows its person), so training crops are made exactly as the
server and the browser make theirs. Folders already aligned onto the template
(``celeba-aligned``, ``glint-aligned``) are taken as they are, resized to 112x112 if needed.

The cache (``data-cache/<name>.npz``) holds ``images`` (N x 112 x 112 x 3 uint8 RGB),
``labels``, ``paths`` (relative to the root) and ``found`` (False where the pipeline refused
the photo; those rows are zeros and loaders drop them). The refused photos and the reason are
listed in ``<name>.refused.txt``.

Usage: ``python -m faceid_sdk.training.prepare ROOT OUT.npz [--raw] [--workers 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceid_sdk.photos import IMAGE_SUFFIXES

CHUNK = 64

_STATE: dict[str, Any] = {}


def list_dataset(
    root: Path, max_per_identity: int | None = None, seed: int = 0
) -> list[tuple[str, Path]]:
    """Return ``(identity, path)`` pairs, sorted, optionally capped per identity (seeded)."""
    rng = np.random.default_rng(seed)
    items: list[tuple[str, Path]] = []
    for ident in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in (root / ident).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_identity is not None and len(files) > max_per_identity:
            keep = np.sort(rng.choice(len(files), max_per_identity, replace=False))
            files = [files[i] for i in keep]
        items.extend((ident, f) for f in files)
    return items


def _init_worker(raw: bool) -> None:
    _STATE["raw"] = raw
    if raw:
        from faceid_sdk.alignment import FaceAligner

        _STATE["aligner"] = FaceAligner(threads=1)


def aligned_crop_112(path: str | Path, aligner: Any | None) -> np.ndarray:
    """The 112x112 crop of one file: the pipeline's (*aligner* given) or the file's own."""
    import cv2

    from faceid_sdk.alignment import CROP_SIZE, load_image, warp_to_template

    img = load_image(path)
    if aligner is None:
        if img.shape[:2] != (CROP_SIZE, CROP_SIZE):
            img = np.asarray(
                cv2.resize(img, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA), np.uint8
            )
        return img
    face = aligner.align_one(img, several="main", where=str(path))
    crop, _ = warp_to_template(img, face.points)
    return crop


def _process_chunk(paths: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from faceid_sdk.errors import InvalidImageError

    crops = np.zeros((len(paths), 112, 112, 3), np.uint8)
    found = np.zeros(len(paths), bool)
    reasons = []
    for i, p in enumerate(paths):
        try:
            crops[i] = aligned_crop_112(p, _STATE.get("aligner"))
            found[i] = True
        except InvalidImageError as exc:
            reasons.append(f"{p}\t{exc.code}")
    return crops, found, reasons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--raw", action="store_true", help="photos, not aligned crops: detect, align")
    ap.add_argument("--max-per-identity", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    items = list_dataset(args.root, args.max_per_identity, args.seed)
    paths = [str(p) for _, p in items]
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    t0 = time.time()
    results = []
    with mp.Pool(args.workers, _init_worker, (args.raw,)) as pool:
        for k, res in enumerate(pool.imap(_process_chunk, chunks)):
            results.append(res)
            if k % 20 == 0:
                done = sum(len(r[0]) for r in results)
                print(f"{done}/{len(paths)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    crops = np.concatenate([r[0] for r in results]) if results else np.zeros((0, 112, 112, 3))
    found = np.concatenate([r[1] for r in results]) if results else np.zeros(0, bool)
    refused = [line for r in results for line in r[2]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".refused.txt").write_text("".join(f"{x}\n" for x in refused))
    np.savez(
        args.out,
        images=crops.astype(np.uint8),
        labels=np.array([i for i, _ in items]),
        paths=np.array([os.path.relpath(p, args.root) for p in paths]),
        found=found,
    )
    print(
        f"wrote {args.out}: {len(paths)} images, {int(found.sum())} aligned, "
        f"{len(refused)} refused, {time.time() - t0:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
