"""Is there room for one more bot? The join's admission check (issue 14).

Each worker reports how many more sessions it takes now (BotWorker.admitting: its free
slots as far as its measured CPU load allows, voicebot/load.py). A join that would queue
a job while the jobs already waiting take every slot the live workers report is refused
with 503 `no_capacity` and a Retry-After, rather than left to wait for a bot that will
not come in time. With no job waiting it is queued whatever the reports say: a report is
up to a heartbeat old, and a slot may have just come free.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from .models import BotJob, BotJobStatus, BotWorker


class NoCapacity(Exception):
    """No live worker has room for another bot now; try again after `retry_after` seconds."""

    def __init__(self, waiting: int, room: int) -> None:
        self.retry_after = settings.VOICE_NO_CAPACITY_RETRY_AFTER
        super().__init__(f"Every voice worker is busy ({waiting} waiting, room for {room}); "
                         f"try again in {self.retry_after} s.")


def check_room() -> None:
    """Raise NoCapacity when the waiting jobs already take every slot the live workers report."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.VOICE_WORKER_DEAD_AFTER)
    reports = list(BotWorker.objects.filter(stopped_at__isnull=True, heartbeat_at__gte=cutoff)
                   .values_list("admitting", flat=True))
    if not reports or any(r is None for r in reports):
        return  # no worker yet (one may be starting), or one that does not report: nothing known
    waiting = BotJob.objects.filter(status=BotJobStatus.QUEUED).count()
    room = sum(reports)
    if waiting and waiting >= room:
        raise NoCapacity(waiting, room)
