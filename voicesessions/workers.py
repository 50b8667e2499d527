"""The registry of bot workers: they advertise themselves here; dead ones lose their sessions.

Plain functions over the BotWorker table, shared by the workers (register,
heartbeat, stop), the servers (find a session's worker, see botclient.py) and
what happens to a dead worker's sessions is workerloss.py. It lives on the
dispatching side: voicebot imports it, never the reverse.
"""
from __future__ import annotations

import logging
import os
import socket

from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from .models import BotWorker, VoiceSession

logger = logging.getLogger("voicesessions.workers")
# The header a server presents to a worker's control endpoint, with control_secret(worker_id).
SECRET_HEADER = "X-Voice-Worker-Secret"


def control_secret(worker_id: str) -> str:
    """The shared secret servers present to a worker's control endpoint (derived from SECRET_KEY)."""
    return salted_hmac("voicebot.control", worker_id).hexdigest()


def check_control_secret(worker_id: str, presented: str) -> bool:
    return constant_time_compare(control_secret(worker_id), presented or "")


def register(worker_id: str, control_url: str, capacity: int, offers: dict[str, list[str]] | None = None) -> BotWorker:
    """Advertise a worker: where servers reach it, how many sessions it takes, the providers it runs."""
    worker, _ = BotWorker.objects.update_or_create(worker_id=worker_id, defaults={
        "hostname": socket.gethostname(), "pid": os.getpid(), "control_url": control_url, "capacity": capacity,
        "active_sessions": 0, "offers": offers or {}, "started_at": timezone.now(), "heartbeat_at": timezone.now(), "stopped_at": None})
    logger.info("[BotJoin] worker %s registered at %s capacity=%s", worker_id, control_url, capacity)
    return worker


def heartbeat(worker_id: str, active_sessions: int, *, load: float | None = None,
              admitting: int | None = None) -> bool:
    """The worker is alive, with this many sessions (and this load, and room for this many more).

    Returns False when the cluster has declared it lost (its heartbeats stopped reaching the
    database, workerloss.mark_dead_workers failed its sessions): a stopped registration is
    not brought back by a late heartbeat, the worker must drop its sessions and register anew.
    """
    fields = {"heartbeat_at": timezone.now(), "active_sessions": active_sessions}
    if load is not None:
        fields.update(load=load, admitting=admitting)
    return bool(_registration(worker_id).update(**fields))


def is_live(worker_id: str) -> bool:
    """Whether the worker's registration stands (the fence its writes to sessions go through)."""
    return _registration(worker_id).exists()


def _registration(worker_id: str) -> "QuerySet[BotWorker]":
    """The worker's row while its registration stands (not stopped, not declared lost)."""
    return BotWorker.objects.filter(worker_id=worker_id, stopped_at__isnull=True)


def stop(worker_id: str) -> None:
    BotWorker.objects.filter(worker_id=worker_id).update(stopped_at=timezone.now(), active_sessions=0)


def worker_for(session: VoiceSession) -> BotWorker | None:
    if not session.bot_worker_id:
        return None
    return _registration(session.bot_worker_id).first()
