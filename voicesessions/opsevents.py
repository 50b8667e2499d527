"""Record the operational facts that /metrics and the dashboard count.

Recording never fails the caller: a lost count is better than a lost request.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from .models import ErrorKind, OpsEvent, OpsEventKind

logger = logging.getLogger("voicesessions.ops")


def record(kind: str, label: str, *, detail: str = "", value: float | None = None, user: Any = None,
           session: Any = None) -> None:
    """Append one OpsEvent (kind from OpsEventKind)."""
    try:
        # A savepoint of its own: callers record inside their atomic() blocks, and on PostgreSQL
        # a failed INSERT would otherwise leave the caller's whole transaction unusable.
        with transaction.atomic():
            OpsEvent.objects.create(kind=kind, label=label[:32], detail=detail[:200], value=value,
                                    user_id=getattr(user, "pk", user), session_id=getattr(session, "pk", session))
    except Exception:  # noqa: BLE001 - see the module docstring
        logger.warning("[VoiceSession] could not record %s %s", kind, label, exc_info=True)


def record_error(kind: str, *, detail: str = "", user: Any = None, session: Any = None) -> None:
    """Count an error of one of the ErrorKind kinds."""
    if kind not in ErrorKind.values:
        raise ValueError(f"unknown error kind {kind!r}")
    record(OpsEventKind.ERROR, kind, detail=detail, user=user, session=session)
