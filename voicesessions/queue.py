"""The bot job queue: how a /join reaches a bot worker.

`BotJobQueue` is the interface both sides use: the API enqueues, workers
(`manage.py runbotworker`) claim, then ack once the bot has joined or fail.
The embedded default stores jobs in the database (`DatabaseBotJobQueue`), which
makes enqueueing part of the same transaction that creates the session: a
session never exists without its job, nor a job without its session.
Production swaps in a Redis-backed queue through settings.VOICE_BOT_QUEUE.
"""
from __future__ import annotations

import abc
import asyncio
import functools
import datetime as dt
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import BotJob, BotJobStatus

logger = logging.getLogger("voicesessions.queue")


@dataclass(frozen=True)
class BotJobSpec:
    """Everything a worker needs to start a bot: the JoinRequest, resolved against the assistant.

    No token travels in the job; the worker issues the bot's own room token.
    """

    session_id: str
    user_id: str
    room_name: str
    room_url: str
    provider: str
    voice_only: bool = False
    session_persistence: int = 300
    max_duration: int = 3600
    personality_id: str = ""
    persona: str = ""
    tenant_id: str = ""
    voice: str = ""
    voice_parameters: dict[str, Any] = field(default_factory=dict)
    language: str = "en"
    assistant: str = ""
    system_prompt: str = ""
    behaviour: dict[str, Any] = field(default_factory=dict)  # AssistantRecord.behaviour
    models: dict[str, Any] = field(default_factory=dict)  # AssistantRecord.models_spec (no secrets)
    tools: list[dict[str, Any]] = field(default_factory=list)  # the assistant's custom tools (no secrets)
    ends_at: str = ""  # ISO 8601: when max_duration ends the session (the bot warns before it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BotJobSpec":
        """Read a stored payload; jobs queued before the fields were renamed used the
        API's camelCase names, and a rolling deploy may still find one."""
        renamed = {_OLD_NAMES.get(k, k): v for k, v in data.items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in renamed.items() if k in known})


_OLD_NAMES = {"voiceOnly": "voice_only", "sessionPersistence": "session_persistence", "maxDuration": "max_duration",
              "personalityId": "personality_id", "tenantId": "tenant_id", "voiceParameters": "voice_parameters",
              "systemPrompt": "system_prompt"}


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    spec: BotJobSpec
    attempts: int


