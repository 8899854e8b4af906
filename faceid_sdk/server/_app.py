"""The ASGI application: routes from :data:`~.openapi.ENDPOINTS`, guards, handlers.

Request flow for ``/api/...``::

    _Guard (ASGI)   rate limit -> content type (images refused) -> Content-Length cap
                    -> byte counting and image sniffing while the body streams in
    handler         parse JSON strictly -> validate fields -> decode payloads
                    -> [challenge] -> match or mutate in the thread pool -> audit

Handlers are ``async`` so that reading the (capped) body stays on the event loop,
and run the CPU-bound matching in the thread pool: FAISS releases the GIL, the
Matcher allows concurrent reads and the Enroller serializes its own mutations.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .._codec import WIRE_VERSION
from .._enroll import Enroller
from ..errors import FaceIDError, InvalidFeatureError, UnknownIdentityError
from ..identity import check_text, normalize_identity
from ..keys import ApiKey
from ._audit import audit
from ._challenge import ChallengeStore
from ._errors import ChallengeError, HTTPError, error_body, from_library_error
from ._ratelimit import RateLimiter, TokenBucketLimiter
from ._settings import ServerSettings
from .openapi import API_PREFIX, ENDPOINTS, MAX_TEXT_FIELD, Endpoint, openapi_document

__all__ = ["create_app"]

IMAGE_REFUSED = (
    "images never leave the device: this server accepts only encoded feature vectors. "
    "Detect, align and embed the face on the device, encode the vector with "
    "FeatureCodec.encode_text and send it as JSON (see GET /api/v1/model)"
)

# Leading bytes of the image formats a camera or a gallery produces.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP; a JSON body never starts with 'B'
    b"II*\x00",  # TIFF
    b"MM\x00*",
)
# The same formats as base64 text (standard and url-safe) or a data: URL.
_IMAGE_TEXT_PREFIXES = ("/9j/", "_9j_", "iVBORw0KGgo", "R0lGOD", "UklGR", "Qk")
_BASE64_HEAD = re.compile(r"[A-Za-z0-9+/_-]{24}")
_SNIFF_BYTES = 16
_UNLIMITED = frozenset(e.full_path for e in ENDPOINTS if not e.rate_limited)

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Cross-origin isolation: the page may then share memory between threads, which is what
    # lets TF.js's wasm backend run the models on every core (one thread otherwise). Nothing
    # the page loads comes from another origin.
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def _looks_like_image_bytes(head: bytes) -> bool:
    head = head.lstrip(b" \t\r\n")
    if head.startswith(_IMAGE_MAGIC):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return True
    return head.startswith(b"RIFF") and head[8:12] == b"WEBP"


def _looks_like_image_text(text: str) -> bool:
    """Whether *text* is an image in disguise: a ``data:`` URL of any kind and in any case,
    or base64 (standard or url-safe) whose first bytes are an image format's.

    Every valid payload starts with the magic 'FIDV' ('RklEV' in base64url), which decodes
    to no image format, so none of this can refuse a real payload.
    """
    head = text.lstrip()[:64]
    if head[:5].lower() == "data:" or head.startswith(_IMAGE_TEXT_PREFIXES):
        return True
    if not _BASE64_HEAD.match(head):
        return False
    chunk = head[:24].replace("-", "+").replace("_", "/")
    try:
        return _looks_like_image_bytes(base64.b64decode(chunk, validate=True))
    except (binascii.Error, ValueError):
        return False


def client_address(scope: Scope, trusted_proxies: tuple[str, ...] = ()) -> str:
    """The address a request comes from: the peer, or the forwarded one if the peer is trusted."""
    peer = scope.get("client")
    host = str(peer[0]) if peer else "unknown"
    if host not in trusted_proxies:
        return host
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            # The rightmost hop not added by our own proxies is the first one we can trust.
            for hop in reversed(hops):
                if hop not in trusted_proxies:
                    return str(hop[:64])
    return host


def _route_pattern(path: str) -> re.Pattern[str]:
    escaped = re.escape(path).replace(re.escape("{identity}"), "(?P<identity>.+)")
    return re.compile(escaped + r"\Z", re.DOTALL)


# Each API path, exactly (\Z: Python's $ would also match before a trailing newline, so
# '/enroll%0A' reached the enroll route), with the methods it answers.
_ROUTES: dict[str, tuple[re.Pattern[str], set[str]]] = {}
for _endpoint in ENDPOINTS:
    _pattern, _methods = _ROUTES.setdefault(
        _endpoint.full_path, (_route_pattern(_endpoint.full_path), set()))
    _methods.update({_endpoint.method, "HEAD"} if _endpoint.method == "GET"
                    else {_endpoint.method})


def _check_route(scope: Scope) -> None:
    """404 for a path the API does not have, 405 (with Allow) for a method it does not take."""
    path = scope["path"]
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise HTTPError(404, "not_found", "no such route: paths hold no control characters "
                        f"(GET {API_PREFIX}/openapi.json lists the API)")
    allowed: set[str] = set()
    for pattern, methods in _ROUTES.values():
        if pattern.match(path):
            allowed |= methods
    if not allowed:
        raise HTTPError(404, "not_found", f"no route {path[:128]!r}: GET "
                        f"{API_PREFIX}/openapi.json lists the API")
    if scope["method"] not in allowed:
        raise HTTPError(405, "method_not_allowed",
                        f"method {scope['method'][:16]} is not allowed here (allowed: "
                        f"{', '.join(sorted(allowed))})",
                        headers={"allow": ", ".join(sorted(allowed))})


def _error_response(exc: HTTPError, request_id: str | None = None) -> JSONResponse:
    headers = dict(exc.headers)
    headers["cache-control"] = "no-store"
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class _Guard:
    """Pure ASGI middleware: refuses floods, images and big bodies before any handler runs."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings,
                 limiter: RateLimiter | None) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        if not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send_with_headers)
            return
        try:
            _check_route(scope)
            self._check_rate(scope)
            self._check_headers(scope)
            await self.app(scope, self._counting(receive), send_with_headers)
        except HTTPError as exc:
            if started:
                raise
            audit(client=client_address(scope, self.settings.trusted_proxies),
                  method=scope["method"], route=scope["path"][:128], status=exc.status,
                  event="refused", decision="refused", reason=exc.code)
            await _error_response(exc)(scope, receive, send_with_headers)

    def _check_rate(self, scope: Scope) -> None:
        if self.limiter is None or scope["path"] in _UNLIMITED:
            return
        decision = self.limiter.check(client_address(scope, self.settings.trusted_proxies))
        if not decision.allowed:
            raise HTTPError(
                429, "rate_limited",
                f"too many requests from this client (limit {self.settings.rate_per_second:g}"
                f"/s, burst {self.settings.rate_burst}): retry after "
                f"{decision.retry_after_header} s",
                headers={"retry-after": decision.retry_after_header},
            )

    def _check_headers(self, scope: Scope) -> None:
        raw = list(scope.get("headers", ()))
        for name in (b"content-type", b"content-length", b"transfer-encoding", b"authorization"):
            if sum(1 for k, _ in raw if k == name) > 1:
                raise HTTPError(400, "duplicate_header",
                                f"header {name.decode()!r} must appear once: send one value")
        headers = {k: v for k, v in raw}
        coding = headers.get(b"transfer-encoding")
        if coding is not None and coding.strip().lower() != b"chunked":
            raise HTTPError(400, "bad_transfer_encoding",
                            "Transfer-Encoding must be 'chunked' alone (got "
                            f"{coding[:32].decode('latin-1')!r}): send the JSON uncompressed")
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype.startswith(("multipart/", "image/")):
            raise HTTPError(415, "image_refused", IMAGE_REFUSED)
        length_text = headers.get(b"content-length")
        has_body = b"transfer-encoding" in headers
        if length_text is not None:
            try:
                length = int(length_text)
                if length < 0:
                    raise ValueError
            except ValueError:
                raise HTTPError(400, "bad_content_length",
                                "Content-Length must be a non-negative integer (got "
                                f"{length_text[:32]!r}): let your HTTP client set it") from None
            if length > self.settings.max_body_bytes:
                raise HTTPError(
                    413, "body_too_large",
                    f"request body must be at most {self.settings.max_body_bytes} bytes (got "
                    f"Content-Length {length}): send only encoded feature vectors, at most "
                    f"{self.settings.max_enroll_features} per request",
                )
            has_body = has_body or length > 0
        if has_body and ctype != "application/json":
            raise HTTPError(
                415, "unsupported_media_type",
                f"request body must be application/json (got {ctype[:64] or 'no Content-Type'!r})"
                ": send the fields as a JSON object with Content-Type: application/json",
            )

    def _counting(self, receive: Receive) -> Receive:
        limit = self.settings.max_body_bytes
        seen = 0
        head = b""
        sniffed = False

        async def wrapped() -> Message:
            nonlocal seen, head, sniffed
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                # Stop here: the rest of the body is never read into memory.
                raise HTTPError(
                    413, "body_too_large",
                    f"request body must be at most {limit} bytes (got more while streaming): "
                    "send only encoded feature vectors",
                )
            if not sniffed:
                head += chunk[: _SNIFF_BYTES - len(head)]
                if len(head) >= _SNIFF_BYTES or not message.get("more_body", False):
                    sniffed = True
                    if _looks_like_image_bytes(head):
                        raise HTTPError(415, "image_refused", IMAGE_REFUSED)
            return message

        return wrapped


