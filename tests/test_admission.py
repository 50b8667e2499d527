"""Admission control (issue 14): a worker takes sessions only while its measured load allows, and
a join no live worker has room for is refused with 503 no_capacity and a Retry-After."""
from __future__ import annotations

import pytest
from django.utils import timezone

from tests.livesrv import metric, parse_metrics
from voicebot.load import LoadMeter, admitting
from voicesessions.models import BotJob, BotWorker, VoiceSession


def test_the_load_is_cpu_seconds_over_wall_seconds_per_usable_core_within_the_window():
    now, used = [0.0], [0.0]
    meter = LoadMeter(5.0, clock=lambda: now[0], cpu=lambda: used[0], cores=2)
    assert meter.sample() == 0.0  # one sample: nothing measured yet
    for _ in range(10):  # one core busy for 10 s
        now[0] += 1
        used[0] += 1
        load = meter.sample()
    assert load == pytest.approx(0.5)
    for _ in range(6):  # then idle: the busy seconds leave the window
        now[0] += 1
        load = meter.sample()
    assert load == pytest.approx(0.0, abs=0.21)
    now[0] += 1
    assert meter.sample() == 0.0


@pytest.mark.parametrize("capacity, active, load, expected", [
    (4, 0, 0.95, 4),   # idle: its load is not its sessions', it takes up to its slots
    (4, 4, 0.10, 0),   # full
    (4, 2, 0.95, 0),   # over the threshold: none
    (4, 2, 0.40, 2),   # 0.2 a session, room for 2.5 under 0.9: its 2 free slots
    (8, 2, 0.60, 1),   # 0.3 a session: room for one more under 0.9, not six
    (8, 1, 0.0, 7),    # sessions that cost nothing measurable (hosted models, quiet)
])
def test_a_worker_admits_what_its_load_leaves_room_for(capacity, active, load, expected):
    assert admitting(capacity, active, load, 0.9) == expected


@pytest.mark.django_db
def test_a_loaded_worker_claims_nothing_and_reports_it(settings):
    from voicebot.worker import BotWorkerProcess

    worker = BotWorkerProcess(pool_size=4)
    worker.sessions = {"a": object(), "b": object()}
    worker.load.sample = lambda: 0.95  # type: ignore[method-assign] - its sessions use the cores
    assert worker.free_slots() == 0
    worker.load.sample = lambda: 0.30  # type: ignore[method-assign]
    assert worker.free_slots() == 2


@pytest.mark.django_db
def test_a_busy_worker_hears_its_users_in_longer_frames_and_logs_it(settings, caplog):
    """mediapath.InputFrames, from the heartbeat's load: fewer trips through the pipeline once CPU is short."""
    import logging

    from voicebot import mediapath
    from voicebot.worker import BotWorkerProcess

    settings.VOICE_INPUT_LONG_FRAMES_LOAD = 0.5
    worker = BotWorkerProcess(pool_size=4)
    try:
        mediapath.input_frames.busy_join = 2  # VOICE_INPUT_FRAME_MS = 40, as a session installs it
        with caplog.at_level(logging.INFO, logger="voicebot.worker"):
            worker.load.load = 0.62
            worker._frames_follow_load()
            assert mediapath.input_frames.join == 2
            worker.load.load = 0.3
            worker._frames_follow_load()
            assert mediapath.input_frames.join == 1
        said = [r.getMessage() for r in caplog.records if "frames" in r.getMessage()]
        assert said == [f"[BotJoin] worker {worker.worker_id} at 62% load: the user's audio in 40 ms frames",
                        f"[BotJoin] worker {worker.worker_id} at 30% load: the user's audio in 20 ms frames"]
    finally:
        mediapath.input_frames.join = mediapath.input_frames.busy_join = 1


