"""Random bodies to every endpoint: never a 500, always a documented status and body."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import API, DIM, MODEL_ID, check_documented

from faceid_sdk import FeatureCodec
from faceid_sdk.server import ENDPOINTS, openapi_document

CODEC = FeatureCodec(MODEL_ID, DIM)
VALID = CODEC.encode_text(np.eye(DIM, dtype=np.float32)[0])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.sampled_from(["\ud800", "a\udfff", "\x00", " x", "\u202e"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Payload-like strings: valid, truncated, mutated, or random base64url.
payloads = st.one_of(
    st.just(VALID),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.tuples(st.integers(0, len(VALID) - 1), st.sampled_from("AZaz09-_")).map(
        lambda t: VALID[: t[0]] + t[1] + VALID[t[0] + 1:]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=120),
)
field_values = st.one_of(json_values, payloads, st.lists(payloads, max_size=3))
shaped = st.dictionaries(
    st.sampled_from(["identity", "features", "display_name", "external_id", "replace",
                     "challenge", "other"]),
    field_values, max_size=5,
)
bodies = st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
DOC = openapi_document()
# (method, documented path, concrete path)
routes = st.sampled_from([
    (e.method, e.full_path, e.full_path.replace("{identity}", "alice")) for e in ENDPOINTS
] + [("DELETE", f"{API}/identities/{{identity}}", f"{API}/identities/{name}")
     for name in ("%00", "x/y", "%20x", "a" * 300)])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=routes, body=bodies, content_type=st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", None]))
def test_random_requests_never_500(client, route, body, content_type):
    """No body, content type or route makes the server fail, and every answer is documented."""
    method, template, path = route
    headers = {"content-type": content_type} if content_type else {}
    r = client.request(method, path, content=body, headers=headers)
    assert r.status_code < 500, r.text
    check_documented(DOC, method, template, r)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
