"""The affine crop every step of the face pipeline makes: landmark input and aligned face.

A face bigger than twice its crop cannot be sampled bilinearly without aliasing, so it is first
shrunk by a whole factor ``k`` (the mean of each ``k x k`` block, blocks anchored at the image's
corner), then warped bilinearly with a replicated border. A whole factor keeps the result a
continuous function of the transform: the pixels do not jump when a box moves by a hair, as
they did when the pre-shrink size was rounded from the scale, so the server, the training crops
and the browser (``clients/web/resample.js``, the same rule) give the same points and the same
crops for the same photo.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["shrink_factor", "warp"]


def shrink_factor(m: npt.ArrayLike) -> int:
    """The whole factor a photo is shrunk by before the 2x3 transform *m* samples it: 1 unless
    *m* shrinks by more than 2 (``floor(1 / scale)``, so the bilinear step then shrinks by at
    most 2)."""
    a = np.asarray(m, np.float64)[:, :2]
    scale = math.sqrt(abs(float(np.linalg.det(a))))
    if scale <= 0:
        raise ValueError("the transform must not be singular")
    return max(1, math.floor(1.0 / scale)) if scale < 0.5 else 1


def warp(image: npt.NDArray[np.uint8], m: npt.ArrayLike, size: int) -> npt.NDArray[np.uint8]:
    """``size x size`` crop of *image* (H x W x C uint8) under the forward transform *m*
    (image -> crop), anti-aliased by a whole-factor block shrink when *m* shrinks over 2x."""
    import cv2

    fwd = np.array(m, np.float64)
    k = shrink_factor(fwd)
    src: npt.NDArray[np.uint8] = image
    if k > 1:
        src, fwd = _block_shrink(image, fwd, k, size)
    out = cv2.warpAffine(
        np.ascontiguousarray(src), fwd, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out, np.uint8)


def _block_shrink(
    image: npt.NDArray[np.uint8], fwd: npt.NDArray[np.float64], k: int, size: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """The k x k block means of the part of *image* the crop samples, and the transform from
    that shrunk window. Equal to shrinking the whole image (only the blocks the crop can reach
    are computed)."""
    h, w = image.shape[:2]
    nx, ny = w // k, h // k
    if nx < 1 or ny < 1:
        return image, fwd
    inv = np.linalg.inv(np.vstack([fwd, [0.0, 0.0, 1.0]]))[:2]
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]],
                       np.float64)
    src = corners @ inv.T
    # Blocks (in shrunk units) the bilinear taps can touch, with a margin; clamped to the image.
    bx0 = min(max(math.floor(src[:, 0].min() / k) - 2, 0), nx - 1)
    by0 = min(max(math.floor(src[:, 1].min() / k) - 2, 0), ny - 1)
    bx1 = max(min(math.ceil(src[:, 0].max() / k) + 3, nx), bx0 + 1)
    by1 = max(min(math.ceil(src[:, 1].max() / k) + 3, ny), by0 + 1)
    window = image[by0 * k:by1 * k, bx0 * k:bx1 * k].astype(np.uint32)
    c = image.shape[2]
    sums = window.reshape(by1 - by0, k, bx1 - bx0, k, c).sum(axis=(1, 3))
    shrunk = ((sums + (k * k) // 2) // (k * k)).astype(np.uint8)
    # Block (i, j) of the window is centred on image pixel ((bx0 + j) k + (k - 1) / 2, ...).
    a = fwd[:, :2]
    origin = np.array([bx0 * k + (k - 1) / 2, by0 * k + (k - 1) / 2])
    return shrunk, np.hstack([a * k, (fwd[:, 2] + a @ origin)[:, None]])
