"""Single-use nonces with a short lifetime, bound into identify and verify requests.

A client asks ``POST /challenge`` for a nonce and sends it back in the ``challenge``
field of its next identify or verify request; the server consumes it atomically, so a
captured request cannot be replayed once it has been answered, nor after the nonce
expires, nor from another client address. Without device attestation nothing proves
the *vector* was made for this nonce: an attacker holding a captured vector can fetch
a nonce of their own. The nonce narrows replay (and forces one round trip per query,
which the rate limit then meters); it does not prevent it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs

from ._errors import ChallengeError

__all__ = ["Challenge", "ChallengeStore"]


@attrs.frozen(repr=False)
class Challenge:
    """One issued nonce and when it stops working (Unix seconds)."""

    nonce: str
    expires_at: float
    ttl_seconds: float

    def __repr__(self) -> str:
        return f"<Challenge {self.nonce[:6]}… ttl={self.ttl_seconds:g}s>"


class ChallengeStore:
    """Outstanding nonces in memory, oldest first; at most ``max_outstanding`` of them.

    Nonces are kept per process: run one server process, or put a shared store behind
    the same two methods, otherwise a nonce issued by one worker is unknown to another.
    """

    def __init__(
        self,
        ttl_seconds: float = 60.0,
        *,
        max_outstanding: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_seconds = float(ttl_seconds)
        self.max_outstanding = int(max_outstanding)
        self._clock = clock
        self._wall_clock = wall_clock
        # nonce -> (client, monotonic expiry). Insertion order is expiry order (one TTL).
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ChallengeStore ttl={self.ttl_seconds:g}s, {len(self._pending)} outstanding>"

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, client: str) -> Challenge:
        """Return a fresh 192-bit nonce usable once, by *client*, for ``ttl_seconds``."""
        nonce = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            self._purge(now)
            self._pending[nonce] = (client, now + self.ttl_seconds)
            while len(self._pending) > self.max_outstanding:
                self._pending.popitem(last=False)
        return Challenge(nonce, self._wall_clock() + self.ttl_seconds, self.ttl_seconds)

    def consume(self, nonce: object, client: str) -> None:
        """Spend *nonce* for *client* or raise :class:`ChallengeError` saying why not."""
        if not isinstance(nonce, str) or not nonce:
            raise ChallengeError(
                "challenge_invalid",
                f"challenge must be the nonce string from POST /api/v1/challenge (got a "
                f"<{type(nonce).__name__}>): fetch a new one and send it in 'challenge'",
            )
        now = self._clock()
        with self._lock:
            entry = self._pending.get(nonce)
            # Only its owner spends it: a nonce tried from another address stays usable
            # for the client it was issued to.
            if entry is not None and secrets.compare_digest(entry[0], client):
                del self._pending[nonce]
        if entry is None:
            # Unknown, already used and long expired look the same on purpose: the answer
            # must not help an attacker tell a spent nonce from a guessed one.
            raise ChallengeError(
                "challenge_invalid",
                "challenge is unknown, already used or expired: fetch a new one from "
                "POST /api/v1/challenge for every identify or verify request",
            )
        owner, expires = entry
        if now > expires:
            raise ChallengeError(
                "challenge_expired",
                f"challenge expired (nonces live {self.ttl_seconds:g} s): fetch a new one "
                "right before sending the request",
            )
        if not secrets.compare_digest(owner, client):
            raise ChallengeError(
                "challenge_invalid",
                "challenge was issued to another client address: fetch your own from "
                "POST /api/v1/challenge",
            )

    def _purge(self, now: float) -> None:
        while self._pending:
            nonce, (_, expires) = next(iter(self._pending.items()))
            if expires >= now:
                break
            del self._pending[nonce]
