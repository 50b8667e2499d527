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


def test_bot_workers_move_to_voicesessions_with_their_rows_and_back():
    """voicebot.0002 / voicesessions.0006: BotWorker changes app, not table; rows survive both ways."""
    old = [("voicebot", "0001_initial"), ("voicesessions", "0005_room_generation_connect_by")]
    new = [("voicebot", "0002_botworker_to_voicesessions")]
    try:
        executor = migrate_to(*old)
        Worker = executor.loader.project_state(old).apps.get_model("voicebot", "BotWorker")
        Worker.objects.create(worker_id="w-old", hostname="h", pid=1, control_url="http://127.0.0.1:1")

        executor = migrate_to(*new)
        state = executor.loader.project_state(new).apps
        assert ("voicebot", "botworker") not in state.all_models or "botworker" not in state.all_models["voicebot"]
        moved = state.get_model("voicesessions", "BotWorker")
        assert list(moved.objects.values_list("worker_id", flat=True)) == ["w-old"]

        executor = migrate_to(*old)  # and back
        Worker = executor.loader.project_state(old).apps.get_model("voicebot", "BotWorker")
        assert list(Worker.objects.values_list("worker_id", flat=True)) == ["w-old"]
    finally:
        migrate_to_latest()
