"""clients/web/align.js reproduces faceid_sdk.alignment: template, transform, crop, pixels."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceid_sdk import alignment

ROOT = Path(__file__).resolve().parents[2]
ALIGN_JS = ROOT / "clients" / "web" / "align.js"
RAW = ROOT / "tests" / "fixtures" / "faces" / "raw"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not on PATH")

RUN_JS = """
import * as align from %s;
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(({ rgba, width, height, points }) => {
    const data = Uint8ClampedArray.from(Buffer.from(rgba, "base64"));
    const image = { data, width, height, channels: 4 };
    const m = align.estimateSimilarity(points, align.TEMPLATE_112);
    const { input: x, crop96, residual } = align.alignFace(image, points);
    return { m, residual, crop96: Buffer.from(crop96.data).toString("base64"),
             input: Array.from(x.subarray(0, 30)) };
  });
  process.stdout.write(JSON.stringify({
    template: align.TEMPLATE_112, crop: align.CROP_SIZE, size: align.MODEL_INPUT_SIZE,
    results: out }));
});
"""


def _run(cases: list[dict[str, Any]]) -> Any:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", RUN_JS % json.dumps(ALIGN_JS.as_uri())],
        input=json.dumps(cases), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _case(image: np.ndarray, points: np.ndarray) -> dict[str, Any]:
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    return {"rgba": base64.b64encode(rgba.tobytes()).decode(), "width": image.shape[1],
            "height": image.shape[0], "points": points.tolist()}


@pytest.fixture(scope="module")
def photos() -> list[tuple[np.ndarray, np.ndarray]]:
    """The raw fixture photos with five stand-in points: as they are, and 5x enlarged (which
    takes the area pre-shrink path), and rotated points on a synthetic image."""
    pytest.importorskip("cv2")
    import cv2

    out = []
    rng = np.random.default_rng(0)
    for path in sorted(RAW.glob("*.jpg")):
        image = alignment.load_image(path)
        h, w = image.shape[:2]
        # Stand-in points (eye centres, nose tip, mouth corners) around the image's centre, so
        # this test needs no detector; the transform and warp are what is compared.
        base = np.array([[0.4, 0.42], [0.6, 0.42], [0.5, 0.55], [0.42, 0.66], [0.58, 0.66]])
        points = base * [w, h] + rng.normal(0, 2, (5, 2))
        out.append((image, points))
        big = cv2.resize(image, (w * 5, h * 5), interpolation=cv2.INTER_CUBIC)
        out.append((big, points * 5 + 2))
    return out


def test_constants_match_python() -> None:
    """The template and the crop and input sizes are the Python module's."""
    got = _run([])
    np.testing.assert_array_equal(got["template"], alignment.TEMPLATE_112)
    assert (got["crop"], got["size"]) == (alignment.CROP_SIZE, alignment.MODEL_INPUT_SIZE)


def test_align_js_matches_python(photos: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Same transform (1e-9), same residual, and the same 96x96 crop as OpenCV's warpAffine +
    INTER_AREA up to rare off-by-one pixels (OpenCV quantizes coordinates to 1/32 pixel)."""
    got = _run([_case(image, points) for image, points in photos])["results"]
    for (image, points), js in zip(photos, got, strict=True):
        m = alignment.estimate_similarity(points, alignment.TEMPLATE_112)
        np.testing.assert_allclose(js["m"], m, atol=1e-9)
        crop, residual = alignment.warp_to_template(image, points)
        assert js["residual"] == pytest.approx(residual, abs=1e-9)
        expected = alignment.crop_to_model_input(crop).astype(np.int16)
        crop96 = np.frombuffer(base64.b64decode(js["crop96"]), np.uint8).reshape(96, 96, 3)
        diff = np.abs(crop96.astype(np.int16) - expected)
        assert diff.mean() < 0.05 and diff.max() <= 2, (diff.mean(), diff.max())
        x = alignment.normalize_pixels(crop96).reshape(-1)[:30]
        np.testing.assert_array_equal(np.float32(js["input"]), x)
