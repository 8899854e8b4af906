"""What an operator can tune about the reference server, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

__all__ = ["ServerSettings"]


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"'{attribute.name}' must be a positive number (got {value!r} that is a "
            f"<{type(value).__name__}>)"
        )


def _optional_positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _static_dir(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(repr=False)
class ServerSettings:
    """Limits and policies of one server; the defaults suit a public deployment.

    Args:
        max_body_bytes: Largest request body accepted. One 128-d float32 payload is
            under 1 KiB in base64url, so 64 KiB leaves room for a batch of enrollment
            templates and nothing else (certainly no photo).
        max_enroll_features: Most templates one enroll request may carry.
        rate_per_second: Sustained requests per client address (token refill rate);
            ``None`` turns rate limiting off (tests, a trusted LAN behind a gateway).
        rate_burst: Requests a client may make at once before the refill rate applies.
        rate_max_clients: Buckets kept in memory; the least recently seen is dropped
            first, so a flood of spoofed addresses cannot exhaust memory.
        trusted_proxies: Peer addresses whose ``X-Forwarded-For`` is believed. Empty by
            default: otherwise any client could pick its own rate-limit key.
        expose_distances: Return raw distances. Off by default because scores let an
            attacker hill-climb towards a face; turn on only for trusted callers.
        require_challenge: Refuse identify and verify requests without a fresh nonce
            from ``POST /challenge``.
        challenge_ttl_seconds: How long a nonce stays usable.
        max_challenges: Outstanding nonces kept; the oldest are dropped beyond this.
        auth: ``"auto"`` (the default): once the store holds an active API key
            (``faceid-sdk keys create``), every scoped operation needs a key with its scope;
            before that the API is open, which ``serve`` allows only on loopback.
            ``"keys"``: always needed. ``"open"``: never (a demo; ``serve --demo``).
        static_dir: Folder served at ``/`` (the browser client), or ``None``.
        request_timeout_seconds: Time a client has to send a whole request once it may
            (head and body); slower connections are closed (``serve`` only: uvicorn).
        max_connections_per_client: Connections one address may hold open at once
            (trusted proxies exempt; ``serve`` only).
    """

    max_body_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
    max_enroll_features: int = attrs.field(default=16, validator=_positive)
    rate_per_second: float | None = attrs.field(default=5.0, validator=_optional_positive)
    rate_burst: int = attrs.field(default=20, validator=_positive)
    rate_max_clients: int = attrs.field(default=10_000, validator=_positive)
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    expose_distances: bool = False
    require_challenge: bool = False
    challenge_ttl_seconds: float = attrs.field(default=60.0, validator=_positive)
    max_challenges: int = attrs.field(default=100_000, validator=_positive)
    auth: str = attrs.field(default="auto",
                            validator=attrs.validators.in_(("auto", "keys", "open")))
    static_dir: Path | None = attrs.field(default=None, converter=_static_dir)
    request_timeout_seconds: float = attrs.field(default=10.0, validator=_positive)
    max_connections_per_client: int = attrs.field(default=64, validator=_positive)

    def __repr__(self) -> str:
        rate = "off" if self.rate_per_second is None else \
            f"{self.rate_per_second:g}/s burst {self.rate_burst}"
        flags = [
            name for name in ("expose_distances", "require_challenge")
            if getattr(self, name)
        ]
        if self.auth != "auto":
            flags.append(f"auth={self.auth}")
        extra = f" {'+'.join(flags)}" if flags else ""
        return f"<ServerSettings body<={self.max_body_bytes}B rate={rate}{extra}>"
