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

import attrs

from .._enroll import Enroller
from .._stores import is_postgres_url
from ..matching import DecisionPolicy
from ._settings import ServerSettings
from ._transport import configure as configure_transport

__all__ = ["ENVIRONMENT_VARIABLE", "app_from_environment", "worker_environment"]

ENVIRONMENT_VARIABLE = "FACEID_SERVE_WORKER_CONFIG"


def worker_environment(
    store: str | os.PathLike[str],
    *,
    policy: DecisionPolicy,
    index: str,
    index_options: dict[str, Any],
    settings: ServerSettings,
) -> str:
    """The JSON that :func:`app_from_environment` reads back in each worker."""
    # Every field, derived from the settings class itself so a new one cannot be forgotten;
    # JSON has no Path: static_dir travels as a string and the converter restores it.
    fields = attrs.asdict(settings)
    fields["static_dir"] = None if settings.static_dir is None else str(settings.static_dir)
    return json.dumps({
        "store": store if is_postgres_url(store) else str(Path(store).resolve()),
        "threshold": policy.threshold,
        "reject_ambiguous": policy.reject_ambiguous,
        "runner_up": policy.runner_up,
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
        index_options=config["index_options"], reject_ambiguous=config["reject_ambiguous"],
        runner_up=config["runner_up"],
    )
    settings = ServerSettings(**config["settings"])
    # This worker's own copy of the protocol class gets the same limits.
    configure_transport(settings)
    app = create_app(enroller, settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            enroller.close()

    app.router.lifespan_context = lifespan
    return app
