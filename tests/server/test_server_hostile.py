"""The hostile campaign's findings on text, images in other clothes, routing and framing."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from click.testing import CliRunner
from server_helpers import API, unit

from faceid_sdk import Enroller
from faceid_sdk.cli import main


def _enroll(client, codec, rng, **fields):
    body = {"identity": "alice", "features": [codec.encode_text(unit(rng)[0])], **fields}
    return client.post(f"{API}/enroll", json=body)


@pytest.mark.parametrize("text", [
    "\x1b[2J\x1b]0;owned\x07", "evil\u202etxt.exe", "nul\x00byte", "\u3164", "\u115f\u115f",
    "\u2800", "a\u034f", "zero\u200bwidth",
])
@pytest.mark.parametrize("field", ["display_name", "external_id"])
def test_hostile_text_is_refused(client, codec, rng, field, text):
    r = _enroll(client, codec, rng, **{field: text})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_text" and r.json()["error"]["field"] == field
    assert client.get(f"{API}/identities").json()["identities"] == []


@pytest.mark.parametrize("name", ["\u3164", "\u2800", "a\u202eb", "\x1b[31mred"])
def test_invisible_or_control_identities_are_refused(client, codec, rng, name):
    body = {"identity": name, "features": [codec.encode_text(unit(rng)[0])]}
    r = client.post(f"{API}/enroll", json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_identity"


def test_plain_unicode_names_still_work(client, codec, rng):
    r = _enroll(client, codec, rng, display_name="José Núñez 李娜 🙂", external_id="emp-42")
    assert r.status_code == 201, r.text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


IMAGES = {
    "gif data url": "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
    "uppercase": "DATA:IMAGE/PNG;BASE64,iVBORw0KGgo=",
    "no media type": "data:;base64," + _b64(b"\xff\xd8\xff\xe0" + bytes(20)),
    "tiff": _b64(b"II*\x00" + bytes(30)),
    "heic": _b64(b"\x00\x00\x00\x18ftypheic" + bytes(20)),
    "avif": _b64(b"\x00\x00\x00\x1cftypavif" + bytes(20)),
    "webp url-safe": base64.urlsafe_b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(12)).decode(),
}


@pytest.mark.parametrize("image", sorted(IMAGES))
@pytest.mark.parametrize("field", ["display_name", "external_id", "features"])
def test_images_in_any_clothes_are_415(client, codec, rng, field, image):
    text = IMAGES[image]
    if field == "features":
        r = client.post(f"{API}/identify", json={"features": text})
    else:
        r = _enroll(client, codec, rng, **{field: text})
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "image_refused"


def test_routes_match_exactly(client, codec, rng):
    assert _enroll(client, codec, rng).status_code == 201
    r = client.delete(f"{API}/identities/alice%0A")
    assert r.status_code == 404, r.text
    r = client.post(f"{API}/enroll%0A", json={"identity": "bob",
                                              "features": [codec.encode_text(unit(rng)[0])]})
    assert r.status_code == 404
    names = [x["identity"] for x in client.get(f"{API}/identities").json()["identities"]]
    assert names == ["alice"]
    assert client.get(f"{API}/no-such-route").status_code == 404
    wrong = client.get(f"{API}/enroll")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert client.put(f"{API}/identities/alice").status_code == 405


def test_framing_is_strict(client, codec, rng):
    payload = codec.encode_text(unit(rng)[0])
    body = json.dumps({"features": payload})
    r = client.post(f"{API}/identify", content=body.encode("utf-16"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = client.post(f"{API}/identify", content=body.encode("utf-32"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.post(f"{API}/identify", content=body.encode(),
                    headers=[("content-type", "text/plain"), ("content-type", "application/json")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_header"
    assert client.post(f"{API}/identify", content=body.encode(),
                       headers={"content-type": "application/json"}).status_code == 200


def test_list_never_prints_raw_escapes(tmp_path):
    """A store written before names were checked still lists safely on a terminal."""
    store = tmp_path / "faces.db"
    with Enroller(store, "m", 4) as enroller:
        enroller.enroll("ok", np.eye(4, dtype=np.float32)[0], display_name="fine")
    import sqlite3

    db = sqlite3.connect(store)
    db.execute("UPDATE identities SET display_name = ? WHERE name = 'ok'", ("\x1b[2J\x07",))
    db.commit()
    db.close()
    result = CliRunner().invoke(main, ["list", "--store", str(store)])
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b" in result.output


def test_store_rekeyed_elsewhere_is_503_without_paths(tmp_path, codec, rng):
    """Another process re-keys the store: answers say 'unavailable', never a path or key."""
    from server_helpers import DIM, MODEL_ID
    from starlette.testclient import TestClient

    from faceid_sdk import TemplateProtector
    from faceid_sdk.server import ServerSettings, create_app

    store = tmp_path / "secret-place" / "faces.db"
    store.parent.mkdir()
    with Enroller(store, MODEL_ID, DIM) as served, \
            TestClient(create_app(served, settings=ServerSettings(rate_per_second=None))) as c:
        assert _enroll(c, codec, rng).status_code == 201
        with Enroller(store, MODEL_ID, DIM) as other:
            other.rotate_key(TemplateProtector(bytes(range(32)), DIM))
        for r in (c.post(f"{API}/identify", json={"features": codec.encode_text(unit(rng)[0])}),
                  _enroll(c, codec, rng, display_name="x")):
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            assert "secret-place" not in r.text and str(tmp_path) not in r.text
