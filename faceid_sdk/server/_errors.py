"""The server's own errors, and how every error becomes one JSON shape.

Library errors (:mod:`faceid_sdk.errors`) keep their meaning; this module only adds
what exists at the HTTP boundary and maps each kind to a status::

    HTTPError(Exception)            status + stable code + message (+ field, headers)
    ChallengeError(HTTPError)       a replay nonce is missing, unknown, spent or expired

Every error response is ``{"error": {"code": ..., "message": ...}}``, plus ``field``
(where in the request) and ``reason`` (the codec's check) when they are known.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    FaceIDError,
    IndexFileError,
    InvalidFeatureError,
    InvalidIdentityError,
    ModelMismatchError,
    ProtectionKeyError,
    StoreError,
    UnknownIdentityError,
)

__all__ = ["ChallengeError", "HTTPError", "error_body", "from_library_error"]


class HTTPError(Exception):
    """An error with its HTTP status and a stable machine-readable ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"<HTTPError {self.status} {self.code}>"

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, field=self.field, reason=self.reason)


class ChallengeError(HTTPError):
    """A replay-narrowing nonce cannot be used (403), or is required but absent (428)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(428 if code == "challenge_required" else 403, code, message,
                         field="challenge")


def error_body(
    code: str, message: str, *, field: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """The one error shape every response uses."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if reason is not None:
        error["reason"] = reason
    return {"error": error}


def from_library_error(exc: FaceIDError, *, field: str | None = None) -> HTTPError:
    """Map an SDK error to its HTTP status; the message already says what to do."""
    message = str(exc)
    if isinstance(exc, ModelMismatchError):
        # The client runs another model than the gallery: a conflict it fixes by updating.
        return HTTPError(409, "model_mismatch", message + " (GET /api/v1/model tells which)",
                         field=field, reason=exc.code)
    if isinstance(exc, InvalidFeatureError):
        return HTTPError(422, "invalid_feature", message, field=field, reason=exc.code)
    if isinstance(exc, InvalidIdentityError):
        return HTTPError(422, "invalid_identity", message, field=field or "identity")
    if isinstance(exc, UnknownIdentityError):
        return HTTPError(404, "unknown_identity", message, field=field or "identity")
    if isinstance(exc, (StoreError, IndexFileError, ProtectionKeyError)):
        # A store fault, a lost index, a store re-keyed under this server: details name
        # server paths and keys; the client only needs to know to retry later.
        return HTTPError(503, "store_unavailable",
                         "the identity store cannot be read or written right now: retry later; "
                         "nothing acknowledged was lost")
    return HTTPError(400, "bad_request", message, field=field)
