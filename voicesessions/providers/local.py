"""The `local` provider: rooms live in this service, audio goes peer to peer.

There is no remote room to create or delete: the VoiceRoom row is the room,
and its URL points at this service, whose signalling endpoint admits only
holders of a token issued here.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings

from ..tokens import issue_room_token
from .base import ProviderRoom, RoomProvider


class LocalRoomProvider(RoomProvider):
    name = "local"

    def room_url(self, room_name: str) -> str:
        return f"{settings.PUBLIC_BASE_URL}/voice/rooms/{room_name}"

    def get_room(self, room_name: str) -> ProviderRoom | None:
        from ..models import RoomState, VoiceRoom  # the table is the room

        room = VoiceRoom.objects.filter(name=room_name).exclude(state=RoomState.DELETED).first()
        if room is None:
            return None
        return ProviderRoom(name=room.name, url=room.url, privacy=room.privacy,
                            expires_at=room.expires_at, max_participants=room.max_participants)

    def create_room(self, room_name: str, *, privacy: str, expires_at: dt.datetime,
                    max_participants: int = 2) -> ProviderRoom:
        return ProviderRoom(name=room_name, url=self.room_url(room_name), privacy=privacy,
                            expires_at=expires_at, max_participants=max_participants)

    def delete_room(self, room_name: str) -> None:
        """Nothing to delete remotely: the caller marks the row deleted."""

    def issue_token(self, room_name: str, *, user_id: str, user_name: str, expires_at: dt.datetime,
                    is_owner: bool = False, generation: int = 1) -> str:
        return issue_room_token(room_name, user_id=user_id, user_name=user_name,
                                expires_at=expires_at, is_owner=is_owner, generation=generation)
