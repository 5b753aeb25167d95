"""Retry/backoff and rate limiting shared by the NLM file client and the E-utilities sweep."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**(attempt-1)`` seconds, capped; a server's Retry-After wins if longer."""

    base_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        delay = min(self.max_s, self.base_s * (2 ** max(0, attempt - 1)))
        if retry_after:
            try:
                delay = max(delay, min(self.max_s, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: ignore, keep our own delay
        return delay


class MinIntervalLimiter:
    """At most ``rate_per_s`` calls per second, evenly spaced (NCBI: 3/s, 10/s with an API key)."""

    def __init__(self, rate_per_s: float):
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        self.interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until the next call may start; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            slept = 0.0
            if now < self._next:
                slept = self._next - now
                time.sleep(slept)
                now = self._next
            self._next = now + self.interval
            return slept