@pytest.mark.django_db
def test_a_worker_cut_off_past_its_lease_claims_nothing_and_lets_its_sessions_go(settings):
    """The lease (worker.py): failing heartbeats for longer than the dead-worker window less two
    heartbeats end the worker's sessions before anyone else can hand them on. A late heartbeat of a
    merely busy loop is not a failure and ends nothing. (Across hosts: tests/test_cluster.py.)"""
    import asyncio
    import time

    from voicebot.worker import BotWorkerProcess

    settings.VOICE_WORKER_DEAD_AFTER, settings.VOICE_WORKER_HEARTBEAT_SECONDS = 10, 2
    dropped: list[str] = []

    class Bot:
        def __init__(self, name: str) -> None:
            self.name = name

        async def drop(self) -> None:
            dropped.append(self.name)

    worker = BotWorkerProcess(pool_size=4)
    worker.load.sample = lambda: 0.0  # type: ignore[method-assign]
    worker.sessions = {"a": Bot("a"), "b": Bot("b")}
    assert worker.lease_seconds() == 6
    worker.lease_from = time.monotonic() - 7  # no heartbeat for 7 s...
    assert worker.free_slots() == 0  # ...so it claims nothing, busy or cut off
    asyncio.run(worker._check_lease())
    assert dropped == [] and len(worker.sessions) == 2  # but nothing failed: a busy loop, its sessions stay
    worker.heartbeat_failed = True  # the database is out of reach
    asyncio.run(worker._check_lease())
    assert sorted(dropped) == ["a", "b"] and not worker.sessions and worker.let_go == {"a", "b"}
    worker.lease_from, worker.heartbeat_failed = time.monotonic(), False  # back: renewed
    assert worker.free_slots() == 0  # not before the sessions it let go are failed in the database
    worker.let_go.clear()
    assert worker.free_slots() == 4


def _live_worker(name: str, admitting_now: int | None) -> None:
    BotWorker.objects.create(worker_id=name, hostname="h", pid=1, control_url="http://127.0.0.1:1", capacity=2,
                             admitting=admitting_now, heartbeat_at=timezone.now())


def _join(client, make_user, name: str):
    user = make_user(name)
    client.force_login(user)
    client.post("/api/voice/room", {}, format="json")
    return client.post("/api/bot/join", {"voiceOnly": True}, format="json")


@pytest.mark.django_db
def test_a_join_no_worker_has_room_for_is_refused_with_retry_after_and_counted(make_user, settings):
    from rest_framework.test import APIClient

    settings.VOICE_NO_CAPACITY_RETRY_AFTER = 7
    client = APIClient()
    assert _join(client, make_user, "u0").status_code == 202  # no worker yet: queued, one may be starting
    BotJob.objects.all().delete()
    _live_worker("w1", 0)  # full (or loaded)
    first = _join(client, make_user, "u1")
    assert first.status_code == 202  # nothing waiting: the report may be a heartbeat old, so it queues
    second = _join(client, make_user, "u2")
    assert second.status_code == 503 and second["Retry-After"] == "7"
    assert second.json()["error"] == "no_capacity" and "busy" in second.json()["detail"]
    assert not VoiceSession.objects.filter(user__username="u2").exists()  # nothing half-made
    assert BotJob.objects.count() == 1
    _live_worker("w2", 2)  # another worker with room for two
    assert _join(client, make_user, "u3").status_code == 202
    assert _join(client, make_user, "u4").status_code == 503  # the waiting two take its two slots
    from voicesessions.metrics import VoiceCollector

    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(VoiceCollector())
    scraped = parse_metrics(generate_latest(registry).decode())
    assert metric(scraped, "voice_joins_refused_total", reason="no_capacity") == 2
    assert metric(scraped, "voice_bot_pool_admitting", worker="w1") == 0


@pytest.mark.django_db
def test_a_join_that_reuses_a_live_session_is_never_refused(api, make_user):
    api.post("/api/voice/room", {}, format="json")
    assert api.post("/api/bot/join", {"voiceOnly": True}, format="json").status_code == 202
    _live_worker("w1", 0)
    BotJob.objects.create(session=VoiceSession.objects.get(), payload={})  # a second job waiting
    again = api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    assert again.status_code == 200 and again.json()["reused"] is True
