"""The Redis Streams bot job queue, against the real Redis on 127.0.0.1:6379."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
import redis

from tests.waiting import await_until, wait_until
from voicesessions import rooms, sessions
from voicesessions.models import BotJob, BotJobStatus
from voicesessions.redis_queue import GROUP, STREAM, RedisStreamBotJobQueue

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def queue(settings):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis must run on 127.0.0.1:6379 (see README, production mode)")
    client.flushdb()
    settings.REDIS_URL = REDIS_URL
    settings.VOICE_BOT_QUEUE = "voicesessions.redis_queue.RedisStreamBotJobQueue"
    settings.VOICE_WORKER_DEAD_AFTER = 0.2
    yield RedisStreamBotJobQueue(REDIS_URL)
    client.flushdb()


def _join(make_user, name: str):
    user = make_user(name)
    room = rooms.get_or_create_room(user).room
    return sessions.join_bot(user, room, assistant=None, params={"voiceOnly": True})


def test_join_publishes_after_commit_and_one_worker_claims(queue, make_user):
    result = _join(make_user, "alice")
    assert queue.redis.xlen(STREAM) == 1
    job = queue.claim("worker-a")
    assert job is not None and job.job_id == result.job_id and job.spec.voice_only is True
    assert queue.claim("worker-b") is None  # one entry, one owner
    pending = queue.redis.xpending(STREAM, GROUP)
    assert pending["pending"] == 1  # not acknowledged until the bot is ready
    queue.ack(job.job_id, "worker-a")
    assert queue.redis.xpending(STREAM, GROUP)["pending"] == 0
    assert BotJob.objects.get(pk=job.job_id).status == BotJobStatus.DONE


def test_a_dead_consumers_entry_is_claimed_again(queue, make_user):
    result = _join(make_user, "alice")
    first = queue.claim("doomed")
    assert first is not None
    # The worker dies before its bot was ready; the sweeper puts the row back in the queue.
    BotJob.objects.filter(pk=first.job_id).update(status=BotJobStatus.QUEUED, worker_id="")
    other = RedisStreamBotJobQueue(REDIS_URL)
    # The entry is claimable once it has been idle longer than VOICE_WORKER_DEAD_AFTER.
    again = wait_until(lambda: other.claim("survivor"), 10, "the dead consumer's entry to be claimable")
    assert again.job_id == result.job_id and again.attempts == 2
    other.ack(again.job_id, "survivor")
    assert BotJob.objects.get(pk=again.job_id).worker_id == "survivor"


def test_duplicate_entries_cannot_start_a_second_bot(queue, make_user):
    result = _join(make_user, "alice")
    queue._dispatch([result.job_id])  # e.g. a republish after Redis seemed to lose it
    assert queue.claim("worker-a") is not None
    assert queue.claim("worker-b") is None  # the duplicate entry is dropped: the row is taken
    assert queue.redis.xlen(STREAM) == 2


def test_lost_entries_are_republished(queue, make_user):
    result = _join(make_user, "alice")
    queue.redis.delete(STREAM)  # Redis restarted without persistence
    queue._group_ready = False
    assert queue.claim("worker-a") is None
    BotJob.objects.filter(pk=result.job_id).update(created_at=BotJob.objects.get(pk=result.job_id).created_at
                                                   - dt.timedelta(seconds=10))
    assert queue.republish_stale(dt.timedelta(seconds=5)) == 1
    claimed = queue.claim("worker-a")
    assert claimed is not None and claimed.job_id == result.job_id


def test_redis_down_at_join_time_loses_nothing(queue, settings, make_user):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.VOICE_BOT_QUEUE = "voicesessions.redis_queue.RedisStreamBotJobQueue"
    result = _join(make_user, "alice" + uuid.uuid4().hex[:4])
    assert BotJob.objects.get(pk=result.job_id).status == BotJobStatus.QUEUED  # the join still succeeded
    settings.REDIS_URL = REDIS_URL  # Redis is back: the sweeper's republish delivers the job
    BotJob.objects.filter(pk=result.job_id).update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    queue = RedisStreamBotJobQueue(REDIS_URL)
    assert queue.republish_stale(dt.timedelta(seconds=5)) == 1
    assert queue.claim("worker-a").job_id == result.job_id


def test_a_restarted_redis_without_the_group_is_handled(queue, make_user):
    queue.claim("worker-a")  # the group exists and is cached as ready
    queue.redis.flushdb()  # Redis restarted empty
    result = _join(make_user, "bob")  # publishing recreates the stream, not the group
    claimed = queue.claim("worker-a")
    assert claimed is not None and claimed.job_id == result.job_id


def test_a_restart_seen_by_the_run_id_republishes_what_it_lost_at_once(queue, make_user, monkeypatch):
    """After a restart, the first join's publish makes the stream anew, so "the stream is gone"
    no longer tells the sweeper that entries were lost; Redis's run id does. (The real restart,
    under load across hosts, is scenario 5 in tests/test_cluster.py.)"""
    lost = _join(make_user, "alice")
    assert queue.republish_stale(dt.timedelta(seconds=60)) == 0  # young and published: nothing to do
    queue.redis.flushdb()  # Redis restarted empty: alice's entry is gone
    fresh = _join(make_user, "bob")  # and bob's join made the stream again
    run_id = queue.redis.info("server")["run_id"]
    monkeypatch.setattr(queue.redis, "info", lambda *a: {"run_id": "0" * 40 if run_id != "0" * 40 else "1" * 40})
    assert queue.republish_stale(dt.timedelta(seconds=60)) == 2  # not 60 s later: now
    claimed = {queue.claim("worker-a").job_id, queue.claim("worker-a").job_id}
    assert claimed == {lost.job_id, fresh.job_id}


def test_a_job_queued_with_the_old_camelcase_fields_still_reads():
    """Rows queued before BotJobSpec's fields became snake_case (a rolling deploy)."""
    from voicesessions.queue import BotJobSpec

    spec = BotJobSpec.from_dict({"session_id": "s", "user_id": "1", "room_name": "voice-1", "room_url": "u",
                                 "provider": "local", "voiceOnly": True, "sessionPersistence": 42,
                                 "systemPrompt": "Be brief.", "somethingNew": 1})
    assert spec.voice_only is True and spec.session_persistence == 42 and spec.system_prompt == "Be brief."


