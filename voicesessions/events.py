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

from .models import SessionEvent, VoiceSession

logger = logging.getLogger("voicesessions.events")


def user_group(user_id: int | str) -> str:
    """Channel-layer group of every websocket a user has open."""
    return f"voice-user-{user_id}"


def record_event(session: VoiceSession, event_type: str, payload: dict[str, Any] | None = None) -> SessionEvent:
    """Store one event and schedule its push to the session owner's sockets."""
    event = SessionEvent.objects.create(session=session, user_id=session.user_id, type=event_type,
                                        room_url=session.room.url, payload=payload or {})
    if settings.VOICE_EVENT_DELIVERY == "layer":
        message = event.as_message()
        transaction.on_commit(lambda: push_to_user(session.user_id, message))
    # "relay": every server process picks the row up from the table (relay.py).
    return event


def push_to_user(user_id: int | str, message: dict[str, Any]) -> None:
    """Send an already-stored event to the user's websocket group."""
    layer = get_channel_layer()
    if layer is None:
        return
    async def send() -> None:
        # Bounded: a layer that hangs (Redis restarting) must not hold the
        # request thread, which Django shares with every other sync call.
        await asyncio.wait_for(layer.group_send(user_group(user_id), {"type": "voice.event", "event": message}),
                               timeout=2)

    try:
        async_to_sync(send)()
    except Exception:  # a full or unreachable layer must not fail the request; the log keeps it
        logger.exception("[VoiceSession] push failed user=%s type=%s", user_id, message.get("type"))
