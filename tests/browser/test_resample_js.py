"""clients/web/resample.js gives OpenCV's pixels: the browser's detector input, landmark crop and
alignment start from the same pixels as the server's (faceid_sdk/face_models.py, alignment.py)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[2]
RESAMPLE_JS = ROOT / "clients" / "web" / "resample.js"
RAW = ROOT / "tests" / "fixtures" / "faces" / "raw"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not on PATH")

RUN_JS = """
import * as resample from %s;
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(({ op, pixels, width, height, channels, args }) => {
    const data = Uint8ClampedArray.from(Buffer.from(pixels, "base64"));
    const image = { data, width, height, channels };
    const got = op === "warp" ? resample.warpAffine(image, args.m, args.size)
      : op === "antialiased" ? resample.warp(image, args.m, args.size)
      : op === "area" ? resample.resizeArea(image, args.width, args.height)
      : resample.resizeLinear(image, args.width, args.height);
    return Buffer.from(got.data).toString("base64");
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def _run(cases: list[dict[str, Any]]) -> list[np.ndarray]:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", RUN_JS % json.dumps(RESAMPLE_JS.as_uri())],
        input=json.dumps(cases), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [np.frombuffer(base64.b64decode(s), np.uint8) for s in json.loads(proc.stdout)]


def _case(op: str, image: np.ndarray, **args: Any) -> dict[str, Any]:
    return {"op": op, "pixels": base64.b64encode(image.tobytes()).decode(),
            "width": image.shape[1], "height": image.shape[0], "channels": image.shape[2],
            "args": args}


def _images() -> list[np.ndarray]:
    """Real photos (RGB and RGBA, as canvas hands them over) and random noise, the hardest case
    for rounding."""
    from faceid_sdk.alignment import load_image

    rng = np.random.default_rng(7)
    photos = [load_image(p) for p in sorted(RAW.glob("*.jpg"))[:3]]
    noise = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
             for h, w in rng.integers(40, 260, (3, 2))]
    rgba = [np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]) for im in photos[:1]]
    return [*photos, *noise, *rgba]


def _compare(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    diff = np.abs(got.astype(int) - want.reshape(-1).astype(int))
    return int(diff.max()), float((diff > 0).mean())


def test_warp_affine_matches_opencv() -> None:
    rng = np.random.default_rng(3)
    cases, wants = [], []
    for image in _images():
        for _ in range(3):
            s, a = rng.uniform(0.3, 3.0), rng.uniform(-0.6, 0.6)
            m = np.array([[s * np.cos(a), -s * np.sin(a), rng.uniform(-60, 60)],
                          [s * np.sin(a), s * np.cos(a), rng.uniform(-60, 60)]])
            size = int(rng.integers(40, 130))
            want = cv2.warpAffine(np.ascontiguousarray(image[:, :, :3]), m, (size, size),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cases.append(_case("warp", image, m=m.tolist(), size=size))
            wants.append(want)
    for got, want in zip(_run(cases), wants, strict=True):
        worst, share = _compare(got, want)
        # OpenCV's SIMD lanes fuse a multiply-add the scalar float32 here does not: a value
        # exactly between two integers can round the other way, nothing more.
        assert worst <= 1 and share < 5e-4, (worst, share)


@pytest.mark.parametrize("op", ["area", "linear"])
def test_resize_matches_opencv(op: str) -> None:
    cases, wants = [], []
    for image in _images():
        h, w = image.shape[:2]
        if op == "area":
            sizes = [(w // 2, h // 2), (160, 160), (max(1, w // 3), max(1, h // 5))]
            sizes = [(a, b) for a, b in sizes if a <= w and b <= h]
            if w % 2 == 0 and h % 2 == 0:
                sizes.append((w // 2, h // 2))
            flag = cv2.INTER_AREA
        else:
            sizes = [(int(w * 1.3) + 1, int(h * 1.7) + 1), (300, 300)]
            flag = cv2.INTER_LINEAR
        for width, height in sizes:
            want = cv2.resize(np.ascontiguousarray(image[:, :, :3]), (width, height),
                              interpolation=flag)
            cases.append(_case(op, image, width=width, height=height))
            wants.append(want)
    for got, want in zip(_run(cases), wants, strict=True):
        worst, share = _compare(got, want)
        # INTER_AREA's float weights and INTER_LINEAR's fixed point, reproduced: rare halves
        # rounded the other way.
        assert worst <= 1 and share < (2e-3 if op == "area" else 5e-3), (op, worst, share)


def test_warp_matches_python() -> None:
    """resample.warp (block shrink + warpAffine) gives faceid_sdk.resample.warp's pixels, for
    transforms that shrink by 1x to 7x, rotated, and crops reaching past the border."""
    from faceid_sdk.resample import shrink_factor, warp

    rng = np.random.default_rng(11)
    cases, wants, factors = [], [], []
    for image in _images():
        h, w = image.shape[:2]
        for _ in range(4):
            size = int(rng.choice([48, 112]))
            s = size / rng.uniform(0.6, 7.0) / size * rng.uniform(0.9, 1.1)
            a = rng.uniform(-0.4, 0.4)
            cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
            lin = np.array([[s * np.cos(a), -s * np.sin(a)], [s * np.sin(a), s * np.cos(a)]])
            m = np.hstack([lin, (np.array([size / 2, size / 2]) - lin @ [cx, cy])[:, None]])
            factors.append(shrink_factor(m))
            cases.append(_case("antialiased", image, m=m.tolist(), size=size))
            wants.append(warp(np.ascontiguousarray(image[:, :, :3]), m, size))
    assert max(factors) >= 4 and min(factors) == 1, factors
    for got, want in zip(_run(cases), wants, strict=True):
        worst, share = _compare(got, want)
        assert worst <= 1 and share < 5e-4, (worst, share)


def test_warp_is_continuous_in_the_transform() -> None:
    """A box a fiftieth of a pixel off gives almost the same crop: the pre-shrink does not jump.
    (The pre-shrink size rounded from the scale, which this replaced, changed pixels by up to
    61 levels here and moved the five points by 1 % of the eye distance.)"""
    from faceid_sdk.resample import warp

    image = np.ascontiguousarray(_images()[0][:, :, :3])
    for side in np.linspace(97.0, 190.0, 40):
        crops = []
        for eps in (0.0, 0.02):
            scale = 48 / (side + eps)
            m = np.array([[scale, 0, -40 * scale], [0, scale, -30 * scale]])
            crops.append(warp(image, m, 48).astype(int))
        assert np.abs(crops[0] - crops[1]).max() <= 3, side