def test_an_idle_worker_waits_in_redis_and_a_join_wakes_it(queue, make_user, settings):
    """An idle worker polled the consumer group 20 times a second (XAUTOCLAIM + XREADGROUP: 2.3% of a
    core doing nothing). It now blocks on the stream, and the join's publish wakes it at once."""
    settings.VOICE_WORKER_JOB_WAIT_SECONDS = 120  # far longer than the test: only the join can end the wait
    client = redis.Redis.from_url(REDIS_URL)

    def blocked_on_the_stream() -> bool:
        return any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in client.client_list())

    async def scenario() -> bool:
        waiting = asyncio.create_task(queue.wait_for_jobs(0.05))
        try:
            await await_until(blocked_on_the_stream, 30, "the worker blocked in XREAD")
            await asyncio.to_thread(_join, make_user, "alice")  # commits, then publishes
            return await asyncio.wait_for(waiting, 60)
        finally:
            waiting.cancel()
            await queue.aclose()

    assert asyncio.run(scenario()) is True
    job = queue.claim("worker-a")
    assert job is not None  # what woke it is there to claim

    # With nothing new, a wait ends at its time limit and says so (the worker then looks again).
    settings.VOICE_WORKER_JOB_WAIT_SECONDS = 0.1

    async def idle() -> bool:
        try:
            return await queue.wait_for_jobs(0.05)
        finally:
            await queue.aclose()

    assert asyncio.run(idle()) is False
