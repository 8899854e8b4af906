"""uvicorn's h11 protocol with the limits a public server needs against slow and idle clients.

uvicorn bounds the idle time *between* requests (``timeout_keep_alive``) and the size of a
request head (``h11_max_incomplete_event_size``, h11 only), but not the time a client may
take to send a request, nor how many connections one address may hold. So a few hundred
sockets that connect and never speak, or dribble a body a byte a second, used to hold every
slot (``limit_concurrency``) and answer everyone else 503. This subclass adds:

* a **request deadline**: from the moment a connection opens (or its previous answer is
  sent) to the end of the request body, at most :data:`REQUEST_TIMEOUT` seconds; past it
  the connection is closed and one line is logged;
* a **per-address connection cap** (:data:`MAX_CONNECTIONS_PER_CLIENT`): further
  connections from that address are closed at once; trusted proxies are exempt.

It is a module-level class so that ``--workers`` (spawned processes) can name it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MAX_CONNECTIONS_PER_CLIENT", "MAX_HEADER_BYTES", "REQUEST_TIMEOUT",
           "GuardedH11Protocol", "configure", "uvicorn_limits"]

#: Seconds a client has to send a whole request (head and body) once it may send one.
REQUEST_TIMEOUT = 10.0
#: Connections one address may hold open at once.
MAX_CONNECTIONS_PER_CLIENT = 64
#: Largest request head (request line and headers) h11 will buffer.
MAX_HEADER_BYTES = 16 * 1024

_log = logging.getLogger("faceid_sdk.server")


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` with a request deadline and a per-address connection cap."""

    #: Addresses exempt from the connection cap (the server's trusted proxies).
    exempt: ClassVar[frozenset[str]] = frozenset()
    request_timeout: ClassVar[float] = REQUEST_TIMEOUT
    max_per_client: ClassVar[int] = MAX_CONNECTIONS_PER_CLIENT
    _open: ClassVar[Counter[str]] = Counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._host = self.client[0] if self.client else "unknown"
        if self._host not in self.exempt:
            self._open[self._host] += 1
            if self._open[self._host] > self.max_per_client:
                _log.warning("refused a connection from %s: %d already open (limit %d)",
                             self._host, self._open[self._host] - 1, self.max_per_client)
                transport.close()
                return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if getattr(self, "_host", None) is not None and self._host not in self.exempt:
            self._open[self._host] -= 1
            if self._open[self._host] <= 0:
                del self._open[self._host]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a pipelined or kept-alive request
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the whole request is in: the deadline is met

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        _log.warning("closed a connection from %s: no complete request within %g s",
                     self._host, self.request_timeout)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
        self.transport.close()


def configure(settings: Any) -> None:
    """Apply a :class:`ServerSettings`' transport limits to this process's protocol class."""
    GuardedH11Protocol.exempt = frozenset(settings.trusted_proxies)
    GuardedH11Protocol.request_timeout = float(settings.request_timeout_seconds)
    GuardedH11Protocol.max_per_client = int(settings.max_connections_per_client)


def uvicorn_limits(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that bound every client.

    Proxy headers are never believed by uvicorn itself (the app reads ``X-Forwarded-For``
    only from the settings' trusted proxies); the connection cap spares those proxies.
    """
    configure(settings)
    return {
        "http": GuardedH11Protocol,
        "proxy_headers": False,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": 5,
        "limit_concurrency": 4096,
        "server_header": False,
    }
