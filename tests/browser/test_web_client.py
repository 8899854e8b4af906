"""The browser client in headless Chromium: enroll, identify, refuse, and send only vectors."""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from faceid_sdk import FeatureCodec

from .conftest import FIXTURES, KEYS, ROOT, VENDOR, Recorder, vendor_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PERSON = [FIXTURES / f"7363_{n}.jpg" for n in ("038408", "079585", "138045")]
STRANGER = FIXTURES / "7284_082370.jpg"
RAW = sorted((ROOT / "tests" / "fixtures" / "faces" / "raw").glob("*.jpg"))
BODY_KEYS = {"identity", "display_name", "features", "challenge"}
#: Found anywhere in a body; short signatures (BMP "BM", WebP "RIFF") only at its start.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n", b"GIF87a", b"GIF89a")
IMAGE_MAGIC_START = (b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
IMAGE_BASE64 = ("/9j/", "_9j_", "iVBORw0KGgo", "data:image")


def act(page: Any, action: Any, timeout: float = 60_000) -> str:
    """Run *action* (which starts a flow in the page), wait until the page is idle again and
    has set a state, and return that state."""
    page.evaluate("document.getElementById('state').dataset.state = 'test-pending'")
    action()
    page.wait_for_function(
        "!document.body.classList.contains('busy') && "
        "document.getElementById('state').dataset.state !== 'test-pending'",
        # Polled every 20 ms, not every animation frame: the page's own timings should not
        # share the two cores with the test harness's polling.
        timeout=timeout, polling=20,
    )
    return str(page.get_attribute("#state", "data-state"))


def enroll(page: Any, identity: str, display: str, files: list[Path]) -> str:
    page.fill("#identity", identity)
    page.fill("#display-name", display)
    state = act(page, lambda: page.set_input_files("#enroll-files", [str(f) for f in files]))
    assert state == "ok", page.inner_text("#state")
    return act(page, lambda: page.click("#enroll"))


def identify(page: Any, file: Path) -> str:
    return act(page, lambda: page.set_input_files("#identify-file", str(file)))


def where_of(request: dict) -> str:
    return f"{request['method']} {urlsplit(request['url']).path}"


def assert_only_vectors(recorder: Recorder, server: str, photos: list[Path]) -> dict[str, int]:
    """Every request stayed on the server's origin; every body is JSON whose strings are names
    or valid feature payloads; no body holds image bytes, image base64 or a slice of a photo."""
    meta = vendor_model()
    codec = FeatureCodec(meta["model_id"], int(meta["dim"]))
    origin = urlsplit(server).netloc
    slices = []
    for photo in photos:
        data = photo.read_bytes()
        chunk = data[len(data) // 2 : len(data) // 2 + 48]
        slices += [chunk, base64.b64encode(chunk)[8:40], base64.urlsafe_b64encode(chunk)[8:40]]
    counts = {"requests": 0, "bodies": 0, "payloads": 0, "max_body_bytes": 0}
    for r in recorder.requests:
        counts["requests"] += 1
        url = urlsplit(r["url"])
        if url.scheme == "blob":
            # The wasm backend's worker script, made in the page (threads on machines with 4
            # or more cores): a local object of this origin, nothing sent anywhere.
            assert urlsplit(url.path).netloc == origin and r["body"] is None, r["url"]
            continue
        assert url.scheme in ("http", "https") and url.netloc == origin, r["url"]
        key = KEYS["page"]
        assert key not in r["url"] and key.encode() not in (r["body"] or b""), "key leaked"
        if url.path.startswith("/api/v1/") and url.path not in ("/api/v1/model",
                                                                 "/api/v1/health"):
            assert r["headers"].get("authorization") == f"Bearer {key}", where_of(r)
        ctype = r["headers"].get("content-type", "")
        assert not ctype.startswith(("multipart/", "image/")), r
        body: bytes | None = r["body"]
        if not body:
            continue
        counts["bodies"] += 1
        counts["max_body_bytes"] = max(counts["max_body_bytes"], len(body))
        where = f"{r['method']} {url.path}"
        assert ctype.startswith("application/json"), f"{where}: content-type {ctype!r}"
        assert not any(m in body for m in IMAGE_MAGIC), f"{where} carries image magic bytes"
        assert not body.startswith(IMAGE_MAGIC_START), f"{where} starts like an image"
        assert not any(s in body for s in slices), f"{where} carries bytes of a photo"
        text = body.decode("utf-8")
        assert not any(m in text for m in IMAGE_BASE64), f"{where} carries an image as text"
        document = json.loads(text)
        assert isinstance(document, dict) and set(document) <= BODY_KEYS, (where, document)
        features = document.get("features", [])
        for payload in features if isinstance(features, list) else [features]:
            vector = codec.decode_text(payload)  # raises unless a valid feature payload
            assert vector.shape == (codec.dim,)
            counts["payloads"] += 1
        for key in ("identity", "display_name"):
            assert isinstance(document.get(key, ""), str)
        assert len(body) < 16 * 800 + 300, f"{where}: {len(body)} bytes"
    return counts


def _server_side_decision(server: str, enrolled: list[Path], probe: Path) -> tuple[bool, float]:
    """What the server-side pipeline (faceid_sdk.photos, ONNX) decides for *probe* against
    *enrolled* at the threshold the server serves, and how far from that threshold it is."""
    import httpx

    from faceid_sdk.photos import embed_photos

    threshold = httpx.get(server + "/api/v1/model", timeout=10).json()["threshold"]
    gallery = embed_photos(enrolled).vectors
    query = embed_photos([probe]).vectors[0]
    nearest = float(np.min(np.linalg.norm(gallery - query, axis=1)))
    return nearest < threshold, abs(nearest - threshold)


def test_enroll_identify_reject(page: Any, server: str, trained: bool) -> None:
    """Enroll a person from two photos, identify a third photo of them and a stranger; the page
    decides as the server-side pipeline does at the served (calibrated) threshold, and every
    request carries only names and feature payloads."""
    page, recorder = page
    state = enroll(page, "celeba-7363", "Person 7363", PERSON[:2])
    assert state == "enrolled", page.inner_text("#state")
    assert "2 face(s)" in page.inner_text("#state")

    # Browser and server vectors of one photo differ by a few hundredths (see
    # test_browser_and_server_pipelines_agree): decisions that close to the threshold may go
    # either way, all others must agree.
    margin = 0.06
    for probe, name in ((PERSON[2], "Person 7363"), (STRANGER, None)):
        got = identify(page, probe)
        assert got in ("recognised", "not-recognised", "ambiguous"), page.inner_text("#state")
        if not trained:
            continue
        accept, gap = _server_side_decision(server, PERSON[:2], probe)
        if gap < margin:
            continue
        want = "recognised" if accept else "not-recognised"
        assert got == want, (probe.name, page.inner_text("#state"), gap)
        assert page.inner_text("#answer") == (f"Recognised as {name}" if accept
                                               else "Not recognised")

    counts = assert_only_vectors(recorder, server, [*PERSON, STRANGER])
    # One enroll with two payloads, two identify requests with one each.
    assert counts["payloads"] == 4 and counts["bodies"] == 3, counts
    assert recorder.errors == []


def test_camera_enroll_and_identify(page: Any, server: str, trained: bool) -> None:
    """The camera path (getUserMedia; Chromium's fake camera plays a photo of the person):
    capture a frame to enroll, capture another to identify; only vectors are sent."""
    from .conftest import CAMERA_PHOTO

    page, recorder = page
    page.click("#camera-start")
    page.wait_for_function("(() => { const v = document.getElementById('video');"
                           " return v.readyState >= 2 && v.videoWidth > 0; })()", timeout=30_000)
    assert page.is_enabled("#identify-capture")
    page.fill("#identity", "camera-person")
    assert act(page, lambda: page.click("#enroll-capture")) == "ok", page.inner_text("#state")
    assert act(page, lambda: page.click("#enroll")) == "enrolled", page.inner_text("#state")
    state = act(page, lambda: page.click("#identify-capture"))
    # The same frame again: recognised even by random weights (distance ~0).
    assert state == "recognised", page.inner_text("#state")
    page.click("#camera-stop")
    assert page.is_disabled("#identify-capture")
    counts = assert_only_vectors(recorder, server, [CAMERA_PHOTO])
    assert counts["payloads"] == 2, counts
    assert recorder.errors == []


def test_refusal_states(page: Any, tmp_path: Path) -> None:
    """No face, several faces and a face too small each get their own state, and nothing is
    sent to the server for them."""
    from PIL import Image

    page, recorder = page
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(blank)
    pair = tmp_path / "pair.jpg"
    a, b = Image.open(PERSON[1]), Image.open(STRANGER)
    sheet = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
    sheet.paste(a, (0, 0))
    sheet.paste(b, (a.width, 0))
    sheet.save(pair)
    small = tmp_path / "small.jpg"
    with Image.open(PERSON[2]) as im:
        im.resize((im.width // 2, im.height // 2)).save(small)  # eyes under 20 px apart

    assert identify(page, blank) == "no-face", page.inner_text("#state")
    assert identify(page, pair) == "several-faces", page.inner_text("#state")
    assert page.inner_text("#state").startswith("2 faces found")
    assert identify(page, small) == "too-small", page.inner_text("#state")
    state = act(page, lambda: page.set_input_files("#enroll-files", [str(blank), str(pair)]))
    assert state == "no-face" and page.is_disabled("#enroll")
    assert not [r for r in recorder.requests if r["method"] == "POST"]
    assert recorder.errors == []


def test_page_states_stay_current(page: Any, tmp_path: Path) -> None:
    """What the page shows always belongs to the last action: a file that is no image gets
    its own state, skipped photos are named with their reason, Clear and Enroll reset what
    they make stale, the next person's photos are not pre-labelled, and a face that already
    matches someone is pointed out to the operator."""
    from PIL import Image

    page, _ = page
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(blank)

    assert identify(page, text) == "not-image", page.inner_text("#state")
    assert "notes.jpg is not an image" in page.inner_text("#state")
    identify(page, STRANGER)
    page.fill("#identity", "celeba-7363")
    state = act(page, lambda: page.set_input_files(
        "#enroll-files", [str(PERSON[0]), str(blank), str(text)]))
    assert state == "ok", page.inner_text("#state")
    shown = page.inner_text("#state")
    assert "blank.png: no face found" in shown and "notes.jpg: not an image" in shown, shown
    assert act(page, lambda: page.click("#samples-clear")) == "ready"
    assert "skipped" not in page.inner_text("#state")
    page.set_input_files("#enroll-files", [str(PERSON[0])])
    page.wait_for_function("document.getElementById('state').dataset.state === 'ok'")
    assert act(page, lambda: page.click("#enroll")) == "enrolled", page.inner_text("#state")
    assert page.inner_text("#answer") == ""
    assert page.input_value("#identity") == "" and page.input_value("#display-name") == ""
    # The same face under a second name: enrolled, with the conflict shown.
    page.fill("#identity", "someone-else")
    act(page, lambda: page.set_input_files("#enroll-files", [str(PERSON[0])]))
    assert act(page, lambda: page.click("#enroll")) == "enrolled-conflict"
    assert "also match celeba-7363" in page.inner_text("#state")


BROWSER_EMBED_ALIGNED = """
async ({ b64, size }) => {
  const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const crop = { data, width: size, height: size, channels: 3 };
  const v = await window.faceid.pipeline.embedAligned(crop);
  return Array.from(v);
}
"""

BROWSER_EMBED = """
async ({ b64, points }) => {
  const { canvasFromFile } = await import("/pipeline.js");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const canvas = await canvasFromFile(new Blob([bytes], { type: "image/jpeg" }));
  const r = await window.faceid.pipeline.process(canvas, points ? { points } : undefined);
  return { status: r.status, vector: r.vector ? Array.from(r.vector) : null,
           points: r.face ? r.face.points : null, timings: r.timings };
}
"""


def test_browser_and_server_pipelines_agree(page: Any, trained: bool) -> None:
    """The same photos through the browser (the server's detector and landmark model in TF.js,
    face_core.js, align.js) and through the server side (OpenVINO, alignment.py, Keras) give
    the same points and vectors far closer than the threshold.

    Two more runs locate any difference: TF.js on the server's own aligned crop (the model
    alone), and the browser pipeline given the server's points (alignment and model, no
    detector).
    """
    pytest.importorskip("tensorflow", reason="needs faceid-sdk[tensorflow]")
    from faceid_adapters.tensorflow import KerasExtractor

    from faceid_sdk.alignment import FaceAligner, load_image

    page, _ = page
    meta = vendor_model()
    # The Keras weights the page's TF.js model was exported from (prepare.py records them).
    source = json.loads((VENDOR / "manifest.json").read_text())["model"]
    weights = None if source["source"] == "shipped" else source["weights_path"]
    extractor = KerasExtractor(weights)
    assert extractor.model_id == meta["model_id"]
    aligner = FaceAligner()
    full, same_points, same_crop, landmark_err = [], [], [], []
    for photo in [*PERSON, STRANGER, *RAW]:
        face = aligner.align_one(load_image(photo))
        server_vec = extractor.embed_aligned(face.crop)[0]
        crop_b64 = base64.b64encode(face.crop.tobytes()).decode()
        tfjs_vec = page.evaluate(BROWSER_EMBED_ALIGNED, {"b64": crop_b64, "size": 96})
        same_crop.append(float(np.linalg.norm(np.float32(tfjs_vec) - server_vec)))
        b64 = base64.b64encode(photo.read_bytes()).decode()
        got = page.evaluate(BROWSER_EMBED, {"b64": b64, "points": None})
        assert got["status"] == "ok", (photo.name, got["status"])
        full.append(float(np.linalg.norm(np.float32(got["vector"]) - server_vec)))
        pts = np.array(got["points"])
        eyes = face.eye_distance
        landmark_err.append(float(np.linalg.norm(pts - face.points, axis=1).mean() / eyes))
        fixed = page.evaluate(BROWSER_EMBED, {"b64": b64, "points": face.points.tolist()})
        same_points.append(float(np.linalg.norm(np.float32(fixed["vector"]) - server_vec)))
    report = {
        "photos": len(full), "weights": source["source"],
        "full_pipeline": {"max": max(full), "median": statistics.median(full)},
        "same_points": {"max": max(same_points), "median": statistics.median(same_points)},
        "same_crop": {"max": max(same_crop), "median": statistics.median(same_crop)},
        "landmarks_vs_server_per_eye_distance": {"max": max(landmark_err),
                                               "median": statistics.median(landmark_err)},
    }
    print("browser vs server pipeline (Euclidean distance of unit vectors):", json.dumps(report))
    _save_report("consistency", report)
    # The page finds the server's points: same detector, landmark model and resampling
    # (resample.js is OpenCV's arithmetic), float32 on both sides (measured: 7e-5 of the eye
    # distance, median).
    assert statistics.median(landmark_err) < 0.002 and max(landmark_err) < 0.01, report
    if trained:
        # What is left is the export's weight rounding (mixed uint8/float16: ~0.02 on the
        # shipped model; uint8 alone was ~0.045, float16 0.001): the target is a
        # median of 0.05 (docs/client.md).
        assert statistics.median(full) < 0.05 and max(full) < 0.08, report
        assert max(same_crop) < 0.08, report
    else:
        # Random weights amplify the export's rounding (uint8: cosine 0.93 measured) and any
        # landmark shift (0.73): only the runtime and alignment are checked, loosely.
        assert max(same_crop) < 0.5 and max(same_points) < 0.5, report


def test_measure_and_screenshot(page: Any) -> None:
    """Per-face timings, bytes downloaded and identify latency, as the page measures them;
    FACEID_WEB_SCREENSHOT=docs/img/client.png also saves a screenshot there."""
    page, recorder = page
    # Timed as a user's browser runs: no test harness handling every request on the same
    # two cores (the other tests inspect every request).
    page.remove_listener("request", recorder.on_request)
    state = enroll(page, "celeba-7363", "Person 7363", PERSON[:2])
    assert state in ("enrolled",), page.inner_text("#state")
    totals = []
    for _ in range(3):
        for photo in (PERSON[2], STRANGER):
            identify(page, photo)
            totals.append(page.evaluate("window.faceid.lastIdentify"))
    identify(page, PERSON[2])
    timings = page.evaluate("window.faceid.timings")
    report = {
        "backend": page.evaluate("window.faceid.pipeline.backend"),
        "load_ms": page.evaluate("window.faceid.pipeline.loadMs"),
        "faces": len(timings),
        **{f"{k}_ms_median": statistics.median(t[k] for t in timings)
           for k in ("detectorInput", "detector", "landmarks", "detect", "readPixels", "align",
                     "embed")},
        "identify_total_ms_median": statistics.median(t["total"] for t in totals),
        "identify_http_ms_median": statistics.median(t["http"] for t in totals),
        "identify_body_bytes": totals[-1]["bodyBytes"],
        "bytes": page.evaluate("window.faceid.bytes"),
    }
    print("browser client measurements:", json.dumps(report))
    _save_report("measurements", report)
    assert report["bytes"]["FFEM-AM model"] > 0 and report["embed_ms_median"] > 0
    target = os.environ.get("FACEID_WEB_SCREENSHOT")
    if target:
        image = page.screenshot(full_page=True)
        _save_png(image, Path(target))


def _save_png(data: bytes, path: Path) -> None:
    """Palette-quantized PNG: a screenshot in the docs should weigh tens of kB, not hundreds."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        path.parent.mkdir(parents=True, exist_ok=True)
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True)


def _save_report(name: str, report: dict[str, Any]) -> None:
    """FACEID_WEB_REPORT=DIR writes each measurement as DIR/NAME.json (for docs/client.md)."""
    folder = os.environ.get("FACEID_WEB_REPORT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
