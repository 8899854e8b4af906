"""The JSON API: round trips, decisions without scores, and errors of one shape."""

from __future__ import annotations

import logging
import re

import pytest
from server_helpers import API, DIM, MODEL_ID, check_documented, near, unit

from faceid_sdk import FeatureCodec
from faceid_sdk.server import ENDPOINTS, openapi_document


def enroll(client, codec, identity, vectors, **extra):
    return client.post(f"{API}/enroll", json={
        "identity": identity, "features": [codec.encode_text(v) for v in vectors], **extra})


def test_round_trip_enroll_identify_verify_list_remove(client, codec, rng):
    """Enroll, identify, verify, list and remove work end to end over the API."""
    alice, bob = unit(rng), unit(rng)
    r = enroll(client, codec, "alice", [alice[0], near(alice[0], rng)], display_name="Alice")
    assert r.status_code == 201, r.text
    assert r.json() == {"identity": "alice", "created": True, "templates_added": 2,
                        "templates_replaced": 0}
    assert enroll(client, codec, "bob", bob).status_code == 201
    assert enroll(client, codec, "bob", [near(bob[0], rng)]).status_code == 200

    r = client.post(f"{API}/identify", json={"features": codec.encode_text(near(alice[0], rng))})
    assert r.status_code == 200
    assert r.json() == {"recognised": True, "identity": "alice", "display_name": "Alice",
                        "reason": "match"}
    r = client.post(f"{API}/verify", json={"identity": "bob",
                                          "features": codec.encode_text(near(bob[0], rng))})
    assert r.json() == {"verified": True, "identity": "bob", "reason": "match"}
    r = client.post(f"{API}/verify",
                    json={"identity": "bob", "features": codec.encode_text(alice[0])})
    assert r.json()["verified"] is False

    listed = client.get(f"{API}/identities").json()["identities"]
    assert [(i["identity"], i["template_count"]) for i in listed] == [("alice", 2), ("bob", 2)]

    r = client.delete(f"{API}/identities/alice")
    assert r.json() == {"identity": "alice", "templates_removed": 2}
    check_documented(openapi_document(), "DELETE", f"{API}/identities/{{identity}}", r)
    assert client.delete(f"{API}/identities/alice").json()["error"]["code"] == "unknown_identity"
    r = client.post(f"{API}/identify", json={"features": codec.encode_text(alice[0])})
    assert r.json()["recognised"] is False


def test_replace_swaps_templates(client, codec, rng):
    """replace=true drops the old templates in the same request."""
    old, new = unit(rng), unit(rng)
    enroll(client, codec, "carol", old)
    r = enroll(client, codec, "carol", new, replace=True)
    assert r.status_code == 200 and r.json()["templates_replaced"] == 1
    assert client.post(f"{API}/identify",
                       json={"features": codec.encode_text(old[0])}).json()["recognised"] is False


def test_stranger_is_not_recognised_and_gallery_states(client, codec, rng):
    """An empty gallery and an unknown face both answer 'not recognised' with a reason."""
    probe = {"features": codec.encode_text(unit(rng)[0])}
    assert client.post(f"{API}/identify", json=probe).json() == {
        "recognised": False, "identity": None, "display_name": None, "reason": "empty_gallery"}
    enroll(client, codec, "alice", unit(rng))
    assert client.post(f"{API}/identify", json=probe).json()["reason"] == "no_match"


def test_no_distances_unless_enabled(make_client, codec, rng):
    """Responses carry no distance by default and do when expose_distances is set."""
    face = unit(rng)
    closed, opened = make_client(), make_client(expose_distances=True)
    enroll(closed, codec, "alice", face)
    for path, body in (("identify", {}), ("verify", {"identity": "alice"})):
        body["features"] = codec.encode_text(near(face[0], rng))
        hidden = closed.post(f"{API}/{path}", json=body)
        assert "distance" not in hidden.json() and "distance" not in hidden.text
        shown = opened.post(f"{API}/{path}", json=body).json()
        assert 0 <= shown["distance"] < 0.5


