"""Record `voice.*` events and push them to the user's websockets.

The row is written first and pushed only after the transaction commits, so a
browser never sees an event the database does not have, and a client that
reconnects can replay what it missed from the log. How it is pushed depends on
settings.VOICE_EVENT_DELIVERY (see relay.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save

from .models import SessionEvent, VoiceSession

logger = logging.getLogger("voicesessions.events")


def user_group(user_id: int | str) -> str:
    """Channel-layer group of every websocket a user has open."""
    return f"voice-user-{user_id}"


def record_event(session: VoiceSession, event_type: str, payload: dict[str, Any] | None = None) -> SessionEvent:
    """Store one event and schedule its push to the session owner's sockets."""
    return record_events(session, [(event_type, payload)])[0]


def record_events(session: VoiceSession, items: list[tuple[str, dict[str, Any] | None]]) -> list[SessionEvent]:
    """Store events of one session in one INSERT and push them as one channel-layer message.

    A bot's events come in bursts (speech, levels, a transcript): one row insert and one
    group_send a batch, rather than one each, is what the worker spends on them (issue 14),
    and a socket whose server reaches Redis over a slow link gets the burst in one read
    instead of one round trip an event (channels-redis pops one message at a time).
    """
    events = SessionEvent.objects.bulk_create([
        SessionEvent(session=session, user_id=session.user_id, type=event_type, room_url=session.room.url,
                     payload=payload or {}) for event_type, payload in items])
    for event in events:
        # bulk_create sends no post_save; the apps that react to an event (the webhook outbox,
        # which this app does not know of) still hear of each, inside this transaction.
        post_save.send(sender=SessionEvent, instance=event, created=True, update_fields=None, raw=False,
                       using=event._state.db)
    if settings.VOICE_EVENT_DELIVERY == "layer" and events:
        messages = [event.as_message() for event in events]
        transaction.on_commit(lambda: push_to_user(session.user_id, messages))
    # "relay": every server process picks the rows up from the table (relay.py).
    return events


def push_to_user(user_id: int | str, messages: list[dict[str, Any]]) -> None:
    """Send already-stored events, in order, to the user's websocket group."""
    layer = get_channel_layer()
    if layer is None:
        return
    async def send() -> None:
        # Bounded: a layer that hangs (Redis restarting) must not hold the
        # request thread, which Django shares with every other sync call.
        await asyncio.wait_for(layer.group_send(user_group(user_id), {"type": "voice.events", "events": messages}),
                               timeout=2)

    try:
        async_to_sync(send)()
    except Exception:  # a full or unreachable layer must not fail the request; the log keeps it
        logger.exception("[VoiceSession] push failed user=%s types=%s", user_id,
                         ",".join(sorted({m.get("type", "") for m in messages})))
