"""Measure where face-api's five points land on the server's aligned crops (run once, offline).

    python clients/web/calibrate_points.py PHOTO_DIR [--n 200]

The page derives five points from face-api's 68 landmarks (eye contours' centres, nose tip,
mouth corners); the server's landmark model finds the template's own points. The two models
do not agree exactly (about 4 % of the eye distance, systematically), which moves the page's
crop away from the server's. This script runs both on the same photos (the page's pipeline in
headless Chromium, ``faceid_sdk.alignment`` in Python), maps face-api's points into the
server's 112x112 crop with the server's own transform, and prints their mean: the template the
page aligns face-api's points onto (``FACEAPI_TEMPLATE_112`` in align.js), measured on half the
photos and checked on the other half.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import random
import threading
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

POINTS_JS = """
async (photos) => {
  const { loadPipeline, canvasFromFile, detectFaces } = await import("/pipeline.js");
  const out = [];
  for (const b64 of photos) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const canvas = await canvasFromFile(new Blob([bytes], { type: "image/jpeg" }));
    const faces = await detectFaces(canvas);
    out.push(faces.length ? faces[0].points : null);
  }
  return out;
}
"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    from faceid_sdk.alignment import TEMPLATE_112, FaceAligner, estimate_similarity, load_image
    from faceid_sdk.errors import InvalidImageError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    files = sorted(args.photos.rglob("*.jpg"))
    random.Random(0).shuffle(files)
    files = files[: args.n]
    aligner = FaceAligner()
    server, rois = [], []
    for f in files:
        try:
            face = aligner.align_one(load_image(f), several="main")
            server.append(face.points)
            x0, y0, x1, y1 = face.box
            rois.append(((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)))
        except InvalidImageError:
            server.append(None)
            rois.append(None)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(HERE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(url)
        page.evaluate("(async () => { const m = await import('/pipeline.js');"
                      " window.__p = await m.loadPipeline(); })()")
        photos = [base64.b64encode(f.read_bytes()).decode() for f in files]
        page_points = page.evaluate(POINTS_JS, photos)
        browser.close()
    httpd.shutdown()
    mapped, roi_112 = [], []
    for srv, roi, web in zip(server, rois, page_points, strict=True):
        if srv is None or web is None:
            continue
        m = estimate_similarity(srv, TEMPLATE_112)
        mapped.append(np.asarray(web) @ m[:, :2].T + m[:, 2])
        # The server's landmark input (the detector's box made square) in template coordinates.
        centre = np.array(roi[:2]) @ m[:, :2].T + m[:, 2]
        roi_112.append([*centre, roi[2] * float(np.sqrt(abs(np.linalg.det(m[:, :2]))))])
    mapped_a = np.array(mapped)
    half = len(mapped_a) // 2
    template = mapped_a[:half].mean(0)
    eye = float(np.linalg.norm(TEMPLATE_112[1] - TEMPLATE_112[0]))

    def err(points: np.ndarray, tpl: np.ndarray) -> np.ndarray:
        """How far the page's crop is from the server's: where the template points of the
        server's crop land in the page's crop, per eye distance."""
        out = []
        for p in points:
            m = estimate_similarity(p, tpl)
            moved = TEMPLATE_112 @ m[:, :2].T + m[:, 2]
            out.append(np.linalg.norm(moved - TEMPLATE_112, axis=1).mean() / eye)
        return np.array(out)

    report = {
        "photos": len(mapped_a),
        "template": np.round(template, 2).tolist(),
        "landmark_roi_112 (centre x, centre y, side)": np.round(
            np.mean(roi_112, axis=0), 2).tolist(),
        "landmark_roi_112 spread (std)": np.round(np.std(roi_112, axis=0), 2).tolist(),
        "held_out_error_per_eye_distance": {
            "server_template": float(np.median(err(mapped_a[half:], TEMPLATE_112))),
            "calibrated_template": float(np.median(err(mapped_a[half:], template))),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
