"""Photos through the CLI: one road (embed, enroll, identify, payload, calibrate), clear refusals.

Needs the vision extra and an extractor backend (ONNX Runtime); the photos are the committed
fixtures (tests/fixtures/faces, tests/fixtures/web: CelebA, research use).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk import FeatureCodec
from faceid_sdk.cli import main

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

FACES = Path(__file__).parent / "fixtures" / "faces"
WEB = Path(__file__).parent / "fixtures" / "web"


def run(*args: str, cwd: Path):  # type: ignore[no-untyped-def]
    import os

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture()
def two_faces(tmp_path: Path) -> Path:
    from PIL import Image

    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in sorted((FACES / "raw").glob("*")))
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h, a.shape[1] + b.shape[1] + 40, 3), 200, np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] + 40 :] = b
    path = tmp_path / "two.jpg"
    Image.fromarray(canvas).save(path)
    return path


def test_identify_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    """Not an image: exit 65 and one line saying what to give, no traceback."""
    run("enroll", "p7363", str(WEB / "7363_038408.jpg"), cwd=tmp_path)
    (tmp_path / "notimage.jpg").write_text("this is text")
    result = run("identify", "notimage.jpg", cwd=tmp_path)
    assert result.exit_code == 65, result.output
    assert "Traceback" not in result.output
    assert "not an image" in result.output and "JPEG" in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_several_faces_are_refused(tmp_path: Path, two_faces: Path) -> None:
    """A photo with two people: the CLI cannot know who is meant, as the page cannot."""
    run("enroll", "p7363", str(WEB / "7363_038408.jpg"), cwd=tmp_path)
    result = run("identify", str(two_faces), cwd=tmp_path)
    assert result.exit_code == 65
    assert "2 faces found" in result.output


def test_enroll_a_folder_and_several_paths_reporting_skips(tmp_path: Path, two_faces: Path) -> None:
    """Folders and several paths (a shell glob) are accepted; each skipped file says why."""
    folder = tmp_path / "p7363"
    folder.mkdir()
    for f in sorted(WEB.glob("7363_*.jpg"))[:2]:
        shutil.copy(f, folder)
    shutil.copy(two_faces, folder / "group.jpg")
    (folder / "notes.txt").write_text("not a photo")
    result = run("enroll", "p7363", str(folder), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["templates_added"] == 2
    assert "group.jpg" in result.stderr and "2 faces found" in result.stderr
    assert "notes.txt" in result.stderr and "not an image file name" in result.stderr
    # several paths, as a glob expands them, and --image mixed with positional photos
    result = run("enroll", "p7284", str(WEB / "7284_082370.jpg"),
                 "--image", str(FACES / "raw" / "7203_091924.jpg"), cwd=tmp_path)
    assert result.exit_code == 0, result.output
    listed = json.loads(run("list", "--json", cwd=tmp_path).stdout)
    assert {r["identity"]: r["template_count"] for r in listed} == {"p7284": 2, "p7363": 2}


def test_failed_enroll_creates_nothing(tmp_path: Path) -> None:
    """No source, or only unusable photos: nothing is written, not even an empty store."""
    assert run("enroll", "alice", cwd=tmp_path).exit_code == 2
    (tmp_path / "blank.png").write_bytes(b"")
    result = run("enroll", "alice", "blank.png", cwd=tmp_path)
    assert result.exit_code == 65
    assert list(tmp_path.glob("faceid.db*")) == []


def test_embed_one_road_with_model_id(tmp_path: Path) -> None:
    """embed records the model id; --aligned refuses full photos; an empty folder is an error."""
    out = tmp_path / "v.npz"
    result = run("embed", str(FACES / "aligned"), "--aligned", "--out", str(out), cwd=tmp_path)
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert z["embeddings"].shape == (6, 128)
        model_id = str(z["model_id"])
    from faceid_sdk._defaults import default_model_info

    assert model_id == default_model_info().model_id
    full = run("embed", str(FACES / "raw"), "--aligned", "--out", str(tmp_path / "x.npz"),
               cwd=tmp_path)
    assert full.exit_code == 65 and "not an aligned" in full.output
    (tmp_path / "empty").mkdir()
    empty = run("embed", "empty", "--out", str(tmp_path / "e.npz"), cwd=tmp_path)
    assert empty.exit_code == 65 and "no usable face" in empty.output
    # The same photos give the same vectors through embed and through identify.
    photo = WEB / "7363_038408.jpg"
    run("embed", str(photo), "--out", str(tmp_path / "one.npz"), cwd=tmp_path)
    run("enroll", "p7363", "--vectors", str(tmp_path / "one.npz"), cwd=tmp_path)
    same = run("identify", str(photo), "--json", cwd=tmp_path)
    assert same.exit_code == 0
    assert json.loads(same.stdout)[0]["identity"] == "p7363"


def test_vectors_of_another_model_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "v.npz"
    vectors = np.eye(4, 128, dtype=np.float32)
    np.savez(out, embeddings=vectors, paths=np.array(["a"] * 4), model_id=np.array("other-1"))
    result = run("enroll", "alice", "--vectors", str(out), cwd=tmp_path)
    assert result.exit_code == 65 and "other-1" in result.output
    assert list(tmp_path.glob("faceid.db*")) == []


def test_payload_prints_what_a_device_sends(tmp_path: Path) -> None:
    """payload gives base64url text that the codec decodes to the photo's vector."""
    from faceid_sdk._defaults import default_model_info

    info = default_model_info()
    result = run("payload", str(WEB / "7363_038408.jpg"), cwd=tmp_path)
    assert result.exit_code == 0, result.output
    vector = FeatureCodec(info.model_id, info.dim).decode_text(result.stdout.strip())
    assert vector.shape == (info.dim,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    body = run("payload", str(WEB / "7363_038408.jpg"), "--json", "--dtype", "float16",
               cwd=tmp_path)
    request = json.loads(body.stdout)
    assert set(request) == {"features"}
    # What payload prints is what the server takes (the curl walk-through in docs/server.md).
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from faceid_sdk import Enroller
    from faceid_sdk.server import ServerSettings, create_app

    with Enroller(tmp_path / "s.db", info.model_id, info.dim) as enroller:
        enroller.enroll("p7363", vector)
        app = create_app(enroller, settings=ServerSettings(rate_per_second=None))
        with TestClient(app) as http:
            answer = http.post("/api/v1/identify", json=request).json()
    assert answer["recognised"] and answer["identity"] == "p7363"


def test_calibrate_on_own_people_and_save(tmp_path: Path) -> None:
    """calibrate prints thresholds with TAR, draws the curves, and --save makes the store use
    the threshold by default."""
    result = run("calibrate", str(FACES / "aligned"), "--aligned", "--far", "0.1", "--save",
                 "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["people"], summary["photos"], summary["genuine_pairs"]) == (3, 6, 3)
    assert summary["impostor_pairs"] == 12
    point = summary["points"][0]
    assert point["far"] <= 0.1 and not point["reliable"]
    png = (tmp_path / "calibration.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads(run("info", "--json", cwd=tmp_path).stdout)
    assert info["threshold"] == pytest.approx(point["threshold"], abs=1e-6)
    assert info["threshold_source"] == "calibrated on this store's own data"
    explicit = json.loads(run("info", "--json", cwd=tmp_path).stdout)
    assert explicit["threshold_source"] != "given"


def test_calibrate_needs_people(tmp_path: Path) -> None:
    one = tmp_path / "people" / "only"
    one.mkdir(parents=True)
    for f in sorted((FACES / "aligned" / "7203").glob("*.jpg")):
        shutil.copy(f, one)
    result = run("calibrate", str(tmp_path / "people"), "--aligned", cwd=tmp_path)
    assert result.exit_code == 65 and "at least two people" in result.output