def test_ambiguous_match_is_not_recognised(client, codec, rng):
    """When two identities are both under the threshold the answer is 'ambiguous'."""
    face = unit(rng)[0]
    with pytest.warns(UserWarning):
        enroll(client, codec, "twin-a", [face])
        enroll(client, codec, "twin-b", [near(face, rng, 0.01)])
    r = client.post(f"{API}/identify", json={"features": codec.encode_text(face)}).json()
    assert r == {"recognised": False, "identity": None, "display_name": None,
                 "reason": "ambiguous"}


def test_model_and_health(client, enroller):
    """GET /model says what a client must encode with; /health answers ok."""
    model = client.get(f"{API}/model").json()
    assert (model["model_id"], model["dim"], model["threshold"]) == (MODEL_ID, DIM, 0.5)
    assert model["distances_exposed"] is False
    assert client.get(f"{API}/health").json()["status"] == "ok"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "malformed_json"),
    ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty_body"),
    ({"json": [1, 2]}, 422, "invalid_request"),
    ({"json": {"features": "AAAA", "extra": 1}}, 422, "unknown_field"),
    ({"json": {"challenge": None}}, 422, "missing_field"),
    ({"json": {"features": 5}}, 422, "invalid_request"),
    ({"json": {"features": "RklEVgE"}}, 422, "invalid_feature"),
    ({"json": {"features": "not*base64"}}, 422, "invalid_feature"),
    ({"content": b'{"features": NaN}', "headers": {"content-type": "application/json"}}, 400,
     "malformed_json"),
    ({"content": b"features=x", "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type"),
])
def test_bad_requests_have_status_and_code(client, kwargs, status, code):
    """Malformed JSON and bad fields get the documented status and error code."""
    r = client.post(f"{API}/identify", **kwargs)
    assert r.status_code == status, r.text
    check_documented(openapi_document(), "POST", f"{API}/identify", r)
    error = r.json()["error"]
    assert error["code"] == code and len(error["message"]) > 20
    assert set(r.json()) == {"error"}


def test_bad_payload_names_field_and_reason(client, codec, rng):
    """A corrupted payload is a 422 naming the item and the codec's failed check."""
    good = codec.encode_text(unit(rng)[0])
    bad = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    r = client.post(f"{API}/enroll", json={"identity": "x", "features": [good, bad]})
    assert r.status_code == 422
    assert r.json()["error"] | {"message": ""} == {
        "code": "invalid_feature", "message": "", "field": "features[1]", "reason": "checksum"}


def test_wrong_model_id_is_a_conflict(client, rng):
    """A payload made by another model is refused with 409 model_mismatch."""
    other = FeatureCodec("another-model", DIM).encode_text(unit(rng)[0])
    r = client.post(f"{API}/identify", json={"features": other})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "model_mismatch"
    assert MODEL_ID in r.json()["error"]["message"]


