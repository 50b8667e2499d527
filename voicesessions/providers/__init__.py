"""Room providers: where a user's `voice-{userId}` room actually lives.

`get_provider()` returns the provider named by settings.VOICE_PROVIDER
("local" on the embedded default, "daily" in production).
"""
from __future__ import annotations

import functools

from django.conf import settings
from django.utils.module_loading import import_string

from .base import ProviderRoom, RoomProvider, RoomProviderError

PROVIDERS: dict[str, str] = {
    "local": "voicesessions.providers.local.LocalRoomProvider",
    "daily": "voicesessions.providers.daily.DailyRoomProvider",
}


def get_provider(name: str | None = None) -> RoomProvider:
    """The room provider called `name` (default: settings.VOICE_PROVIDER).

    One per process and configuration: the Daily provider holds an HTTP
    client whose connection to Daily is kept alive between calls.
    """
    key = name or settings.VOICE_PROVIDER
    try:
        path = PROVIDERS[key]
    except KeyError:
        raise RoomProviderError(f"unknown voice provider {key!r}", kind="config") from None
    return _provider(path, settings.DAILY_API_KEY, settings.DAILY_API_URL, settings.DAILY_MAX_RETRIES,
                     settings.DAILY_HTTP_TIMEOUT)


@functools.lru_cache(maxsize=8)
def _provider(path: str, *_config: object) -> RoomProvider:
    # Keyed by the provider settings too, so tests that change them get a provider that reads them.
    return import_string(path)()


__all__ = ["ProviderRoom", "RoomProvider", "RoomProviderError", "get_provider", "PROVIDERS"]
