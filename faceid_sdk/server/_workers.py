"""Several server processes over one store: ``faceid-sdk serve --workers N``.

uvicorn starts each worker from an import string, so the configuration travels in one
environment variable (JSON) and :func:`app_from_environment` rebuilds the app in the
worker. Every worker opens the store with its own :class:`~faceid_sdk.Enroller`; the
Enrollers keep each other in step through the store (:meth:`Enroller.sync` runs before
every read and write), so an enrollment made through one worker is seen by the next
request any worker answers.

What stays per worker: rate-limit buckets (a client may get up to N times ``--rate``)
and challenge nonces (so ``--require-challenge`` needs one worker).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .._enroll import Enroller
from ._settings import ServerSettings

__all__ = ["ENVIRONMENT_VARIABLE", "app_from_environment", "worker_environment"]

ENVIRONMENT_VARIABLE = "FACEID_SERVE_WORKER_CONFIG"


def worker_environment(
    store: str | os.PathLike[str],
    *,
    threshold: float,
    index: str,
    index_options: dict[str, Any],
    settings: ServerSettings,
) -> str:
    """The JSON that :func:`app_from_environment` reads back in each worker."""
    fields = {
        "max_body_bytes": settings.max_body_bytes,
        "max_enroll_features": settings.max_enroll_features,
        "rate_per_second": settings.rate_per_second,
        "rate_burst": settings.rate_burst,
        "rate_max_clients": settings.rate_max_clients,
        "trusted_proxies": list(settings.trusted_proxies),
        "expose_distances": settings.expose_distances,
        "reject_ambiguous": settings.reject_ambiguous,
        "require_challenge": settings.require_challenge,
        "challenge_ttl_seconds": settings.challenge_ttl_seconds,
        "max_challenges": settings.max_challenges,
        "admin_token": settings.admin_token,
        "static_dir": None if settings.static_dir is None else str(settings.static_dir),
    }
    return json.dumps({
        "store": str(Path(store).resolve()),
        "threshold": threshold,
        "index": index,
        "index_options": index_options,
        "settings": fields,
    })


def app_from_environment() -> Any:
    """Build one worker's app from :data:`ENVIRONMENT_VARIABLE` (a uvicorn app factory)."""
    from . import create_app

    try:
        config = json.loads(os.environ[ENVIRONMENT_VARIABLE])
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"${ENVIRONMENT_VARIABLE} is missing or not JSON: start workers with "
            "`faceid-sdk serve --workers N`, not by importing this factory directly"
        ) from exc
    enroller = Enroller.open(
        config["store"], threshold=config["threshold"], index=config["index"],
        index_options=config["index_options"], runner_up=True,
    )
    app = create_app(enroller, settings=ServerSettings(**config["settings"]))

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            enroller.close()

    app.router.lifespan_context = lifespan
    return app
