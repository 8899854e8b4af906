"""Per-client token buckets: a steady rate with a burst allowance, in bounded memory."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import attrs

__all__ = ["RateDecision", "RateLimiter", "TokenBucketLimiter"]


@attrs.frozen
class RateDecision:
    """Whether one request may proceed and, if not, how long to wait (seconds)."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` takes whole seconds; round up so an obedient client succeeds."""
        return str(max(1, math.ceil(self.retry_after)))


class RateLimiter(Protocol):
    """Anything that decides per key; swap in a shared (Redis, gateway) limiter here."""

    def check(self, key: str) -> RateDecision: ...


class TokenBucketLimiter:
    """A token bucket per key: ``burst`` tokens, refilled at ``rate`` tokens per second.

    Buckets live in an LRU of at most ``max_keys`` entries: an attacker who rotates
    addresses evicts old buckets (which only resets them to full) instead of growing
    memory without bound.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or burst < 1 or max_keys < 1:
            raise ValueError(
                f"rate, burst and max_keys must be positive (got rate={rate!r}, "
                f"burst={burst!r}, max_keys={max_keys!r})"
            )
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_keys = int(max_keys)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TokenBucketLimiter {self.rate:g}/s burst {self.burst}, {len(self._buckets)} keys>"

    def check(self, key: str) -> RateDecision:
        """Take one token from *key*'s bucket, or say how long until one is available."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                decision = RateDecision(True)
            else:
                decision = RateDecision(False, (1.0 - tokens) / self.rate)
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return decision
