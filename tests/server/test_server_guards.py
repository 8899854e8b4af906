"""What the server refuses before any handler runs: images, big bodies, floods, replays."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from server_helpers import API, unit

from faceid_sdk.server import (
    ChallengeError,
    ChallengeStore,
    ServerSettings,
    TokenBucketLimiter,
    client_address,
    create_app,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(200)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def asgi_post(app, path: str, chunks: list[bytes], headers: dict[str, str]):
    """Drive the app over raw ASGI; return (status, body, number of chunks it read)."""
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1],
                    "more_body": read < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("10.0.0.1", 5000), "server": ("test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, read


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"files": {"photo": ("face.jpg", JPEG, "image/jpeg")}}, None),
    ({"content": JPEG, "headers": {"content-type": "image/jpeg"}}, None),
    ({"content": JPEG, "headers": {"content-type": "application/json"}}, None),
    ({"content": PNG, "headers": {"content-type": "application/json"}}, None),
    ({"json": {"features": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}},
     "features"),
    ({"json": {"features": base64.b64encode(JPEG).decode()}}, "features"),
    ({"json": {"features": base64.urlsafe_b64encode(PNG).decode().rstrip("=")}}, "features"),
])
def test_images_are_refused(client, kwargs, field):
    """Multipart uploads, image types, image bytes and base64 images all get 415."""
    for path in ("identify", "enroll", "verify"):
        if "json" in kwargs and path != "identify":
            kwargs = {"json": {**kwargs["json"], "identity": "x"}}
        r = client.post(f"{API}/{path}", **kwargs)
        assert r.status_code == 415, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "image_refused"
        assert "images never leave the device" in error["message"]
        assert (error.get("field") or "").startswith(field or "")


def test_oversized_content_length_is_refused_unread(enroller):
    """A declared body over the cap is refused with 413 before one byte is read."""
    app = create_app(enroller, settings=ServerSettings(rate_per_second=None))
    status, body, read = asgi_post(app, f"{API}/identify", [b"x" * 1024] * 1000,
                                   {"content-type": "application/json",
                                    "content-length": str(1024 * 1000)})
    assert status == 413 and b"body_too_large" in body
    assert read == 0


def test_oversized_streamed_body_stops_reading(enroller):
    """A chunked body is counted as it streams and abandoned once it passes the cap."""
    app = create_app(enroller, settings=ServerSettings(rate_per_second=None,
                                                       max_body_bytes=4096))
    chunks = [b'{"features": "' + b"A" * 1000] + [b"A" * 1000] * 999
    status, body, read = asgi_post(app, f"{API}/identify", chunks,
                                   {"content-type": "application/json",
                                    "transfer-encoding": "chunked"})
    assert status == 413 and b"body_too_large" in body
    assert read == 5  # 5000 bytes > 4096: the other 995 chunks were never pulled


def test_body_at_the_limit_is_read(make_client, codec, rng):
    """A legitimate request far below the cap is unaffected."""
    client = make_client(max_body_bytes=2048)
    r = client.post(f"{API}/identify", json={"features": codec.encode_text(unit(rng)[0])})
    assert r.status_code == 200


def test_rate_limit_answers_429_with_retry_after(make_client, codec, rng):
    """Past the burst a client gets 429 with Retry-After; health checks are not limited."""
    client = make_client(rate_per_second=0.5, rate_burst=3)
    statuses = [client.get(f"{API}/model").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = client.get(f"{API}/model")
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert client.get(f"{API}/health").status_code == 200


def test_token_bucket_refills_and_stays_bounded():
    """Tokens come back at the configured rate and old buckets are evicted past max_keys."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(2.0, 2, max_keys=3, clock=clock)
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, False]
    denied = limiter.check("a")
    assert denied.retry_after == pytest.approx(0.5) and denied.retry_after_header == "1"
    clock.now += 0.5
    assert limiter.check("a").allowed
    for key in "bcdef":
        limiter.check(key)
    assert len(limiter._buckets) == 3


