"""Retention: delete event rows older than a cut-off, in batches.

`SessionEvent` (every `voice.*` event) and `OpsEvent` (what /metrics and the
dashboard count) only grow, and /metrics reads them on every scrape (see
docs/benchmarks.md, "Operations"). Sessions, rooms and bot jobs are kept: they
are small, and the session counters come from them. Events of sessions that are
still live are never deleted, whatever their age. A call's recording (its audio,
the largest and most personal thing kept) goes with its events: the file of a
session that ended before the cut-off is deleted from storage. Deleting a session
deletes its recording too (signals.py).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from .models import LIVE_STATUSES, OpsEvent, SessionEvent, VoiceSession

BATCH = 5000


@dataclass(frozen=True)
class Pruned:
    session_events: int
    ops_events: int
    recordings: int = 0


def old_rows(days: int, now: dt.datetime | None = None) -> tuple[QuerySet, QuerySet]:
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    events = SessionEvent.objects.filter(created_at__lt=cutoff).exclude(session__status__in=LIVE_STATUSES)
    return events, OpsEvent.objects.filter(created_at__lt=cutoff)


def old_recordings(days: int, now: dt.datetime | None = None) -> QuerySet:
    """Sessions that ended before the cut-off and still have a recording."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    return VoiceSession.objects.filter(ended_at__lt=cutoff).exclude(recording="")


def delete_recording(session: VoiceSession) -> None:
    """Remove a session's recording from storage, then forget it on the row."""
    if session.recording:
        session.recording.storage.delete(session.recording.name)
    VoiceSession.objects.filter(pk=session.pk).update(recording="")


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
    recordings = old_recordings(days, now)
    total, removed = recordings.count(), 0
    for session in recordings.iterator():
        delete_recording(session)
        removed += 1
        if progress and (removed % 100 == 0 or removed == total):
            progress("recordings", removed, total)
    return Pruned(session_events=done["session events"], ops_events=done["ops events"], recordings=removed)
