"""How servers reach a session's bot: control messages and WebRTC signalling, over the
control endpoint of the worker that holds it (voicebot/control.py serves it).

Raises its own errors, not the API's: the REST view and the event sender decide
what a failure means to their callers.
"""
from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction

from .models import BotWorker, VoiceSession
from .workers import SECRET_HEADER, control_secret, worker_for

logger = logging.getLogger("voicesessions.botclient")


class BotUnreachable(Exception):
    """The worker did not answer (down, or too slow)."""


class BotRefused(Exception):
    """The worker answered with an error status; `status` says which."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the bot worker answered {status}")
        self.status = status


def _headers(worker: BotWorker) -> dict[str, str]:
    return {SECRET_HEADER: control_secret(worker.worker_id)}


def send_to_bot(session_id: Any, action: str, **data: Any) -> None:
    """Tell the session's bot to pause, resume, take a user message or leave, after commit.

    "leave" waits until the bot has left (the worker answers once its transport
    is out of the room), so a teardown deletes a Daily room only after the bot
    is gone.
    """
    timeout = settings.VOICE_BOT_LEAVE_WAIT if action == "leave" else 5
    transaction.on_commit(lambda: send_control(session_id, {"action": action, **data}, timeout=timeout))


def send_control(session_id: Any, message: dict[str, Any], *, timeout: float) -> bool:
    """Tell the session's bot to pause, resume, take a user message or leave.

    False when no worker holds the bot (not claimed yet: its worker reads the
    session's state when it claims the job) or the worker could not be reached.
    """
    session = VoiceSession.objects.filter(pk=session_id).first()
    worker = worker_for(session) if session else None
    if worker is None:
        return False
    try:
        httpx.post(f"{worker.control_url}/sessions/{session_id}/control", json=message, timeout=timeout,
                   headers=_headers(worker))
    except httpx.HTTPError as exc:
        logger.warning("[BotJoin] control %s for session %s not delivered: %s", message.get("action"),
                       session_id, type(exc).__name__)
        return False
    return True


async def relay_signalling(worker: BotWorker, method: str, session_id: Any, body: dict[str, Any],
                           *, timeout: float = 20) -> dict[str, Any]:
    """POST an offer or PATCH ICE candidates to the worker holding the session's bot."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.request(method, f"{worker.control_url}/sessions/{session_id}/offer",
                                            json=body, headers=_headers(worker))
    except httpx.HTTPError as exc:
        raise BotUnreachable(type(exc).__name__) from exc
    if response.status_code >= 400:
        raise BotRefused(response.status_code)
    return response.json()
