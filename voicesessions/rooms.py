"""Get-or-create a user's private voice room, and leave it.

Plain functions shared by the REST views, the websocket consumer and the
management commands.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistants.models import AssistantRecord

from . import opsevents, sessions, teardown
from .logctx import log_fields
from .models import (ErrorKind, OpsEventKind, RoomState, VoiceRoom,
                     room_name_for)
from .providers import ProviderRoom, RoomProvider, RoomProviderError, get_provider

logger = logging.getLogger("voicesessions.rooms")


@dataclass(frozen=True)
class RoomGrant:
    """What POST /api/voice/room answers: the room and a token to join it."""

    room: VoiceRoom
    token: str
    token_expires_at: dt.datetime
    reused: bool


class RoomNotFound(Exception):
    """The user has no room, or named a room that is not theirs."""


def get_or_create_room(user, *, assistant: AssistantRecord | None = None,
                       provider: RoomProvider | None = None) -> RoomGrant:
    """Return the user's live room (reused) or create it, with a fresh join token.

    Coming back inside the persistence window cancels the pending teardown.
    """
    started = time.monotonic()
    provider = provider or get_provider()
    try:
        try:
            grant = _get_or_create_room(user, assistant, provider)
        except IntegrityError:
            # Two first-ever requests raced to insert the user's row (nothing to
            # lock yet on PostgreSQL); the loser now finds the winner's room.
            grant = _get_or_create_room(user, assistant, provider)
    except RoomProviderError as exc:
        opsevents.record_error(ErrorKind.ROOM_CREATION, detail=f"{provider.name}: {exc.kind}", user=user)
        raise
    # Each room request issues one token: /metrics counts those tokens from these rows.
    opsevents.record(OpsEventKind.ROOM_REUSED if grant.reused else OpsEventKind.ROOM_CREATED, provider.name,
                     user=user)
    latency_ms = (time.monotonic() - started) * 1000
    logger.info("[DailyRoom] room=%s user=%s reused=%s provider=%s latency_ms=%.1f",
                grant.room.name, user.pk, grant.reused, provider.name, latency_ms,
                extra=log_fields(user_id=user.pk, room_url=grant.room.url, latency_ms=latency_ms,
                                 reused=grant.reused))
    return grant


def _get_or_create_room(user, assistant: AssistantRecord | None, provider: RoomProvider) -> RoomGrant:
    now = timezone.now()
    expires_at = now + dt.timedelta(days=settings.VOICE_ROOM_TTL_DAYS)
    # The provider's HTTP calls (Daily, with retries) run outside the row lock, so a
    # slow provider never holds the user's row; the locked part only decides and saves.
    seen = VoiceRoom.objects.filter(user=user).first()
    reusable = seen is not None and seen.is_live(now) and seen.provider == provider.name
    if reusable and provider.name != "local" and provider.get_room(seen.name) is None:
        # Deleted or expired at the provider behind our back: make it again.
        logger.warning("[DailyRoom] room %s missing at provider, recreating", seen.name)
        reusable = False
    privacy = assistant.voice_room_privacy if assistant else "private"
    remote = None if reusable else provider.create_room(room_name_for(user.pk), privacy=privacy,
                                                        expires_at=expires_at, max_participants=2)
    saved = _save_room(user, assistant, provider, seen, remote, now, expires_at)
    if saved is None:  # torn down between the look and the lock: decide again
        return _get_or_create_room(user, assistant, provider)
    room, reused = saved
    if reused:
        # A reload inside the window: the old page's participant lingers until the provider
        # times it out, and with the bot it would fill the two-person room.
        provider.eject(room.name, user_ids=[str(user.pk)])
    token_expires_at = min(now + dt.timedelta(seconds=_token_ttl(provider, assistant)), room.expires_at)
    token = provider.issue_token(room.name, user_id=str(user.pk), user_name=user.get_username(),
                                 expires_at=token_expires_at, is_owner=False, generation=room.generation)
    return RoomGrant(room=room, token=token, token_expires_at=token_expires_at, reused=reused)


def _save_room(user, assistant: AssistantRecord | None, provider: RoomProvider, seen: VoiceRoom | None,
               remote: ProviderRoom | None, now: dt.datetime,
               expires_at: dt.datetime) -> tuple[VoiceRoom, bool] | None:
    """Under the row lock: keep the live room, or record `remote` as its new incarnation.

    Returns (room, reused), or None when the room to reuse died meanwhile.
    """
    with transaction.atomic():
        room = VoiceRoom.objects.select_for_update().filter(user=user).first()
        live = room is not None and room.is_live(now) and room.provider == provider.name
        if remote is None and not live:
            return None
        # Made (again) by a concurrent request meanwhile: use that incarnation and keep its tokens.
        reused = remote is None or (live and (seen is None or room.generation != seen.generation))
        if not reused:
            if room is not None:
                room.generation += 1  # a new incarnation: tokens of the old one stop working
            room = room or VoiceRoom(user=user)
            room.provider = provider.name
            room.url = remote.url
            room.privacy = remote.privacy
            room.max_participants = remote.max_participants
            room.created_at = now
            room.expires_at = remote.expires_at or expires_at
            room.state = RoomState.LIVE
            room.torn_down_at = None
        room.persist_after_leave = assistant.voice_persistence if assistant else settings.VOICE_DEFAULT_PERSISTENCE
        room.teardown_at = None  # the user is here: no teardown pending
        room.last_activity_at = now
        room.save()
    return room, reused


def _token_ttl(provider: RoomProvider, assistant: AssistantRecord | None) -> int:
    """Seconds a user's token lives.

    A local token is used once, for the WebRTC offer. A Daily token is what
    admits the browser to the meeting, for as long as the session can last
    (maxDuration, then the persistence window of a rejoin), and Daily ejects
    the participant when it expires, so it must cover that whole time.
    """
    if provider.name == "local":
        return settings.VOICE_TOKEN_TTL
    max_duration = assistant.voice_max_duration if assistant else settings.VOICE_DEFAULT_MAX_DURATION
    persistence = assistant.voice_persistence if assistant else settings.VOICE_DEFAULT_PERSISTENCE
    return max(settings.VOICE_TOKEN_TTL, max_duration + persistence)


def user_room(user, room_url: str | None = None) -> VoiceRoom:
    """The user's room; if `room_url` is given it must be that room's URL."""
    room = VoiceRoom.objects.filter(user=user).first()
    if room is None or (room_url and room_url != room.url):
        raise RoomNotFound(room_url or "")
    return room


def leave_room(user, *, room_url: str | None = None, teardown_delay: int | None = None) -> tuple[VoiceRoom, int]:
    """The user left through the API: `sessions.user_left`, then the room and the window used.

    The deadline is stored on the room, so the teardown happens even if this
    process dies before then (see teardown.sweep_due).
    """
    room = user_room(user, room_url)
    delay = sessions.user_left(room.pk, delay=teardown_delay)
    if delay is None:  # the room went between the two reads
        raise RoomNotFound(room_url or "")
    logger.info("[VoiceSession] user=%s left room=%s teardown_in=%ss", user.pk, room.name, delay,
                extra=log_fields(user_id=user.pk, room_url=room.url))
    if delay == 0:
        teardown.teardown_room(room.pk, reason="user_left")
    room.refresh_from_db()
    return room, delay
