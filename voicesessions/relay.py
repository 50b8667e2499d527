"""Deliver stored events to websockets by tailing the SessionEvent table.

Why: on the embedded default the channel layer is in-memory, so an event that
a bot worker (another process) records cannot reach the websockets that
Daphne holds. Every event is stored first anyway; each Daphne process tails
the table from its own cursor and pushes new rows to its in-process layer.
With Redis (VOICE_EVENT_DELIVERY=layer) events are pushed directly instead.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from .models import SessionEvent

logger = logging.getLogger("voicesessions.relay")

_tasks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()
BATCH = 500


def relay_enabled() -> bool:
    return settings.VOICE_EVENT_DELIVERY == "relay"


def ensure_started() -> None:
    """Start this event loop's relay once (called when a websocket connects)."""
    if not relay_enabled():
        return
    loop = asyncio.get_running_loop()
    task = _tasks.get(loop)
    if task is None or task.done():
        _tasks[loop] = loop.create_task(_run(), name="voice-event-relay")


@database_sync_to_async
def _latest_id() -> int:
    last = SessionEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


@database_sync_to_async
def _after(cursor: int) -> list[dict[str, Any]]:
    rows = SessionEvent.objects.filter(id__gt=cursor).order_by("id")[:BATCH]
    return [row.as_message() for row in rows]


async def _run() -> None:
    from .events import user_group

    layer = get_channel_layer()
    cursor = await _latest_id()  # a fresh socket replays history itself (?after=)
    interval = settings.VOICE_EVENT_RELAY_INTERVAL
    logger.info("[VoiceSession] event relay started at id=%s every %.0f ms", cursor, interval * 1000)
    while True:
        try:
            messages = await _after(cursor)
        except Exception:  # database briefly locked or restarting: keep the relay alive
            logger.exception("[VoiceSession] event relay read failed; retrying")
            await asyncio.sleep(1)
            continue
        for message in messages:
            await layer.group_send(user_group(message["userId"]), {"type": "voice.event", "event": message})
            cursor = message["id"]
        if len(messages) < BATCH:
            await asyncio.sleep(interval)
