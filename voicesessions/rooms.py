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

from . import opsevents
from .logctx import log_fields
from .models import (LIVE_STATUSES, ErrorKind, OpsEventKind, RoomState, SessionStatus, VoiceRoom,
                     room_name_for)
from .providers import RoomProvider, RoomProviderError, get_provider

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
    privacy = assistant.voice_room_privacy if assistant else "private"
    persistence = assistant.voice_persistence if assistant else settings.VOICE_DEFAULT_PERSISTENCE
    with transaction.atomic():
        room = VoiceRoom.objects.select_for_update().filter(user=user).first()
        reused = room is not None and room.is_live(now) and room.provider == provider.name
        if reused and provider.name != "local" and provider.get_room(room.name) is None:
            # Deleted or expired at the provider behind our back: make it again.
            logger.warning("[DailyRoom] room %s missing at provider, recreating", room.name)
            reused = False
        if not reused:
            expires_at = now + dt.timedelta(days=settings.VOICE_ROOM_TTL_DAYS)
            remote = provider.create_room(room_name_for(user.pk), privacy=privacy,
                                          expires_at=expires_at, max_participants=2)
            if room is not None and room.pk is not None:
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
        room.persist_after_leave = persistence
        room.teardown_at = None  # the user is here: no teardown pending
        room.last_activity_at = now
        room.save()
        token_expires_at = min(now + dt.timedelta(seconds=settings.VOICE_TOKEN_TTL), room.expires_at)
        token = provider.issue_token(room.name, user_id=str(user.pk), user_name=user.get_username(),
                                     expires_at=token_expires_at, is_owner=False, generation=room.generation)
    return RoomGrant(room=room, token=token, token_expires_at=token_expires_at, reused=reused)


def user_room(user, room_url: str | None = None) -> VoiceRoom:
    """The user's room; if `room_url` is given it must be that room's URL."""
    room = VoiceRoom.objects.filter(user=user).first()
    if room is None or (room_url and room_url != room.url):
        raise RoomNotFound(room_url or "")
    return room


def leave_room(user, *, room_url: str | None = None, teardown_delay: int | None = None) -> VoiceRoom:
    """The user left: sessions go inactive and the room is torn down after the delay.

    The deadline is stored on the room, so the teardown happens even if this
    process dies before then (see teardown.sweep_due).
    """
    from . import sessions, teardown  # sessions imports rooms

    with transaction.atomic():
        room = VoiceRoom.objects.select_for_update().filter(pk=user_room(user, room_url).pk).get()
        delay = room.persist_after_leave if teardown_delay is None else teardown_delay
        now = timezone.now()
        room.teardown_at = now + dt.timedelta(seconds=delay)
        room.last_activity_at = now
        room.save(update_fields=["teardown_at", "last_activity_at"])
        for session in room.sessions.filter(status__in=LIVE_STATUSES).exclude(status=SessionStatus.INACTIVE):
            sessions.change_status(session, SessionStatus.INACTIVE, reason="user_left")
    logger.info("[VoiceSession] user=%s left room=%s teardown_in=%ss", user.pk, room.name, delay,
                extra=log_fields(user_id=user.pk, room_url=room.url))
    if delay == 0:
        teardown.teardown_room(room.pk, reason="user_left")
        room.refresh_from_db()
    return room
