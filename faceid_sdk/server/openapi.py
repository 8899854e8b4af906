"""The route table of the JSON API and the OpenAPI 3.1 document generated from it.

The app builds its Starlette routes from :data:`ENDPOINTS` and this module builds the
document from the same table, so the two cannot drift apart (a test checks it).
"""

from __future__ import annotations

from typing import Any

import attrs

from .. import __version__
from .._codec import MAX_TEXT_CHARS
from ..identity import MAX_IDENTITY_LENGTH
from ._settings import ServerSettings

__all__ = ["API_PREFIX", "ENDPOINTS", "Endpoint", "openapi_document"]

API_PREFIX = "/api/v1"
MAX_TEXT_FIELD = 256  # display_name, external_id, challenge

_ERROR_TEXT = {
    400: "Malformed request (not JSON, or not what this endpoint reads).",
    401: "Missing, unknown or revoked API key (`Authorization: Bearer fidk_...`).",
    403: "The API key lacks this operation's scope, or the challenge nonce is unknown, spent, "
         "expired or someone else's.",
    404: "No such identity.",
    409: "The payload was made by another model than this gallery's (see GET /model).",
    413: "The body is larger than the server accepts.",
    415: "Not JSON; images (uploads, image types, image bytes) are always refused.",
    422: "Well-formed JSON whose fields are invalid (identity, payload, types).",
    428: "This server requires a challenge nonce (POST /challenge) in the request.",
    429: "Too many requests from this client; retry after `Retry-After` seconds.",
    503: "The identity store is unavailable; retry later.",
}


@attrs.frozen(repr=False)
class Endpoint:
    """One operation of the API: what it reads, answers and may refuse."""

    method: str
    path: str  # OpenAPI form, relative to API_PREFIX
    name: str  # operationId and the handler's name
    summary: str
    ok: dict[int, str]  # status -> response schema
    request: str | None = None
    errors: tuple[int, ...] = ()
    #: Scopes that grant this operation (any one of them); empty: open to everyone.
    scopes: tuple[str, ...] = ()
    description: str = ""
    rate_limited: bool = True

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status this operation may answer, the guard's included."""
        guard = (*_GUARD_ERRORS, 429) if self.rate_limited else _GUARD_ERRORS
        return tuple(sorted({*self.ok, *self.errors, *guard}))

    def __repr__(self) -> str:
        return f"<Endpoint {self.method} {self.path}>"

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def route_path(self) -> str:
        """The Starlette form: path parameters may contain '/' (identities are free text)."""
        return self.full_path.replace("{identity}", "{identity:path}")


# Every API route passes the guard, which may answer these before the handler runs.
_GUARD_ERRORS = (400, 413, 415)
_MATCH_ERRORS = (403, 409, 422, 428, 503)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/enroll", "enroll", "Enroll (or add templates to) an identity",
             {200: "Enrollment", 201: "Enrollment"}, request="EnrollRequest",
             errors=(401, 403, 409, 422, 503), scopes=("enroll",),
             description="201 when the identity is new, 200 when templates were added or "
                         "replaced. Durable before the response is sent. `conflicts` (others "
                         "a new template already matches) only for keys that may list."),
    Endpoint("POST", "/identify", "identify", "1:N: who is this?",
             {200: "Identification"}, request="IdentifyRequest", errors=(401, *_MATCH_ERRORS),
             scopes=("identify",),
             description="Answers a decision and an identity, never a score unless the "
                         "server was started with distances exposed."),
    Endpoint("POST", "/verify", "verify", "1:1: is this the claimed identity?",
             {200: "Verification"}, request="VerifyRequest", errors=(401, *_MATCH_ERRORS, 404),
             scopes=("verify",)),
    Endpoint("DELETE", "/identities/{identity}", "remove", "Remove an identity and its templates",
             {200: "Removal"}, errors=(401, 403, 404, 422, 503), scopes=("remove",)),
    Endpoint("GET", "/identities", "list_identities", "List enrolled identities (never vectors)",
             {200: "IdentityList"}, errors=(401, 403, 503), scopes=("list",)),
    Endpoint("GET", "/health", "health", "Liveness (not rate limited)", {200: "Health"},
             rate_limited=False),
    Endpoint("GET", "/model", "model", "What a client needs to encode its features",
             {200: "ModelInfo"}),
    Endpoint("POST", "/challenge", "challenge", "A single-use nonce for the next identify/verify",
             {200: "Challenge"}, errors=(401, 403), scopes=("identify", "verify"),
             description="Send it back in `challenge`. It narrows replay of captured requests; "
                         "without device attestation it cannot prove the vector is fresh."),
    Endpoint("GET", "/openapi.json", "openapi", "This document", {200: "OpenAPIDocument"}),
)