def test_forwarded_for_is_believed_only_from_trusted_proxies():
    """X-Forwarded-For picks the rate-limit key only when the peer is a trusted proxy."""
    scope = {"client": ("10.0.0.9", 1), "headers": [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4")]}
    assert client_address(scope) == "10.0.0.9"
    assert client_address(scope, ("10.0.0.9",)) == "1.2.3.4"


def test_challenge_is_single_use(make_client, codec, rng):
    """A required nonce works once; a second use, or none, is refused."""
    client = make_client(require_challenge=True)
    features = codec.encode_text(unit(rng)[0])
    r = client.post(f"{API}/identify", json={"features": features})
    assert (r.status_code, r.json()["error"]["code"]) == (428, "challenge_required")
    nonce = client.post(f"{API}/challenge").json()["nonce"]
    # A request refused for its fields does not spend the nonce.
    r = client.post(f"{API}/identify", json={"features": "RklEVgE", "challenge": nonce})
    assert r.status_code == 422
    body = {"features": features, "challenge": nonce}
    assert client.post(f"{API}/identify", json=body).status_code == 200
    r = client.post(f"{API}/identify", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "challenge_invalid")
    assert client.get(f"{API}/model").json()["challenge_required"] is True


def test_challenge_expires(make_client, codec, rng):
    """A nonce used after its time to live is refused as expired."""
    client = make_client(require_challenge=True, challenge_ttl_seconds=0.05)
    issued = client.post(f"{API}/challenge").json()
    assert issued["ttl_seconds"] == 0.05 and issued["expires_at"].endswith("+00:00")
    time.sleep(0.1)
    r = client.post(f"{API}/verify", json={"identity": "x", "challenge": issued["nonce"],
                                          "features": codec.encode_text(unit(rng)[0])})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "challenge_expired")


def test_challenge_store_binds_client_and_bounds_memory():
    """Nonces belong to the client they were issued to and old ones are dropped."""
    clock = FakeClock()
    store = ChallengeStore(10, max_outstanding=2, clock=clock)
    first = store.issue("1.1.1.1")
    with pytest.raises(ChallengeError, match="another client"):
        store.consume(first.nonce, "2.2.2.2")
    # Another address cannot burn it: its owner still spends it, once.
    store.consume(first.nonce, "1.1.1.1")
    with pytest.raises(ChallengeError):
        store.consume(first.nonce, "1.1.1.1")
    kept = [store.issue("1.1.1.1") for _ in range(3)]
    assert len(store) == 2
    store.consume(kept[-1].nonce, "1.1.1.1")
    late = store.issue("1.1.1.1")
    clock.now += 11
    with pytest.raises(ChallengeError) as info:
        store.consume(late.nonce, "1.1.1.1")
    assert info.value.code == "challenge_expired"
    assert "…" in repr(late) and late.nonce not in repr(late)


def test_security_headers_and_no_store(client):
    """API responses forbid caching and sniffing."""
    r = client.get(f"{API}/model")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_static_client_is_served(tmp_path, enroller):
    """A static folder is served at / next to the API."""
    from starlette.testclient import TestClient

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<h1>faceid</h1>")
    app = create_app(enroller, settings=ServerSettings(static_dir=tmp_path / "web"))
    with TestClient(app) as client:
        page = client.get("/")
        assert "faceid" in page.text
        # Cross-origin isolated, so the page's wasm backend may use threads (docs/client.md).
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert client.get(f"{API}/health").status_code == 200
    with pytest.raises(ValueError, match="static_dir"):
        create_app(enroller, settings=ServerSettings(static_dir=tmp_path / "missing"))


def test_settings_validate_and_repr():
    """Settings refuse nonsense limits and say what is unusual in their repr."""
    with pytest.raises(ValueError, match="max_body_bytes"):
        ServerSettings(max_body_bytes=0)
    with pytest.raises(ValueError, match="auth"):
        ServerSettings(auth="maybe")
    settings = ServerSettings(auth="open", expose_distances=True)
    assert "auth=open" in repr(settings) and "expose_distances" in repr(settings)
