"""The contract every room provider implements."""
from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field
from typing import Any


class RoomProviderError(Exception):
    """A provider call failed.

    `kind` says why, so views can answer with the right status:
    "auth" (bad API key), "not_found", "rate_limited", "invalid" (the provider
    refused our request), "unavailable" (network or 5xx), "config".
    """

    def __init__(self, message: str, *, kind: str = "unavailable", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ProviderRoom:
    """A room as the provider sees it."""

    name: str
    url: str
    privacy: str = "private"
    expires_at: dt.datetime | None = None
    max_participants: int = 2
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


class RoomProvider(abc.ABC):
    """Creates, finds and deletes rooms and issues join tokens for them."""

    name: str = ""

    @abc.abstractmethod
    def get_room(self, room_name: str) -> ProviderRoom | None:
        """Return the room, or None when the provider has no such room."""

    @abc.abstractmethod
    def create_room(self, room_name: str, *, privacy: str, expires_at: dt.datetime,
                    max_participants: int = 2) -> ProviderRoom:
        """Create the private voice room: owner-only, capped participants, expiring (see each provider)."""

    @abc.abstractmethod
    def delete_room(self, room_name: str) -> None:
        """Delete the room. Deleting a room that is already gone is not an error."""

    def eject(self, room_name: str, *, user_ids: list[str]) -> list[str]:
        """Remove these users' participants from the room's meeting; the ids ejected.

        A page reload leaves the old participant behind until the provider
        times it out; with the bot it would fill a two-person room. Providers
        without meetings of their own (local) have nothing to eject.
        """
        return []

    @abc.abstractmethod
    def issue_token(self, room_name: str, *, user_id: str, user_name: str, expires_at: dt.datetime,
                    is_owner: bool = False, generation: int = 1) -> str:
        """Return a token that lets exactly this user join exactly this room until expires_at.

        `generation` is the room's incarnation (VoiceRoom.generation). A provider that
        verifies its own tokens signs it in, so tokens die with a teardown; Daily
        cannot revoke a meeting token, which lives until its `exp`.
        """
