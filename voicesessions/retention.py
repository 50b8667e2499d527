"""Retention: delete event rows older than a cut-off, in batches.

`SessionEvent` (every `voice.*` event) and `OpsEvent` (what /metrics and the
dashboard count) only grow, and /metrics reads them on every scrape (see
docs/benchmarks.md, "Operations"). Sessions, rooms and bot jobs are kept: they
are small, and the session counters come from them. Events of sessions that are
still live are never deleted, whatever their age.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from .models import LIVE_STATUSES, OpsEvent, SessionEvent

BATCH = 5000


@dataclass(frozen=True)
class Pruned:
    session_events: int
    ops_events: int


def old_rows(days: int, now: dt.datetime | None = None) -> tuple[QuerySet, QuerySet]:
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    events = SessionEvent.objects.filter(created_at__lt=cutoff).exclude(session__status__in=LIVE_STATUSES)
    return events, OpsEvent.objects.filter(created_at__lt=cutoff)


def prune(days: int, *, progress: Callable[[str, int, int], None] | None = None,
          now: dt.datetime | None = None) -> Pruned:
    """Delete events older than `days` days, BATCH rows per transaction; report progress as we go.

    Batches keep each delete short, so the servers and workers writing events
    meanwhile are never held up for long (SQLite has one writer at a time).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    done = {}
    for name, qs in zip(("session events", "ops events"), old_rows(days, now)):
        total, deleted = qs.count(), 0
        while True:
            ids = list(qs.values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            deleted += qs.model.objects.filter(pk__in=ids).delete()[0]
            if progress:
                progress(name, deleted, total)
        done[name] = deleted
    return Pruned(session_events=done["session events"], ops_events=done["ops events"])