# -- request parsing ----------------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _read_object(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    body = await request.body()
    try:
        # UTF-8 only (RFC 8259): json.loads would also guess UTF-16 and UTF-32 from bytes.
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "malformed_json",
                        "request body must be UTF-8 JSON (got bytes that are not UTF-8, such as "
                        "UTF-16): serialize as UTF-8") from None
    if not raw.strip():
        raise HTTPError(400, "empty_body",
                        "request body must be a JSON object (got an empty body): send "
                        f"{{{', '.join(repr(a) for a in allowed)}}} as application/json")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = str(exc)[:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise HTTPError(400, "malformed_json",
                        f"request body must be valid UTF-8 JSON (got a parse error: {detail}): "
                        "check the client's serialization") from None
    _check_strings(data)
    if not isinstance(data, dict):
        raise HTTPError(422, "invalid_request",
                        f"request body must be a JSON object (got a JSON {_json_type(data)}): "
                        f"send {{{', '.join(repr(a) for a in allowed)}}}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise HTTPError(422, "unknown_field",
                        f"request field {unknown[0][:64]!r} is not one this endpoint reads: "
                        f"expected only {', '.join(allowed)}", field=unknown[0][:64])
    return data


def _check_strings(data: object) -> None:
    """Refuse lone surrogates (legal in JSON escapes, not in UTF-8) before they reach storage."""
    stack = [data]
    while stack:  # iterative: JSON nesting may be deeper than Python's recursion limit
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise HTTPError(400, "malformed_json",
                                "request body must encode text as valid Unicode (got a lone "
                                "surrogate escape such as \\ud800): fix the client's string "
                                "handling") from None


def _text(body: Mapping[str, Any], name: str, *, required: bool = False,
          max_length: int = MAX_TEXT_FIELD) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise HTTPError(422, "missing_field", f"request field {name!r} is required (got "
                            f"{'null' if name in body else 'nothing'})", field=name)
        return None
    if not isinstance(value, str):
        raise HTTPError(422, "invalid_request",
                        f"{name!r} must be a string (got a JSON {_json_type(value)})", field=name)
    if len(value) > max_length:
        raise HTTPError(422, "invalid_request",
                        f"{name!r} must be at most {max_length} characters (got {len(value)})",
                        field=name)
    if _looks_like_image_text(value):
        raise HTTPError(415, "image_refused", IMAGE_REFUSED, field=name)
    try:
        return check_text(value, field=name)
    except FaceIDError as exc:
        raise HTTPError(422, "invalid_text", str(exc), field=name) from None


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HTTPError(422, "invalid_request",
                        f"{name!r} must be true or false (got a JSON {_json_type(value)})",
                        field=name)
    return value


def _identity(value: object, field: str = "identity") -> str:
    if isinstance(value, str) and _looks_like_image_text(value):
        raise HTTPError(415, "image_refused", IMAGE_REFUSED, field=field)
    try:
        return normalize_identity(value)
    except FaceIDError as exc:
        raise from_library_error(exc, field=field) from None


# -- the application ----------------------------------------------------------------------


class _Api:
    """Handlers bound to one Enroller and one set of settings."""

    def __init__(self, enroller: Enroller, settings: ServerSettings) -> None:
        self.enroller = enroller
        self.settings = settings
        self.challenges = ChallengeStore(settings.challenge_ttl_seconds,
                                         max_outstanding=settings.max_challenges)

    # -- helpers ----------------------------------------------------------------------------

    def _decode(self, value: object, field: str) -> np.ndarray:
        if not isinstance(value, str):
            raise HTTPError(422, "invalid_request",
                            f"{field} must be a base64url feature payload string (got a JSON "
                            f"{_json_type(value)}): encode the vector with "
                            "FeatureCodec.encode_text", field=field)
        if _looks_like_image_text(value):
            raise HTTPError(415, "image_refused", IMAGE_REFUSED, field=field)
        try:
            return self.enroller.codec.decode_text(value)
        except InvalidFeatureError as exc:
            raise from_library_error(exc, field=field) from None

    def _challenge(self, body: Mapping[str, Any], client: str) -> None:
        """Consume the nonce last, so that a request refused for its fields keeps it usable."""
        if "challenge" in body and body["challenge"] is not None:
            self.challenges.consume(body["challenge"], client)
        elif self.settings.require_challenge:
            raise ChallengeError(
                "challenge_required",
                "this server requires a challenge: POST /api/v1/challenge, then send the "
                "nonce in 'challenge' with this request",
            )

    def _distance(self, value: float) -> dict[str, float | None]:
        if not self.settings.expose_distances:
            return {}
        return {"distance": None if not np.isfinite(value) else round(float(value), 6)}

    # -- handlers: (request, client) -> (status, body, audit fields) --------------------------

    async def enroll(self, request: Request, client: str) -> tuple[int, Any, dict[str, Any]]:
        body = await _read_object(
            request, ("identity", "features", "display_name", "external_id", "replace"))
        identity = _identity(body.get("identity"))
        features = body.get("features")
        if isinstance(features, str):
            features = [features]  # one template is a common, harmless shorthand
        limit = self.settings.max_enroll_features
        if not isinstance(features, list) or not 1 <= len(features) <= limit:
            got = (f"{len(features)} items" if isinstance(features, list)
                   else f"a JSON {_json_type(features)}")
            raise HTTPError(422, "invalid_request",
                            f"'features' must be a list of 1 to {limit} base64url payloads "
                            f"(got {got})", field="features")
        matrix = np.stack([self._decode(f, f"features[{i}]") for i, f in enumerate(features)])
        display_name = _text(body, "display_name")
        external_id = _text(body, "external_id")
        replace = _flag(body, "replace")
        call = self.enroller.replace if replace else self.enroller.enroll
        result = await run_in_threadpool(call, identity, matrix, display_name=display_name,
                                         external_id=external_id)
        answer = {
            "identity": result.identity,
            "created": result.created,
            "templates_added": len(result.template_ids),
            "templates_replaced": result.replaced,
        }
        key = getattr(request.state, "key", None)
        if key is not None and key.allows("list"):
            # Who a new template is close to says as much as identify would hide as
            # "ambiguous": only for callers who may list the gallery anyway.
            answer["conflicts"] = list(result.conflicts)
        return (201 if result.created else 200), answer, {"identity": result.identity,
            "decision": "created" if result.created else ("replaced" if replace else "added")}

    def _identify_sync(self, vector: np.ndarray) -> dict[str, Any]:
        # Through the Enroller: it rotates the query with the store's template key, if any,
        # and decides with the store's one policy, as the CLI and the SDK do.
        result = self.enroller.identify(vector)
        reason = result.reason
        identity = result.identity if result.accepted else None
        display_name = None
        if identity is not None:
            try:
                display_name = self.enroller.display_name(identity)
            except UnknownIdentityError:  # removed between the match and this read
                reason, identity = "no_match", None
        return {"recognised": identity is not None, "identity": identity,
                "display_name": display_name, "reason": reason,
                **self._distance(result.distance)}

    def _verify_sync(self, vector: np.ndarray, identity: str) -> tuple[Any, str]:
        result = self.enroller.verify(vector, identity)
        return result, result.reason

    async def identify(self, request: Request, client: str) -> tuple[int, Any, dict[str, Any]]:
        body = await _read_object(request, ("features", "challenge"))
        if "features" not in body:
            raise HTTPError(422, "missing_field", "request field 'features' is required: send "
                            "one base64url feature payload", field="features")
        vector = self._decode(body["features"], "features")
        self._challenge(body, client)
        answer = await run_in_threadpool(self._identify_sync, vector)
        return 200, answer, {"identity": answer["identity"],
                             "decision": "recognised" if answer["recognised"] else "rejected",
                             "reason": answer["reason"]}

    async def verify(self, request: Request, client: str) -> tuple[int, Any, dict[str, Any]]:
        body = await _read_object(request, ("identity", "features", "challenge"))
        identity = _identity(body.get("identity"))
        if "features" not in body:
            raise HTTPError(422, "missing_field", "request field 'features' is required: send "
                            "one base64url feature payload", field="features")
        vector = self._decode(body["features"], "features")
        self._challenge(body, client)
        result, reason = await run_in_threadpool(self._verify_sync, vector, identity)
        answer = {"verified": reason == "match", "identity": identity, "reason": reason,
                  **self._distance(result.distance)}
        return 200, answer, {"identity": identity, "reason": reason,
                             "decision": "verified" if answer["verified"] else "rejected"}

    async def remove(self, request: Request, client: str) -> tuple[int, Any, dict[str, Any]]:
        identity = _identity(request.path_params["identity"])
        count = await run_in_threadpool(self.enroller.remove, identity)
        return 200, {"identity": identity, "templates_removed": count}, \
            {"identity": identity, "decision": "removed"}

    async def list_identities(self, request: Request, client: str) -> tuple[int, Any, None]:
        records = await run_in_threadpool(self.enroller.identities)
        return 200, {"identities": [r.to_dict() for r in records]}, None

    async def health(self, request: Request, client: str) -> tuple[int, Any, None]:
        return 200, {"status": "ok", "version": __version__}, None

    async def model(self, request: Request, client: str) -> tuple[int, Any, None]:
        return 200, {
            "model_id": self.enroller.model_id,
            "dim": self.enroller.dim,
            "threshold": float(self.enroller.policy.threshold),
            "wire_version": WIRE_VERSION,
            "dtypes": ["float32", "float16"],
            "max_body_bytes": self.settings.max_body_bytes,
            "max_enroll_features": self.settings.max_enroll_features,
            "challenge_required": self.settings.require_challenge,
            "distances_exposed": self.settings.expose_distances,
        }, None

    async def challenge(self, request: Request, client: str) -> tuple[int, Any, None]:
        issued = self.challenges.issue(client)
        expires = _dt.datetime.fromtimestamp(issued.expires_at, _dt.timezone.utc)
        return 200, {"nonce": issued.nonce,
                     "expires_at": expires.isoformat(timespec="seconds"),
                     "ttl_seconds": issued.ttl_seconds}, None

    async def openapi(self, request: Request, client: str) -> tuple[int, Any, None]:
        return 200, openapi_document(self.settings), None

    # -- wiring -----------------------------------------------------------------------------

    def _authorize(self, request: Request, spec: Endpoint) -> ApiKey | None:
        """The caller's key, checked for *spec*'s scopes; ``None`` when the API is open."""
        mode = self.settings.auth
        if mode == "open" or (mode == "auto" and not self.enroller.has_api_keys()):
            return None
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        key = None if not given else self.enroller.authenticate(given)
        if key is None:
            raise HTTPError(401, "unauthorized",
                            "this operation needs an API key: send 'Authorization: Bearer "
                            "fidk_...' (an operator creates one with `faceid-sdk keys create`)",
                            headers={"www-authenticate": "Bearer"})
        if not any(key.allows(scope) for scope in spec.scopes):
            raise HTTPError(403, "forbidden",
                            f"this key may not {' or '.join(spec.scopes)}: ask an operator for a "
                            "key with that scope")
        return key

    def endpoint(self, spec: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        handler: Callable[[Request, str], Awaitable[tuple[int, Any, dict[str, Any] | None]]]
        handler = getattr(self, spec.name)
        audited = spec.method != "GET" and spec.name != "challenge"

        async def run(request: Request) -> Response:
            client = client_address(request.scope, self.settings.trusted_proxies)
            request_id = secrets.token_hex(8)
            try:
                if spec.scopes:
                    request.state.key = await run_in_threadpool(self._authorize, request, spec)
                status, body, fields = await handler(request, client)
            except ClientDisconnect:
                # The client went away mid-body (or was cut off by the request deadline):
                # one line, no traceback, and nothing to answer.
                audit(client=client, method=spec.method, route=spec.full_path, status=499,
                      event=spec.name, decision="aborted", reason="client_disconnected",
                      request_id=request_id)
                return Response(status_code=400)
            except HTTPError as exc:
                error = exc
            except FaceIDError as exc:
                error = from_library_error(exc)
            else:
                if audited and fields is not None:
                    audit(client=client, method=spec.method, route=spec.full_path,
                          status=status, event=spec.name, request_id=request_id, **fields)
                return JSONResponse(body, status_code=status, headers={
                    "cache-control": "no-store", "x-request-id": request_id})
            if audited or error.status in (401, 403):
                audit(client=client, method=spec.method, route=spec.full_path,
                      status=error.status, event=spec.name, decision="error",
                      reason=error.code, request_id=request_id)
            return _error_response(error, request_id)

        run.__name__ = spec.name
        return run


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    message = {
        404: f"no route {request.url.path[:128]!r}: the API lives under {API_PREFIX} "
             f"(GET {API_PREFIX}/openapi.json lists it)",
        405: f"method {request.method} is not allowed on {request.url.path[:128]!r}: see "
             f"GET {API_PREFIX}/openapi.json",
    }.get(status, getattr(exc, "detail", "HTTP error"))
    headers = getattr(exc, "headers", None)
    return JSONResponse(error_body(code, str(message)), status_code=status, headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Never echo the exception: it may quote request data or server paths.
    return JSONResponse(error_body("internal_error",
                                   "the server failed to handle this request: retry, and "
                                   "report it with the time if it persists"),
                        status_code=500)


def create_app(
    enroller: Enroller,
    *,
    settings: ServerSettings | None = None,
    rate_limiter: RateLimiter | None = None,
) -> Starlette:
    """Build the ASGI app serving *enroller* (which the caller opens and closes).

    Args:
        enroller: The gallery; its model id and dimension are what clients must encode.
        settings: Limits and policies (:class:`ServerSettings`); the defaults suit a
            public deployment.
        rate_limiter: Replaces the per-process token buckets, e.g. by a shared limiter.
    """
    settings = settings or ServerSettings()
    api = _Api(enroller, settings)
    routes: list[BaseRoute] = [
        Route(spec.route_path, api.endpoint(spec), methods=[spec.method], name=spec.name)
        for spec in ENDPOINTS
    ]
    if settings.static_dir is not None:
        static = Path(settings.static_dir)
        if not static.is_dir():
            raise ValueError(f"static_dir must be an existing folder (got {str(static)!r}): "
                             "point it at the browser client, e.g. clients/web")
        routes.append(Mount("/", app=StaticFiles(directory=static, html=True), name="static"))
    else:
        async def index(request: Request) -> Response:
            return JSONResponse({"service": "faceid-sdk", "api": API_PREFIX,
                                 "openapi": f"{API_PREFIX}/openapi.json"})
        routes.append(Route("/", index, methods=["GET"], name="index"))
    if rate_limiter is None and settings.rate_per_second is not None:
        rate_limiter = TokenBucketLimiter(settings.rate_per_second, settings.rate_burst,
                                          max_keys=settings.rate_max_clients)
    from starlette.middleware import Middleware

    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, settings=settings, limiter=rate_limiter)],
        exception_handlers={StarletteHTTPException: _http_exception, 500: _internal_error},
    )
    app.state.settings = settings
    app.state.enroller = enroller
    app.state.challenges = api.challenges
    return app
