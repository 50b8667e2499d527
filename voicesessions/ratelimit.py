"""Rate limits for websocket messages: a token bucket per socket, a window per user.

DRF's throttles (used on the REST endpoints) work on requests and views;
a websocket is one long request, so its messages are counted here. The
per-user window lives in Django's cache (Redis in production), so it holds
across every socket and server a user has; a cache outage lets messages
through, like the REST throttle does.
"""
from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger("voicesessions.ratelimit")


class TokenBucket:
    """`burst` messages at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> float:
        """0 if a message may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def user_window_exceeded(scope: str, user_id: object, limit: int, window: int = 60) -> bool:
    """Count one message for the user in the current `window`; True once past `limit`."""
    key = f"voice-ws:{scope}:{user_id}:{int(time.time() // window)}"
    try:
        cache.add(key, 0, window + 10)
        return cache.incr(key) > limit
    except Exception:  # noqa: BLE001 - a cache outage must not cut users off
        logger.warning("[VoiceSession] rate limit cache unavailable; allowing %s", scope, exc_info=True)
        return False
