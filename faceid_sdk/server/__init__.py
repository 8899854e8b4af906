"""The reference server: an ASGI app over an :class:`~faceid_sdk.Enroller`.

Install ``faceid-sdk[server]`` and run ``faceid-sdk serve``, or mount the app yourself::

    from faceid_sdk import Enroller
    from faceid_sdk.server import ServerSettings, create_app

    enroller = Enroller.open("faces.db")
    app = create_app(enroller, settings=ServerSettings(require_challenge=True))

Only encoded feature vectors are accepted (images are refused with 415); decisions are
answered without distances unless ``expose_distances`` is set. See ``docs/server.md``.
"""

from __future__ import annotations

from ._app import IMAGE_REFUSED, client_address, create_app
from ._audit import AUDIT_LOGGER
from ._challenge import Challenge, ChallengeStore
from ._errors import ChallengeError, HTTPError
from ._ratelimit import RateDecision, RateLimiter, TokenBucketLimiter
from ._settings import ServerSettings
from .openapi import API_PREFIX, ENDPOINTS, openapi_document

__all__ = [
    "API_PREFIX",
    "AUDIT_LOGGER",
    "ENDPOINTS",
    "IMAGE_REFUSED",
    "Challenge",
    "ChallengeError",
    "ChallengeStore",
    "HTTPError",
    "RateDecision",
    "RateLimiter",
    "ServerSettings",
    "TokenBucketLimiter",
    "client_address",
    "create_app",
    "openapi_document",
]
