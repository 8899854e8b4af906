"""One JSON line per decision on the ``faceid_sdk.audit`` logger; never a vector.

The record is built from a fixed set of keyword arguments, none of which can carry a
feature vector or payload: what a request *contained* is never logged, only what was
decided about it. Route it like any logger (a file handler, journald, a SIEM)::

    logging.getLogger("faceid_sdk.audit").addHandler(logging.FileHandler("audit.log"))
"""

from __future__ import annotations

import datetime as _dt
import json
import logging

__all__ = ["AUDIT_LOGGER", "audit"]

AUDIT_LOGGER = "faceid_sdk.audit"

_logger = logging.getLogger(AUDIT_LOGGER)


def audit(
    *,
    client: str,
    method: str,
    route: str,
    status: int,
    event: str,
    identity: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    request_id: str | None = None,
) -> None:
    """Log one decision. Only these fields exist, so nothing else can leak into the log."""
    if not _logger.isEnabledFor(logging.INFO):
        return
    record = {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "event": event,
        "client": client,
        "method": method,
        "route": route,
        "status": status,
        "identity": identity,
        "decision": decision,
        "reason": reason,
        "request_id": request_id,
    }
    _logger.info(json.dumps({k: v for k, v in record.items() if v is not None},
                            ensure_ascii=False, separators=(",", ":")))
