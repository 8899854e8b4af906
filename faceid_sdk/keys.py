"""Scoped API keys: a key per service, permissions per operation, stored hashed in the store.

A key reads ``fidk_<key id>_<secret>``. The store keeps its name, id, scopes and the SHA-256
of the secret (the secret is 256 random bits, so a plain hash suffices), never the secret
itself: it is shown once, by ``faceid-sdk keys create``. Devices get ``identify`` and
``verify`` (the ``device`` preset); operators ``enroll``, ``remove`` and ``list`` as well
(``operator``). Send it as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Final

import attrs

from .errors import ApiKeyError

__all__ = [
    "PRESETS",
    "SCOPES",
    "ApiKey",
    "check_key_name",
    "hash_secret",
    "new_key",
    "parse_key",
    "resolve_scopes",
    "secret_matches",
]

#: Every operation a key may be allowed.
SCOPES: Final = ("identify", "verify", "enroll", "remove", "list")
#: Named sets of scopes.
PRESETS: Final = {
    "device": ("identify", "verify"),
    "operator": SCOPES,
}

_KEY = re.compile(r"fidk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@attrs.frozen
class ApiKey:
    """What the store knows about one key (never its secret)."""

    name: str
    key_id: str
    scopes: tuple[str, ...]
    created_at: _dt.datetime
    revoked_at: _dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.active and scope in self.scopes

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "key_id": self.key_id, "scopes": list(self.scopes),
                "created_at": self.created_at.isoformat(),
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat()}


def check_key_name(name: str) -> str:
    """*name* if it is a short, plain key name, else :class:`ApiKeyError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiKeyError(
            f"key name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit (got {name!r}): name it after the service that uses it, e.g. 'kiosk-1'"
        )
    return name


def resolve_scopes(names: Iterable[str]) -> tuple[str, ...]:
    """Scopes from scope names and presets (``device``, ``operator``), in :data:`SCOPES` order."""
    wanted: set[str] = set()
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if part in PRESETS:
                wanted.update(PRESETS[part])
            elif part in SCOPES:
                wanted.add(part)
            elif part:
                raise ApiKeyError(
                    f"unknown scope {part!r}: use {', '.join(SCOPES)} or a preset "
                    f"({', '.join(PRESETS)})"
                )
    if not wanted:
        raise ApiKeyError("a key needs at least one scope: --scope device (identify, verify) or "
                         "--scope operator (everything)")
    return tuple(scope for scope in SCOPES if scope in wanted)


def new_key() -> tuple[str, str, str]:
    """``(key id, secret, the key as sent)`` for a new key."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"fidk_{key_id}_{secret}"


def parse_key(text: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else ``None``."""
    match = _KEY.match(text.strip()) if isinstance(text, str) else None
    return None if match is None else (match.group(1), match.group(2))


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with its stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
