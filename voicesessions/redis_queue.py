"""The bot job queue on Redis Streams, for many workers on many machines.

Why Streams with a consumer group rather than Celery: a bot job is "start a
long-lived session", not a short task; what matters is that exactly one
worker with free capacity takes it, acknowledges it once its bot is ready,
and that a job taken by a worker that died is taken again. A consumer group
gives that directly: a worker reads (XREADGROUP) only while it has a free
slot, so jobs land on workers with room; an entry stays pending until XACK;
and XAUTOCLAIM hands a dead consumer's pending entries to a live one.

The BotJob row stays the record of truth (created in the same transaction as
the session). The stream only dispatches: an entry is published after commit,
and the row's compare-and-set claim decides who owns the job, so a duplicate
entry (a republish after Redis lost one) cannot start a second bot.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from .models import BotJob, BotJobStatus
from .queue import BotJobQueue, ClaimedJob

logger = logging.getLogger("voicesessions.queue")

STREAM = "voice:botjobs"
GROUP = "bot-workers"


class RedisStreamBotJobQueue(BotJobQueue):
    """The base queue's rows, dispatched through a Redis stream's consumer group."""

    def __init__(self, url: str | None = None) -> None:
        self.redis = redis.Redis.from_url(url or settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        self._entries: dict[str, bytes] = {}  # job id -> stream entry id, for the ack
        self._republished: dict[str, dt.datetime] = {}
        self._group_ready = False
        self._run_id: str | None = None  # the Redis server's run id as last seen: a new one is a restart
        self._url = url or settings.REDIS_URL
        self._doorbell: Any = None  # an asyncio client for wait_for_jobs, on the worker's loop
        self._seen: bytes | None = None  # the newest stream entry wait_for_jobs has seen

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _dispatch(self, job_ids: list[str]) -> None:
        """Put job ids on the stream (after their rows are committed)."""
        for job_id in job_ids:
            try:
                self._ensure_group()
                self.redis.xadd(STREAM, {"job": job_id}, maxlen=100_000, approximate=True)
            except redis.RedisError as exc:
                # The row is queued in the database; republish_stale() retries.
                logger.warning("[BotJoin] could not publish job %s to Redis (%s); will retry", job_id,
                               type(exc).__name__)

    def claim(self, worker_id: str) -> ClaimedJob | None:
        try:
            return super().claim(worker_id)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted empty: make the group again (from entry 0, so
            # entries published since are delivered) and try once more.
            self._group_ready = False
            return super().claim(worker_id)

    def _next_ids(self, worker_id: str) -> list[tuple[str, Any]]:
        self._ensure_group()
        entries = self._take_dead_consumers_entries(worker_id)
        if not entries:
            reply = self.redis.xreadgroup(GROUP, worker_id, {STREAM: ">"}, count=1)
            entries = reply[0][1] if reply else []
        return [((fields.get(b"job") or b"").decode(), entry_id) for entry_id, fields in entries]

    async def wait_for_jobs(self, poll: float) -> bool:
        """Block on the stream (XREAD BLOCK) until an entry newer than the last one seen comes.

        Polling the consumer group every `poll` seconds cost an idle worker ~2.3% of a core
        (XAUTOCLAIM and XREADGROUP 20 times a second, through the database thread); this
        waits in Redis and wakes the moment a join publishes. Every waiting worker wakes;
        the consumer group and the row's claim still give the job to one. The wait ends
        after VOICE_WORKER_JOB_WAIT_SECONDS in any case, so a dead worker's pending entry
        (XAUTOCLAIM) is still looked for that often.
        """
        wait = settings.VOICE_WORKER_JOB_WAIT_SECONDS
        try:
            if self._doorbell is None:
                import redis.asyncio as aredis

                self._doorbell = aredis.Redis.from_url(self._url, socket_timeout=wait + 5, socket_connect_timeout=5)
            if self._seen is None:
                self._seen = await self._newest()
            reply = await self._doorbell.xread({STREAM: self._seen}, count=1, block=max(1, int(wait * 1000)))
            if reply:
                # Past every entry that is there now: one wake-up per burst, not one per entry.
                self._seen = await self._newest()
            return bool(reply)
        except (redis.RedisError, OSError) as exc:  # Redis restarting: the claim loop reports it
            logger.debug("[BotJoin] waiting for jobs on Redis failed (%s)", type(exc).__name__)
            await self.aclose()
            await asyncio.sleep(poll)
            return False

    async def _newest(self) -> bytes:
        newest = await self._doorbell.xrevrange(STREAM, count=1)
        return newest[0][0] if newest else b"0-0"

    async def aclose(self) -> None:
        doorbell, self._doorbell, self._seen = self._doorbell, None, None
        if doorbell is not None:
            try:
                await doorbell.aclose()
            except (redis.RedisError, OSError):
                pass

    def _take_dead_consumers_entries(self, worker_id: str) -> list[Any]:
        """Entries pending longer than a dead worker would hold them go to this worker."""
        idle_ms = int(settings.VOICE_WORKER_DEAD_AFTER * 1000)
        _next, entries, *_ = self.redis.xautoclaim(STREAM, GROUP, worker_id, min_idle_time=idle_ms, count=1)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _offered(self, job_id: str, handle: Any, claimed: bool) -> None:
        if claimed:
            self._entries[job_id] = handle
        else:
            self.redis.xack(STREAM, GROUP, handle)  # done, or owned by someone else: drop the entry

    def _done(self, job_id: str) -> None:
        entry_id = self._entries.pop(job_id, None)
        if entry_id is not None:
            try:
                self.redis.xack(STREAM, GROUP, entry_id)
            except redis.RedisError:
                pass  # the row says done; a re-delivered entry is dropped by the claim

    def _restarted(self) -> bool:
        """Whether the Redis server restarted since this process last looked (its run id changed)."""
        run_id = str(self.redis.info("server").get("run_id", ""))
        restarted, self._run_id = self._run_id is not None and run_id != self._run_id, run_id
        if restarted:
            logger.warning("[BotJoin] Redis restarted (run id %s): publishing every queued job again", run_id[:8])
        return restarted

    def republish_stale(self, older_than: dt.timedelta) -> int:
        """Give queued rows a new stream entry when Redis may have lost theirs.

        All of them when the stream itself is gone or Redis restarted (without
        persistence it lost the entries); otherwise only rows older than `older_than`, and each at
        most once per `older_than` from this process, so a backlog waiting
        for free slots does not flood the stream with duplicates.
        """
        queued = BotJob.objects.filter(status=BotJobStatus.QUEUED)
        restarted = self._restarted()
        if self.redis.exists(STREAM) and not restarted:
            cutoff = timezone.now() - older_than
            queued = queued.filter(created_at__lt=cutoff)
        else:
            # Gone, or made anew since a restart by a join's publish (which must not hide the
            # entries the restart lost): every queued row is published again.
            self._group_ready = False
            self._republished.clear()
        now = timezone.now()
        ids = [str(i) for i in queued.values_list("id", flat=True)[:500]
               if now - self._republished.get(str(i), now - older_than) >= older_than]
        for job_id in ids:
            self._republished[job_id] = now
        self._dispatch(ids)
        return len(ids)
