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
import functools
import datetime as dt
import logging
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
    """Everything a worker needs to start a bot: the seed's JoinRequest, resolved.

    No token travels in the job; the worker issues the bot's own room token.
    """

    session_id: str
    user_id: str
    room_name: str
    room_url: str
    provider: str
    voiceOnly: bool = False
    sessionPersistence: int = 300
    maxDuration: int = 3600
    personalityId: str = ""
    persona: str = ""
    tenantId: str = ""
    voice: str = ""
    voiceParameters: dict[str, Any] = field(default_factory=dict)
    language: str = "en"
    assistant: str = ""
    systemPrompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BotJobSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    spec: BotJobSpec
    attempts: int


class BotJobQueue(abc.ABC):
    """Delivery of bot join jobs to workers, at least once."""

    @abc.abstractmethod
    def enqueue(self, spec: BotJobSpec) -> str:
        """Queue a job and return its id."""

    @abc.abstractmethod
    def claim(self, worker_id: str) -> ClaimedJob | None:
        """Take the oldest waiting job for `worker_id`, or None when there is none."""

    @abc.abstractmethod
    def ack(self, job_id: str, worker_id: str) -> None:
        """The bot joined: the job is done."""

    @abc.abstractmethod
    def fail(self, job_id: str, worker_id: str, error: str) -> None:
        """The job could not be done."""

    @abc.abstractmethod
    def requeue_stale(self, older_than: dt.timedelta) -> int:
        """Put jobs claimed longer ago than `older_than` and never acked back in the queue."""

    @abc.abstractmethod
    def pending(self) -> int:
        """How many jobs wait for a worker."""


class DatabaseBotJobQueue(BotJobQueue):
    """Jobs as BotJob rows; claiming is a compare-and-set UPDATE.

    Works on SQLite and PostgreSQL alike: of two workers that pick the same
    row, only the one whose UPDATE still sees `queued` gets it.
    """

    def enqueue(self, spec: BotJobSpec) -> str:
        job = BotJob.objects.create(session_id=spec.session_id, payload=spec.to_dict())
        logger.info("[BotJoin] queued job=%s session=%s room=%s", job.id, spec.session_id, spec.room_name)
        return str(job.id)

    def claim(self, worker_id: str) -> ClaimedJob | None:
        for job_id in BotJob.objects.filter(status=BotJobStatus.QUEUED).values_list("id", flat=True)[:5]:
            with transaction.atomic():
                won = BotJob.objects.filter(pk=job_id, status=BotJobStatus.QUEUED).update(
                    status=BotJobStatus.CLAIMED, worker_id=worker_id, claimed_at=timezone.now())
                if won:
                    BotJob.objects.filter(pk=job_id).update(attempts=F("attempts") + 1)
                    job = BotJob.objects.get(pk=job_id)
                    return ClaimedJob(str(job.id), BotJobSpec.from_dict(job.payload), job.attempts)
        return None

    def ack(self, job_id: str, worker_id: str) -> None:
        BotJob.objects.finish(job_id, worker_id, status=BotJobStatus.DONE)

    def fail(self, job_id: str, worker_id: str, error: str) -> None:
        BotJob.objects.finish(job_id, worker_id, status=BotJobStatus.FAILED, error=error)

    def requeue_stale(self, older_than: dt.timedelta) -> int:
        cutoff = timezone.now() - older_than
        return BotJob.objects.filter(status=BotJobStatus.CLAIMED, claimed_at__lt=cutoff).update(
            status=BotJobStatus.QUEUED, worker_id="")

    def pending(self) -> int:
        return BotJob.objects.filter(status=BotJobStatus.QUEUED).count()


def get_queue() -> BotJobQueue:
    """The queue named by settings.VOICE_BOT_QUEUE (one instance per process and class)."""
    return _queue(settings.VOICE_BOT_QUEUE, settings.REDIS_URL)


@functools.lru_cache(maxsize=None)
def _queue(path: str, _redis_url: str) -> BotJobQueue:
    # Keyed by the Redis URL too: the Redis queue connects to it at construction.
    return import_string(path)()
