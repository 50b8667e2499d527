"""Filling the outbox: a webhook row for each event a server should hear of, written with the event.

A receiver of SessionEvent's post_save, so the row joins the transaction that stores
the event: both commit or neither does, and a crash between the end of a session and
its delivery loses nothing. voicesessions does not know this app exists.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from voicesessions.models import SessionEvent, VoiceEventType

from .models import WebhookDelivery, WebhookKind

logger = logging.getLogger("webhooks")

KINDS = {VoiceEventType.SESSION_STATUS: WebhookKind.SESSION_STATUS, VoiceEventType.TRANSCRIPT: WebhookKind.TRANSCRIPT,
         VoiceEventType.TOOL_CALL: WebhookKind.TOOL_CALL, VoiceEventType.TOOL_RESULT: WebhookKind.TOOL_RESULT,
         VoiceEventType.SESSION_END: WebhookKind.SESSION_END}


def target(session: Any) -> tuple[int | None, str]:
    """Where a session's webhooks go: its assistant's server URL, else the global one ("" for none).
    Returns the assistant whose secret signs them (None: VOICE_WEBHOOK_SECRET's). The assistant is
    the session's own object, read once for all its events."""
    assistant = session.assistant if session.assistant_id else None
    if assistant is not None and assistant.server_url:
        return assistant.pk, assistant.server_url
    return None, settings.VOICE_WEBHOOK_URL


def envelope(kind: str, session: Any, data: dict[str, Any], delivery_id: Any) -> dict[str, Any]:
    """The JSON every webhook has: its id, type, when, whose session, and the event's own data."""
    assistant = getattr(session.assistant, "slug", None) if session.assistant_id else None
    return {"id": str(delivery_id), "type": kind, "createdAt": timezone.now().isoformat(),
            "sessionId": str(session.pk), "userId": str(session.user_id), "assistant": assistant, "data": data}


@receiver(post_save, sender=SessionEvent, dispatch_uid="webhooks.enqueue_for_event")
def enqueue_for_event(sender: Any, instance: SessionEvent, created: bool, **kwargs: Any) -> None:
    kind = KINDS.get(instance.type)
    if not created or kind is None:
        return
    data = dict(instance.payload or {})
    if kind == WebhookKind.TRANSCRIPT and not data.get("final"):
        return  # interim transcripts are for the page, not for servers
    session = instance.session
    assistant_id, url = target(session)
    if not url:
        return
    data["eventId"] = instance.pk
    rows = [WebhookDelivery(kind=kind, session=session, assistant_id=assistant_id, url=url)]
    if kind == WebhookKind.SESSION_END:
        # Written by a deliverer when it is due: the summary needs the assistant's LLM.
        rows.append(WebhookDelivery(kind=WebhookKind.END_OF_CALL_REPORT, session=session, assistant_id=assistant_id,
                                    url=url, prepared=False))
    for row in rows:
        row.payload = envelope(row.kind, session, data if row.prepared else {}, row.pk)
    WebhookDelivery.objects.bulk_create(rows)