def test_invalid_and_unknown_identity(client, codec, rng):
    """Bad identity names are 422 and verifying an unknown identity is 404."""
    features = codec.encode_text(unit(rng)[0])
    r = client.post(f"{API}/enroll", json={"identity": " padded", "features": [features]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_identity")
    r = client.post(f"{API}/verify", json={"identity": "nobody", "features": features})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_identity")


def test_too_many_enrollment_features(make_client, codec, rng):
    """More templates than max_enroll_features in one request is refused."""
    client = make_client(max_enroll_features=2)
    r = enroll(client, codec, "alice", unit(rng, 3))
    assert (r.status_code, r.json()["error"]["field"]) == (422, "features")


def test_unknown_route_and_method_are_json(client):
    """404 and 405 use the same JSON error shape."""
    r = client.get(f"{API}/nope")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = client.get(f"{API}/identify")
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")


def test_scoped_keys_guard_every_operation(make_client, enroller, codec, rng):
    """Once the store has a key, every scoped operation needs a key with its scope."""
    client = make_client()
    features = [codec.encode_text(unit(rng)[0])]
    # No keys yet: open (serve allows this on loopback only), and no conflicts leak.
    r = client.post(f"{API}/enroll", json={"identity": "a", "features": features})
    assert r.status_code == 201 and "conflicts" not in r.json()
    _, device = enroller.create_api_key("kiosk", ["device"])
    _, operator = enroller.create_api_key("admin", ["operator"])
    for method, path, body in [("POST", "/enroll", {"identity": "b", "features": features}),
                               ("POST", "/identify", {"features": features[0]}),
                               ("POST", "/verify", {"identity": "a", "features": features[0]}),
                               ("GET", "/identities", None), ("DELETE", "/identities/a", None),
                               ("POST", "/challenge", None)]:
        r = client.request(method, f"{API}{path}", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized"), path
        r = client.request(method, f"{API}{path}", json=body,
                           headers={"authorization": "Bearer fidk_" + "0" * 16 + "_" + "x" * 43})
        assert r.status_code == 401, path
    as_device = {"authorization": f"Bearer {device}"}
    as_operator = {"x-api-key": operator}
    assert client.post(f"{API}/identify", json={"features": features[0]},
                       headers=as_device).json()["identity"] == "a"
    assert client.post(f"{API}/challenge", headers=as_device).status_code == 200
    r = client.post(f"{API}/enroll", json={"identity": "b", "features": features},
                    headers=as_device)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    assert client.get(f"{API}/identities", headers=as_device).status_code == 403
    r = client.post(f"{API}/enroll", json={"identity": "b", "features": features},
                    headers=as_operator)
    assert r.status_code == 201 and r.json()["conflicts"] == ["a"]
    assert client.delete(f"{API}/identities/b", headers=as_operator).status_code == 200
    for open_route in ("/health", "/model", "/openapi.json"):
        assert client.get(f"{API}{open_route}").status_code == 200
    enroller.revoke_api_key("kiosk")
    r = client.post(f"{API}/identify", json={"features": features[0]}, headers=as_device)
    assert r.status_code == 401


def test_openapi_lists_exactly_the_routes(client):
    """The served OpenAPI document names exactly the API routes the app answers."""
    doc = client.get(f"{API}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for route in client.app.routes:
        path = re.sub(r":\w+}", "}", getattr(route, "path", ""))
        if path.startswith(API):
            served |= {(m, path) for m in route.methods if m != "HEAD"}
    assert documented == served
    assert len(served) == len(ENDPOINTS)
    # Every $ref resolves.
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', client.get(f"{API}/openapi.json").text))
    assert refs <= set(openapi_document()["components"]["schemas"])


def test_audit_log_has_decisions_never_payloads(client, codec, rng, caplog):
    """Audit lines record who/what/decision as JSON and never a payload or vector value."""
    face = unit(rng)
    payload = codec.encode_text(face[0])
    with caplog.at_level(logging.INFO, logger="faceid_sdk.audit"):
        client.post(f"{API}/enroll", json={"identity": "alice", "features": [payload]})
        client.post(f"{API}/identify", json={"features": payload})
        client.post(f"{API}/identify", json={"features": payload[:-4]})
        client.post(f"{API}/verify", json={"identity": "alice", "features": payload})
    lines = [r.getMessage() for r in caplog.records if r.name == "faceid_sdk.audit"]
    assert len(lines) == 4
    import json

    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["enroll", "identify", "identify", "verify"]
    assert events[1]["decision"] == "recognised" and events[1]["identity"] == "alice"
    assert events[2]["reason"] == "invalid_feature"
    text = "\n".join(lines)
    for chunk in (payload, payload[:12], payload[-12:], f"{float(face[0][0]):.4f}"):
        assert chunk not in text
