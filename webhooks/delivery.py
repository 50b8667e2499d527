"""Delivering the outbox: claim due rows, POST them signed, record the answer, back off on failure.

Run by every bot worker beside its sweeper (`deliver_forever`), so deliveries go on
while any worker is alive and the end-of-call summary can use the assistant's LLM. A
row is claimed with a lease (a conditional UPDATE, safe on SQLite and PostgreSQL
alike), so two workers never send it at once, and a worker that dies mid-delivery
only delays it by the lease. A 2xx answer delivers it; anything else is tried again
after VOICE_WEBHOOK_RETRY_BASE x 2^(attempts-1) seconds (at most
VOICE_WEBHOOK_RETRY_MAX), and after VOICE_WEBHOOK_MAX_ATTEMPTS it is `failed` and
waits for a resend from admin. Delivery is at least once: receivers drop an `id`
they already have.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any, Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from assistants.signing import HEADER, sign

from . import report
from .models import DeliveryStatus, WebhookDelivery, WebhookKind

logger = logging.getLogger("webhooks")
# (the session's assistant id, the call's transcript as text) -> a short summary.
Summariser = Callable[[Any, str], Awaitable[str]]
CLAIM_BATCH = 20


def backoff(attempts: int) -> float:
    """Seconds before the next attempt, after `attempts` failed ones."""
    return min(settings.VOICE_WEBHOOK_RETRY_MAX, settings.VOICE_WEBHOOK_RETRY_BASE * 2 ** max(0, attempts - 1))


def claim_due(limit: int = CLAIM_BATCH) -> list[WebhookDelivery]:
    """Lease up to `limit` due rows, oldest first; each lease is its own compare-and-set."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = WebhookDelivery.objects.filter(free, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    claimed = []
    for pk in due.order_by("next_attempt_at", "created_at").values_list("pk", flat=True)[:limit]:
        lease = now + dt.timedelta(seconds=settings.VOICE_WEBHOOK_LEASE_SECONDS)
        if WebhookDelivery.objects.filter(free, pk=pk, status=DeliveryStatus.PENDING).update(lease_until=lease):
            claimed.append(WebhookDelivery.objects.get(pk=pk))
    return claimed


def secret_for(delivery: WebhookDelivery) -> str:
    """The secret that signs `delivery`: its assistant's, or the global VOICE_WEBHOOK_SECRET."""
    if delivery.assistant_id is None:
        return settings.VOICE_WEBHOOK_SECRET
    from assistants.models import AssistantRecord

    return AssistantRecord.objects.filter(pk=delivery.assistant_id).values_list("server_secret", flat=True).first() or ""


def finish(delivery: WebhookDelivery, *, code: int | None, error: str = "") -> None:
    """Record one attempt's outcome and release the lease."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {"attempts": F("attempts") + 1, "lease_until": None, "last_status_code": code,
                              "last_error": error[:300]}
    if code is not None and 200 <= code < 300:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
    elif attempts >= settings.VOICE_WEBHOOK_MAX_ATTEMPTS:
        fields["status"] = DeliveryStatus.FAILED
    else:
        fields["next_attempt_at"] = now + dt.timedelta(seconds=backoff(attempts))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)


def resend(queryset: Any) -> int:
    """Admin's resend: the rows go out again at once, with a fresh set of attempts."""
    return queryset.update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now(),
                           lease_until=None)


def _report_input(delivery: WebhookDelivery) -> tuple[dict[str, Any], Any]:
    from voicesessions.models import VoiceSession

    data = report.build(delivery.session_id)
    assistant_id = VoiceSession.objects.filter(pk=delivery.session_id).values_list("assistant_id", flat=True).first()
    return data, assistant_id


def _save_report(delivery: WebhookDelivery, data: dict[str, Any]) -> None:
    delivery.payload = {**delivery.payload, "data": data}
    delivery.prepared = True
    WebhookDelivery.objects.filter(pk=delivery.pk).update(payload=delivery.payload, prepared=True)


async def prepare(delivery: WebhookDelivery, summarise: Summariser | None) -> None:
    """Write an end-of-call report once (the summary by the assistant's LLM), and keep it: a
    retry or a resend sends the same report."""
    data, assistant_id = await database_sync_to_async(_report_input)(delivery)
    text = report.transcript_text(data)
    if summarise is not None and text:
        try:
            data["summary"] = (await asyncio.wait_for(summarise(assistant_id, text),
                                                      settings.VOICE_WEBHOOK_SUMMARY_TIMEOUT)).strip()
        except Exception as exc:  # noqa: BLE001 - a report without its summary beats no report
            logger.warning("[VoiceSession] session=%s: no summary for the end-of-call report (%s)",
                           delivery.session_id, type(exc).__name__)
            data["summaryError"] = "The assistant's model did not write a summary."
    await database_sync_to_async(_save_report)(delivery, data)


async def send(delivery: WebhookDelivery, http: Any) -> None:
    """One attempt at one delivery."""
    secret = await database_sync_to_async(secret_for)(delivery)
    if not secret:
        await database_sync_to_async(finish)(delivery, code=None, error="no signing secret (VOICE_WEBHOOK_SECRET)")
        return
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(secret, body), "X-Voice-Event": delivery.kind,
               "X-Voice-Delivery": str(delivery.pk), "User-Agent": "voice-assistant-webhooks/1"}
    try:
        response = await asyncio.wait_for(http.post(delivery.url, content=body, headers=headers),
                                          settings.VOICE_WEBHOOK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - a timeout or any transport failure: tried again later
        error = "no answer in time" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
        logger.warning("[VoiceSession] webhook %s %s to %s: %s (attempt %s)", delivery.kind, delivery.pk,
                       delivery.url, error, delivery.attempts + 1)
        await database_sync_to_async(finish)(delivery, code=None, error=error)
        return
    level = logging.INFO if 200 <= response.status_code < 300 else logging.WARNING
    logger.log(level, "[VoiceSession] webhook %s %s to %s: HTTP %s (attempt %s)", delivery.kind, delivery.pk,
               delivery.url, response.status_code, delivery.attempts + 1)
    await database_sync_to_async(finish)(delivery, code=response.status_code,
                                         error="" if response.is_success else response.text[:300])


def release(ids: list[Any]) -> None:
    """Give back leases not used: the worker is stopping before it sent these."""
    WebhookDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(lease_until=None)


async def deliver_due(http: Any, *, summarise: Summariser | None = None) -> int:
    """One pass over the due rows; returns how many were attempted."""
    rows = await database_sync_to_async(claim_due)()
    done = 0
    try:
        for delivery in rows:
            if delivery.kind == WebhookKind.END_OF_CALL_REPORT and not delivery.prepared:
                await prepare(delivery, summarise)
            await send(delivery, http)
            done += 1
    except asyncio.CancelledError:
        # Stopping: the rows not yet answered go back now, not when their leases run out.
        await database_sync_to_async(release)([row.pk for row in rows[done:]])
        raise
    return len(rows)


async def deliver_forever(stopping: asyncio.Event, *, summarise: Summariser | None = None) -> None:
    """Deliver until `stopping` is set (a bot worker's task)."""
    import httpx

    async with httpx.AsyncClient(follow_redirects=False) as http:
        while not stopping.is_set():
            try:
                busy = await deliver_due(http, summarise=summarise)
            except Exception:  # noqa: BLE001 - the database may be briefly away: keep going
                logger.exception("[VoiceSession] webhook delivery pass failed")
                busy = 0
            if not busy:
                try:
                    await asyncio.wait_for(stopping.wait(), settings.VOICE_WEBHOOK_POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
