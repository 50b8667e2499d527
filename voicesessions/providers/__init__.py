"""Room providers: where a user's `voice-{userId}` room actually lives.

`get_provider()` returns the provider named by settings.VOICE_PROVIDER
("local" on the embedded default, "daily" in production).
"""
from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from .base import ProviderRoom, RoomProvider, RoomProviderError

PROVIDERS: dict[str, str] = {
    "local": "voicesessions.providers.local.LocalRoomProvider",
    "daily": "voicesessions.providers.daily.DailyRoomProvider",
}


def get_provider(name: str | None = None) -> RoomProvider:
    """Build the room provider called `name` (default: settings.VOICE_PROVIDER)."""
    key = name or settings.VOICE_PROVIDER
    try:
        path = PROVIDERS[key]
    except KeyError:
        raise RoomProviderError(f"unknown voice provider {key!r}", kind="config") from None
    return import_string(path)()


__all__ = ["ProviderRoom", "RoomProvider", "RoomProviderError", "get_provider", "PROVIDERS"]
