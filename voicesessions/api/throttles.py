"""Per-user rate limits on the endpoints that cost money or a bot slot.

DRF's ScopedRateThrottle does the counting (in Django's cache: Redis in
production, so the limit holds across servers) and answers 429 with
Retry-After. Its rates are bound to the class when DRF loads, so they are
read from settings.VOICE_THROTTLE_RATES on each request instead.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger("voicesessions.api")


class VoiceScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle with rates from settings, failing open when the cache is down."""

    def get_rate(self) -> str | None:
        return settings.VOICE_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - a cache outage (Redis restarting) must not fail the request
            logger.warning("[VoiceSession] rate limit cache unavailable; allowing %s", self.scope, exc_info=True)
            return True