class BotJobQueue(abc.ABC):
    """Delivery of bot join jobs to workers, at least once.

    The BotJob row is the record of truth for both queues, so the row work lives
    here: enqueue, the one compare-and-set claim of a row, ack, fail, requeue and
    pending. A subclass only says how a job id reaches a worker: `_dispatch` (after
    the row commits), `_next_ids` (the ids a worker may try to claim) and `_done`.
    """

    def enqueue(self, spec: BotJobSpec) -> str:
        """Queue a job (in the caller's transaction) and return its id."""
        job = BotJob.objects.create(session_id=spec.session_id, payload=spec.to_dict())
        job_id = str(job.id)
        transaction.on_commit(lambda: self._dispatch([job_id]))
        logger.info("[BotJoin] queued job=%s session=%s room=%s", job_id, spec.session_id, spec.room_name)
        return job_id

    def claim(self, worker_id: str) -> ClaimedJob | None:
        """Take the oldest waiting job for `worker_id`, or None when there is none."""
        for job_id, handle in self._next_ids(worker_id):
            claimed = self._claim_row(job_id, worker_id)
            self._offered(job_id, handle, claimed is not None)
            if claimed is not None:
                return claimed
        return None

    @staticmethod
    def _claim_row(job_id: str, worker_id: str) -> ClaimedJob | None:
        """Of two workers that try the same row, only the one whose UPDATE still sees
        `queued` gets it (SQLite and PostgreSQL alike)."""
        if not job_id:
            return None
        with transaction.atomic():
            won = BotJob.objects.filter(pk=job_id, status=BotJobStatus.QUEUED).update(
                status=BotJobStatus.CLAIMED, worker_id=worker_id, claimed_at=timezone.now(),
                attempts=F("attempts") + 1)
            if not won:
                return None
            job = BotJob.objects.get(pk=job_id)
        return ClaimedJob(str(job.id), BotJobSpec.from_dict(job.payload), job.attempts)

    def ack(self, job_id: str, worker_id: str) -> None:
        """The bot joined: the job is done."""
        BotJob.objects.finish(job_id, worker_id, status=BotJobStatus.DONE)
        self._done(job_id)

    def fail(self, job_id: str, worker_id: str, error: str) -> None:
        """The job could not be done."""
        BotJob.objects.finish(job_id, worker_id, status=BotJobStatus.FAILED, error=error)
        self._done(job_id)

    def requeue(self, job_ids: list[str]) -> int:
        """Put claimed, unfinished jobs back in the queue for another worker; returns how many.

        The one way a job goes back: the rows turn `queued` in the caller's
        transaction, and are dispatched again once it commits.
        """
        ids = [str(i) for i in BotJob.objects.filter(pk__in=job_ids, status=BotJobStatus.CLAIMED)
               .values_list("id", flat=True)]
        BotJob.objects.filter(pk__in=ids, status=BotJobStatus.CLAIMED).update(status=BotJobStatus.QUEUED,
                                                                           worker_id="")
        if ids:
            transaction.on_commit(lambda: self._dispatch(ids))
        return len(ids)

    def requeue_stale(self, older_than: dt.timedelta) -> int:
        """Put jobs claimed longer ago than `older_than` and never acked back in the queue."""
        cutoff = timezone.now() - older_than
        return self.requeue(list(BotJob.objects.filter(status=BotJobStatus.CLAIMED, claimed_at__lt=cutoff)
                                 .values_list("id", flat=True)))

    def republish_stale(self, older_than: dt.timedelta) -> int:
        """Dispatch again queued jobs whose dispatch may have been lost; returns how many.

        Nothing is lost from the database queue (the row is the dispatch): 0.
        """
        return 0

    def pending(self) -> int:
        """How many jobs wait for a worker."""
        return BotJob.objects.filter(status=BotJobStatus.QUEUED).count()

    async def wait_for_jobs(self, poll: float) -> bool:
        """Return once a job may be waiting (True), or when it is time to look again (False).

        The database has nothing to wait on: a worker with free slots polls it every `poll`
        seconds. A queue that can tell of a new job sooner overrides this.
        """
        await asyncio.sleep(poll)
        return False

    async def aclose(self) -> None:
        """Release what `wait_for_jobs` holds (the worker is stopping)."""

    # --- what a queue adds ---------------------------------------------------------
    @abc.abstractmethod
    def _next_ids(self, worker_id: str) -> list[tuple[str, Any]]:
        """Job ids `worker_id` may try to claim, oldest first, each with the queue's handle."""

    def _offered(self, job_id: str, handle: Any, claimed: bool) -> None:
        """The claim of an offered id was tried (won if `claimed`)."""

    def _dispatch(self, job_ids: list[str]) -> None:
        """Queued rows committed: make them reach a worker."""

    def _done(self, job_id: str) -> None:
        """The claimed job finished."""


class DatabaseBotJobQueue(BotJobQueue):
    """Jobs as BotJob rows, nothing else: a worker looks for queued rows after the database changed."""

    def __init__(self) -> None:
        self._stamp: tuple[tuple[int, int], ...] | None = None  # the SQLite files as the last wait left them

    async def wait_for_jobs(self, poll: float) -> bool:
        """On SQLite, look at the database's files every `poll` seconds, and return once they
        changed (a commit, perhaps a job) or after VOICE_WORKER_JOB_WAIT_SECONDS.

        An idle worker ran its claim query 20 times a second through the database thread;
        a stat() of two files costs a few microseconds, so it now queries only after a
        write. The timeout bounds what a missed change could cost. Other databases poll.
        """
        files = _sqlite_files()
        if not files:
            return await super().wait_for_jobs(poll)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.VOICE_WORKER_JOB_WAIT_SECONDS
        while True:
            stamp = tuple(_file_stamp(f) for f in files)
            if stamp != self._stamp:
                self._stamp = stamp
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(poll)

    def _next_ids(self, worker_id: str) -> list[tuple[str, Any]]:
        ids = BotJob.objects.filter(status=BotJobStatus.QUEUED).order_by("created_at").values_list("id", flat=True)
        return [(str(i), None) for i in ids[:5]]


def _sqlite_files() -> list[str]:
    """The default database's file and its write-ahead log, when it is a SQLite file."""
    db = settings.DATABASES["default"]
    name = str(db.get("NAME") or "")
    if not db["ENGINE"].endswith("sqlite3") or not name or name == ":memory:" or name.startswith("file:"):
        return []
    return [name, f"{name}-wal"]


def _file_stamp(path: str) -> tuple[int, int]:
    """(modification time in ns, size) of a file, or (0, 0) while it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def get_queue() -> BotJobQueue:
    """The queue named by settings.VOICE_BOT_QUEUE (one instance per process and class)."""
    return _queue(settings.VOICE_BOT_QUEUE, settings.REDIS_URL)


@functools.lru_cache(maxsize=None)
def _queue(path: str, _redis_url: str) -> BotJobQueue:
    # Keyed by the Redis URL too: the Redis queue connects to it at construction.
    return import_string(path)()
