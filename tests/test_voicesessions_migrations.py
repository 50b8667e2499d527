"""voicesessions 0003: jobs finished before the stored timings existed get them from their timestamps."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.test_assistant_migrations import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = ("voicesessions", "0002_opsevent_connected_at")
AFTER = ("voicesessions", "0003_botjob_timings")


def test_finished_jobs_get_their_timings_and_queued_ones_none():
    try:
        executor = migrate_to(BEFORE)
        apps = executor.loader.project_state(BEFORE).apps
        Room, Session, Job = (apps.get_model("voicesessions", name) for name in ("VoiceRoom", "VoiceSession", "BotJob"))
        user = apps.get_model(*get_user_model()._meta.label.split(".")).objects.create(username="old")
        now = timezone.now()
        room = Room.objects.create(user_id=user.pk, name="voice-x", provider="local", url="http://x",
                                   expires_at=now + dt.timedelta(days=1))
        session = Session.objects.create(user_id=user.pk, room=room, status="ended", ends_at=now)
        t0 = now - dt.timedelta(seconds=10)
        Job.objects.create(session=session, status="done", created_at=t0, claimed_at=t0 + dt.timedelta(seconds=1),
                           finished_at=t0 + dt.timedelta(seconds=3))
        Job.objects.create(session=session, status="queued", created_at=t0)

        executor = migrate_to(AFTER)
        Job = executor.loader.project_state(AFTER).apps.get_model("voicesessions", "BotJob")
        done = Job.objects.get(status="done")
        assert (done.acquire_seconds, done.spawn_seconds, done.join_seconds) == (1.0, 2.0, 3.0)
        queued = Job.objects.get(status="queued")
        assert (queued.acquire_seconds, queued.join_seconds) == (None, None)
    finally:
        migrate_to_latest()
