"""What a worker's death means for its sessions: unavailable, their users told, unfinished
jobs back in the queue. Run by every worker's sweep and by a worker that stops."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import opsevents
from .events import record_event
from .models import (BotJob, BotJobStatus, BotWorker, ErrorKind, SessionStatus, VoiceEventType,
                     VoiceSession)
from .queue import get_queue
from .sessions import change_status

logger = logging.getLogger("voicesessions.workerloss")


def mark_dead_workers(now: dt.datetime | None = None) -> int:
    """Sessions of workers that stopped heartbeating become unavailable; returns how many.

    The browser gets a voice.error; the room stays live so a new join works.
    Jobs a dead worker claimed but never finished go back to the queue only
    if their session still waits for a bot (connecting).
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.VOICE_WORKER_DEAD_AFTER)
    dead = list(BotWorker.objects.filter(stopped_at__isnull=True, heartbeat_at__lt=cutoff)
                .values_list("worker_id", flat=True))
    lost = 0
    for worker_id in dead:
        with transaction.atomic():
            if not BotWorker.objects.filter(worker_id=worker_id, stopped_at__isnull=True,
                                            heartbeat_at__lt=cutoff).update(stopped_at=now):
                continue  # another sweeper handled it, or it came back
            lost += fail_sessions_of(worker_id, "worker_lost", now=now)
        logger.warning("[BotJoin] worker %s stopped heartbeating; its sessions are unavailable", worker_id)
    return lost


def fail_sessions_of(worker_id: str, reason: str, *, now: dt.datetime | None = None) -> int:
    """The worker is gone: its sessions become unavailable and their users are told.

    A job it claimed but never finished (the bot was not ready yet) goes back
    to the queue instead, so another worker takes it and the user only waits
    a little longer. Inactive sessions fail too: their bot is gone, so a
    return must bring a new one.
    """
    now = now or timezone.now()
    failed = 0
    with transaction.atomic():
        unfinished = BotJob.objects.filter(worker_id=worker_id, status=BotJobStatus.CLAIMED)
        waiting = unfinished.filter(session__status=SessionStatus.CONNECTING)
        requeued = set(waiting.values_list("session_id", flat=True))
        get_queue().requeue(list(waiting.values_list("id", flat=True)))
        unfinished.exclude(session_id__in=requeued).update(status=BotJobStatus.FAILED, error=reason, finished_at=now)
        VoiceSession.objects.filter(pk__in=requeued).update(bot_worker_id="")
        for session in VoiceSession.objects.live().filter(bot_worker_id=worker_id).select_related("room"):
            change_status(session, SessionStatus.UNAVAILABLE, reason=reason)
            record_event(session, VoiceEventType.ERROR, {
                "code": reason, "message": "The voice assistant stopped responding. Start again to reconnect."})
            opsevents.record_error(ErrorKind.BOT_LOST, detail=reason, user=session.user_id, session=session)
            failed += 1
    if requeued:
        logger.warning("[BotJoin] %d job(s) of worker %s back in the queue", len(requeued), worker_id)
    return failed
