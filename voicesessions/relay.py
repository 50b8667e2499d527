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
import sqlite3
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


class Commits:
    """Whether anyone committed to the SQLite database since the last look: SQLite's own
    `PRAGMA data_version`, read on a connection of the relay's own.

    Why: the relay queried the event table 20 times a second through the database thread, ~6%
    of a core for the web server while a page was open (conversation bench, 2026-12-07), and that
    core is one the local LLM decodes on. The pragma changes exactly when another connection
    commits, and reading it touches only SQLite's shared-memory index: the loop asks it directly.
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._version: int | None = None

    def since_last_look(self) -> bool:
        """True the first time, then whenever a commit came since the last call."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        changed, self._version = version != self._version, version
        return changed


def _commits() -> Commits | None:
    """The relay's watch on the default database, or None to query at every interval (not SQLite)."""
    from .queue import _sqlite_files  # the database file, as the embedded queue's wait finds it

    files = _sqlite_files()
    if not files:
        return None
    try:
        return Commits(files[0])
    except sqlite3.Error as exc:
        logger.warning("[VoiceSession] event relay cannot watch %s (%s); it queries every interval", files[0], exc)
        return None


async def _run() -> None:
    from .events import user_group

    layer = get_channel_layer()
    cursor = await _latest_id()  # a fresh socket replays history itself (?after=)
    interval = settings.VOICE_EVENT_RELAY_INTERVAL
    commits = _commits()
    logger.info("[VoiceSession] event relay started at id=%s every %.0f ms%s", cursor, interval * 1000,
                ", after commits only" if commits else "")
    more = True  # rows may be waiting whatever the watch says: at the start, after a full batch or a failure
    while True:
        try:
            # Looked at before the query: a commit after this look is seen at the next one.
            if not more and commits is not None and not commits.since_last_look():
                await asyncio.sleep(interval)
                continue
            messages = await _after(cursor)
        except Exception:  # database briefly locked or restarting: keep the relay alive
            logger.exception("[VoiceSession] event relay read failed; retrying")
            more = True
            await asyncio.sleep(1)
            continue
        for message in messages:
            await layer.group_send(user_group(message["userId"]), {"type": "voice.event", "event": message})
            cursor = message["id"]
        more = len(messages) >= BATCH
        if not more:
            await asyncio.sleep(interval)
