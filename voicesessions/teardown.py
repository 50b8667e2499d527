"""Teardown of rooms whose persistence window has passed, and of overlong sessions.

Deadlines live in the database (VoiceRoom.teardown_at, VoiceSession.created_at
+ max_duration), and `sweep_due` acts on every one that has passed. Any
process may run the sweep (`manage.py runteardown`, the bot workers): a
compare-and-set on the room's state makes sure only one tears a room down.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from .botclient import send_to_bot
from .models import LIVE_STATUSES, RoomState, SessionStatus, VoiceRoom, VoiceSession
from .providers import RoomProviderError, get_provider
from .sessions import change_status, end_unconnected

logger = logging.getLogger("voicesessions.teardown")


def teardown_room(room_id: int, *, reason: str) -> bool:
    """End the room's sessions, delete it at the provider, mark it deleted.

    Returns False when another process got there first or the user came back.
    """
    claimed = VoiceRoom.objects.filter(pk=room_id, state=RoomState.LIVE).update(state=RoomState.TEARING_DOWN)
    if not claimed:
        return False
    room = VoiceRoom.objects.get(pk=room_id)
    with transaction.atomic():
        for session in room.sessions.filter(status__in=LIVE_STATUSES + (SessionStatus.UNAVAILABLE,)):
            change_status(session, SessionStatus.ENDED, reason=reason)
            send_to_bot(session.pk, "leave", reason=reason)
    try:
        get_provider(room.provider).delete_room(room.name)
    except RoomProviderError as exc:
        # Put it back so the next sweep tries again; the deadline is still there.
        VoiceRoom.objects.filter(pk=room_id, state=RoomState.TEARING_DOWN).update(state=RoomState.LIVE)
        logger.warning("[DailyRoom] delete of %s failed (%s), will retry", room.name, exc.kind)
        return False
    # Conditional: a user who got the room again meanwhile keeps it.
    VoiceRoom.objects.filter(pk=room_id, state=RoomState.TEARING_DOWN).update(state=RoomState.DELETED, torn_down_at=timezone.now(),
                                                teardown_at=None)
    logger.info("[DailyRoom] tore down room=%s reason=%s", room.name, reason)
    return True


def end_overlong_sessions(now: dt.datetime) -> int:
    """End sessions older than their assistant's maxDuration."""
    ended = 0
    overdue = VoiceSession.objects.live().filter(ends_at__lte=now).select_related("room")
    for session in overdue:
        with transaction.atomic():
            change_status(session, SessionStatus.ENDED, reason="max_duration")
            send_to_bot(session.pk, "leave", reason="max_duration")
        ended += 1
    return ended


def sweep_due(now: dt.datetime | None = None) -> dict[str, int]:
    """Act on every deadline that has passed; returns what it did."""
    now = now or timezone.now()
    rooms = 0
    due = VoiceRoom.objects.filter(state=RoomState.LIVE, teardown_at__lte=now).values_list("pk", flat=True)
    for room_id in list(due):
        rooms += teardown_room(room_id, reason="persistence_elapsed")
    expired = VoiceRoom.objects.filter(state=RoomState.LIVE, expires_at__lte=now).values_list("pk", flat=True)
    for room_id in list(expired):
        rooms += teardown_room(room_id, reason="room_expired")
    return {"rooms": rooms, "sessions": end_overlong_sessions(now) + end_unconnected(now)}
