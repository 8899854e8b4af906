"""Cache a folder-per-identity dataset of aligned 112x112 crops as uint8 arrays.

Runs once per dataset, before training: decoding thousands of JPEGs and running dlib's
ResNet teacher every epoch would cost more than the training step itself on two cores.

The cache (``data-cache/<name>.npz``) holds, per image: the 96x96 model input (uint8 RGB),
the identity, the path, the five points dlib's public-domain predictor finds on the crop
(used to calibrate :data:`faceid_sdk.alignment.DLIB5_TEMPLATE_112`) and, optionally, the
128-d dlib descriptor used as a distillation target.
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

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp")

# Mean HOG box dlib finds on the 112x112 template crops; used when HOG misses on a crop,
# so the landmark predictor still starts from the box it was trained with.
FALLBACK_BOX_112 = (18, 28, 98, 109)


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


_STATE: dict[str, Any] = {}


def _init_worker(teacher: bool, raw: bool = False) -> None:
    import dlib
    import face_recognition_models as frm

    _STATE["det"] = dlib.get_frontal_face_detector()
    _STATE["sp"] = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    if teacher:
        _STATE["fr"] = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    _STATE["raw"] = raw


def _process_chunk(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import cv2
    import dlib
    from PIL import Image

    det, sp, fr = _STATE["det"], _STATE["sp"], _STATE.get("fr")
    n = len(paths)
    crops = np.zeros((n, 96, 96, 3), np.uint8)
    points = np.zeros((n, 5, 2), np.float32)
    hog = np.zeros(n, bool)
    chips = []
    if _STATE.get("raw"):
        return _process_raw_chunk(paths)
    for i, p in enumerate(paths):
        img = np.asarray(Image.open(p).convert("RGB"))
        if img.shape[:2] != (112, 112):
            img = cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA)
        crops[i] = cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA)
        dets = det(img, 1)
        if len(dets):
            box = max(dets, key=lambda r: r.area())
            hog[i] = True
        else:
            box = dlib.rectangle(*FALLBACK_BOX_112)
        shape = sp(img, box)
        points[i] = [(q.x, q.y) for q in shape.parts()]
        if fr is not None:
            chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
    teach = np.zeros((n, 128), np.float32)
    if fr is not None and chips:
        teach[:] = np.asarray(fr.compute_face_descriptor(chips), np.float32)
    return crops, points, hog, teach


def _process_raw_chunk(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Photos that are not aligned: run the product's own pipeline (detect, 5 points, warp)."""
    import dlib

    from faceid_sdk.alignment import crop_to_model_input, load_image, warp_to_template

    det, sp, fr = _STATE["det"], _STATE["sp"], _STATE.get("fr")
    n = len(paths)
    crops = np.zeros((n, 96, 96, 3), np.uint8)
    points = np.zeros((n, 5, 2), np.float32)
    found = np.zeros(n, bool)
    chips, chip_idx = [], []
    for i, p in enumerate(paths):
        img = load_image(p)
        dets = det(img, 1)
        if not len(dets):
            continue
        box = max(dets, key=lambda r: r.area())
        shape = sp(img, box)
        pts = np.array([(q.x, q.y) for q in shape.parts()], np.float64)
        crop, _ = warp_to_template(img, pts)
        crops[i] = crop_to_model_input(crop)
        points[i] = pts
        found[i] = True
        if fr is not None:
            chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
            chip_idx.append(i)
    teach = np.zeros((n, 128), np.float32)
    if fr is not None and chips:
        teach[chip_idx] = np.asarray(fr.compute_face_descriptor(chips), np.float32)
    return crops, points, found, teach


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-per-identity", type=int, default=None)
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--raw", action="store_true", help="photos, not aligned crops: detect and align"
    )
    args = ap.parse_args(argv)
    items = list_dataset(args.root, args.max_per_identity, args.seed)
    paths = [str(p) for _, p in items]
    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    t0 = time.time()
    results = []
    with mp.Pool(args.workers, _init_worker, (not args.no_teacher, args.raw)) as pool:
        for k, res in enumerate(pool.imap(_process_chunk, chunks)):
            results.append(res)
            if k % 20 == 0:
                done = sum(len(r[0]) for r in results)
                print(f"{done}/{len(paths)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    crops = np.concatenate([r[0] for r in results])
    points = np.concatenate([r[1] for r in results])
    hog = np.concatenate([r[2] for r in results])
    teach = np.concatenate([r[3] for r in results])
    rel = [os.path.relpath(p, args.root) for p in paths]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if args.raw:
        extra["found"] = hog
        missing = [r for r, ok in zip(rel, hog, strict=True) if not ok]
        args.out.with_suffix(".noface.txt").write_text("\n".join(missing) + "\n")
        print(
            f"no face found in {len(missing)} of {len(rel)} images (listed in "
            f"{args.out.with_suffix('.noface.txt')})",
            file=sys.stderr,
        )
    np.savez(
        args.out,
        **extra,  # type: ignore[arg-type]
        images=crops,
        labels=np.array([i for i, _ in items]),
        paths=np.array(rel),
        points=points,
        hog_found=hog,
        teacher=teach,
        has_teacher=np.array(not args.no_teacher),
    )
    print(
        f"wrote {args.out}: {len(paths)} images in {time.time() - t0:.0f}s, "
        f"HOG found {hog.mean():.3f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