def _schemas(settings: ServerSettings) -> dict[str, Any]:
    nullable_text = {"type": ["string", "null"], "maxLength": MAX_TEXT_FIELD}
    identity = {"type": "string", "minLength": 1, "maxLength": MAX_IDENTITY_LENGTH,
                "description": "Your id for the person (NFC-normalized, no control characters)."}
    payload = {
        "type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": MAX_TEXT_CHARS,
        "description": "One feature vector in the faceid-sdk wire format, unpadded base64url "
                       "(FeatureCodec.encode_text). Never an image.",
    }
    challenge = {"type": "string", "maxLength": MAX_TEXT_FIELD,
                 "description": "Nonce from POST /challenge; single use."}
    distance = {"type": "number", "minimum": 0,
                "description": "Euclidean distance to the nearest template; present only when "
                               "the server exposes distances (trusted deployments)."}
    reason = {"type": "string", "enum": ["match", "no_match", "ambiguous", "empty_gallery"]}
    obj = {"type": "object", "additionalProperties": False}
    return {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable machine-readable code."},
                    "message": {"type": "string", "description": "What is wrong and what to do."},
                    "field": {"type": "string", "description": "Where in the request."},
                    "reason": {"type": "string", "description": "The codec's failed check."},
                },
            }},
        },
        "FeaturePayload": payload,
        "EnrollRequest": {**obj, "required": ["identity", "features"], "properties": {
            "identity": identity,
            "features": {"oneOf": [
                {"type": "array", "minItems": 1, "maxItems": settings.max_enroll_features,
                 "items": {"$ref": "#/components/schemas/FeaturePayload"}},
                {"$ref": "#/components/schemas/FeaturePayload"},
            ], "description": "Templates to store: a list, or one payload on its own."},
            "display_name": nullable_text,
            "external_id": nullable_text,
            "replace": {"type": "boolean", "default": False,
                        "description": "Replace every existing template instead of adding."},
        }},
        "Enrollment": {"type": "object", "required": [
            "identity", "created", "templates_added", "templates_replaced"],
            "properties": {
                "identity": {"type": "string"},
                "created": {"type": "boolean"},
                "templates_added": {"type": "integer"},
                "templates_replaced": {"type": "integer"},
                "conflicts": {"type": "array", "items": {"type": "string"},
                              "description": "Other identities a new template already matches "
                                             "(only for keys with the list scope)."},
            }},
        "IdentifyRequest": {**obj, "required": ["features"], "properties": {
            "features": {"$ref": "#/components/schemas/FeaturePayload"},
            "challenge": challenge,
        }},
        "Identification": {"type": "object", "required": ["recognised", "identity", "reason"],
                           "properties": {
                               "recognised": {"type": "boolean"},
                               "identity": {"type": ["string", "null"]},
                               "display_name": {"type": ["string", "null"]},
                               "reason": reason,
                               "distance": distance,
                           }},
        "VerifyRequest": {**obj, "required": ["identity", "features"], "properties": {
            "identity": identity,
            "features": {"$ref": "#/components/schemas/FeaturePayload"},
            "challenge": challenge,
        }},
        "Verification": {"type": "object", "required": ["verified", "identity", "reason"],
                         "properties": {
                             "verified": {"type": "boolean"},
                             "identity": {"type": "string"},
                             "reason": {"type": "string", "enum": ["match", "no_match"]},
                             "distance": distance,
                         }},
        "Removal": {"type": "object", "required": ["identity", "templates_removed"],
                    "properties": {"identity": {"type": "string"},
                                   "templates_removed": {"type": "integer"}}},
        "IdentityRecord": {"type": "object", "properties": {
            "identity": {"type": "string"},
            "display_name": {"type": ["string", "null"]},
            "external_id": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "model_id": {"type": "string"},
            "template_count": {"type": "integer"},
        }},
        "IdentityList": {"type": "object", "required": ["identities"], "properties": {
            "identities": {"type": "array",
                           "items": {"$ref": "#/components/schemas/IdentityRecord"}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"}}},
        "ModelInfo": {"type": "object", "properties": {
            "model_id": {"type": "string"},
            "dim": {"type": "integer"},
            "threshold": {"type": "number",
                          "description": "Accept below this Euclidean distance."},
            "wire_version": {"type": "integer"},
            "dtypes": {"type": "array", "items": {"type": "string"}},
            "max_body_bytes": {"type": "integer"},
            "max_enroll_features": {"type": "integer"},
            "challenge_required": {"type": "boolean"},
            "distances_exposed": {"type": "boolean"},
        }},
        "Challenge": {"type": "object", "required": ["nonce", "expires_at", "ttl_seconds"],
                      "properties": {
                          "nonce": {"type": "string"},
                          "expires_at": {"type": "string", "format": "date-time"},
                          "ttl_seconds": {"type": "number"},
                      }},
        "OpenAPIDocument": {"type": "object"},
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    def ref(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{name}"}}}}

    op: dict[str, Any] = {"operationId": endpoint.name, "summary": endpoint.summary,
                          "responses": {}}
    if endpoint.description:
        op["description"] = endpoint.description
    if "{identity}" in endpoint.path:
        op["parameters"] = [{"name": "identity", "in": "path", "required": True,
                             "schema": {"type": "string", "maxLength": MAX_IDENTITY_LENGTH}}]
    if endpoint.request:
        op["requestBody"] = {"required": True, **ref(endpoint.request)}
    for status, schema in endpoint.ok.items():
        op["responses"][str(status)] = {"description": "OK" if status == 200 else "Created",
                                        **ref(schema)}
    for status in (s for s in endpoint.statuses if s not in endpoint.ok):
        response: dict[str, Any] = {"description": _ERROR_TEXT[status], **ref("Error")}
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                   "description": "Seconds to wait."}}
        op["responses"][str(status)] = response
    if endpoint.scopes:
        op["security"] = [{"apiKey": []}]
        op["description"] = (op.get("description", "") + f" Needs a key with scope "
                             f"{' or '.join(endpoint.scopes)} once the store has keys.").strip()
    return op


def openapi_document(settings: ServerSettings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of :data:`ENDPOINTS` under *settings*' limits."""
    settings = settings or ServerSettings()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.full_path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "faceid-sdk reference server",
            "version": __version__,
            "description": (
                "Matches face feature vectors that devices extracted; images never leave the "
                "device and are refused with 415. Decisions are answered without distances "
                "by default. Errors are {\"error\": {\"code\", \"message\"}}."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "A scoped key from `faceid-sdk keys create` (also accepted as "
                               "X-API-Key). Required by every scoped operation as soon as the "
                               "store holds one active key.",
            }},
        },
    }
