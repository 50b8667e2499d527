"""Prometheus metrics, computed from the database at scrape time.

Sessions, bot jobs and errors are written by many servers and bot workers on
many machines. Counting them where they are stored (rather than in each
process's memory) makes every server's /metrics show the same, whole-system
numbers, and survives restarts. A counter only goes down if rows are deleted,
which Prometheus reads as a counter reset.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .models import (BotJob, BotWorker, ErrorKind, OpsEvent, OpsEventKind, RoomState, SessionEvent, SessionStatus,
                     VoiceEventType, VoiceRoom, VoiceSession)

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600)
JOIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def value_histogram(qs: QuerySet, field: str, buckets: Sequence[float]) -> tuple[list[tuple[str, int]], float]:
    """Cumulative bucket counts and the sum of a numeric field, in one query.

    Counted by the database (one conditional COUNT per bucket), not by loading rows.
    """
    qs = qs.filter(**{f"{field}__isnull": False})
    aggregates: dict[str, Any] = {f"le{i}": Count("pk", filter=Q(**{f"{field}__lte": bound}))
                                  for i, bound in enumerate(buckets)}
    row = qs.aggregate(total=Count("pk"), total_sum=Sum(field), **aggregates)
    counts = [(_le(b), row[f"le{i}"]) for i, b in enumerate(buckets)] + [("+Inf", row["total"])]
    return counts, float(row["total_sum"] or 0)


def _le(bound: float) -> str:
    return str(float(bound))


class VoiceCollector(Collector):
    """Session counts, join and room latencies, error rates by kind and worker capacity."""

    def collect(self) -> Iterator[Metric]:

        now = timezone.now()
        yield from self._sessions(now)
        yield from self._rooms_and_tokens()

        for name, doc, field in (
            ("voice_bot_join_latency_seconds", "Bot join latency: /join queued to bot in the room.", "join_seconds"),
            ("voice_bot_acquire_seconds", "Time for a worker to take a queued job (pool acquire).",
             "acquire_seconds"),
            ("voice_bot_spawn_seconds", "Time from a worker taking the job to its bot being ready.",
             "spawn_seconds"),
        ):
            counts, total = value_histogram(BotJob.objects.all(), field, JOIN_BUCKETS)
            yield HistogramMetricFamily(name, doc, buckets=counts, sum_value=total)

        cutoff = now - dt.timedelta(seconds=settings.VOICE_WORKER_DEAD_AFTER)
        workers = list(BotWorker.objects.filter(stopped_at__isnull=True, heartbeat_at__gte=cutoff))
        util = GaugeMetricFamily("voice_bot_pool_utilization", "Busy share of each live worker's pool (0-1).",
                                 labels=["worker"])
        busy = GaugeMetricFamily("voice_bot_pool_sessions", "Sessions each live worker holds.", labels=["worker"])
        size = GaugeMetricFamily("voice_bot_pool_capacity", "Pool size of each live worker.", labels=["worker"])
        load = GaugeMetricFamily("voice_bot_worker_load", "Each live worker's CPU use per usable core (0-1), "
                                 "over its load window.", labels=["worker"])
        room = GaugeMetricFamily("voice_bot_pool_admitting", "Sessions each live worker takes now, its load "
                                 "allowing.", labels=["worker"])
        for worker in workers:
            util.add_metric([worker.worker_id], worker.active_sessions / worker.capacity if worker.capacity else 0)
            busy.add_metric([worker.worker_id], worker.active_sessions)
            size.add_metric([worker.worker_id], worker.capacity)
            load.add_metric([worker.worker_id], worker.load)
            if worker.admitting is not None:
                room.add_metric([worker.worker_id], worker.admitting)
        yield from (util, busy, size, load, room)
        refused = CounterMetricFamily("voice_joins_refused", "Bot joins refused before a job was queued, by reason.",
                                      labels=["reason"])
        by_reason = dict(OpsEvent.objects.filter(kind=OpsEventKind.JOIN_REFUSED).values_list("label")
                         .annotate(n=Count("id")).order_by())
        refused.add_metric(["no_capacity"], by_reason.pop("no_capacity", 0))  # zero included, for alerts
        for reason, n in sorted(by_reason.items()):
            refused.add_metric([reason], n)
        yield refused

        tools = CounterMetricFamily("voice_tool_calls", "Tool calls in voice sessions, by tool.", labels=["tool"])
        for row in (SessionEvent.objects.filter(type=VoiceEventType.TOOL_CALL).values("payload__name")
                    .annotate(n=Count("id")).order_by()):
            tools.add_metric([str(row["payload__name"] or "unknown")], row["n"])
        yield tools

        errors = CounterMetricFamily("voice_errors", "Errors by kind.", labels=["kind"])
        by_kind = dict(OpsEvent.objects.filter(kind=OpsEventKind.ERROR).values_list("label")
                       .annotate(n=Count("id")).order_by())
        for kind in ErrorKind.values:  # every kind, zero included, so rates and alerts work from the start
            errors.add_metric([kind], by_kind.get(kind, 0))
        yield errors

    def _sessions(self, now: dt.datetime) -> Iterator[Metric]:
        created = CounterMetricFamily("voice_sessions_created", "Voice sessions created.", labels=["mode"])
        modes = dict(VoiceSession.objects.values_list("voice_only").annotate(n=Count("pk")).order_by())
        created.add_metric(["voice_only"], modes.get(True, 0))
        created.add_metric(["multi_user"], modes.get(False, 0))
        yield created
        total = sum(modes.values())
        yield GaugeMetricFamily("voice_sessions_voice_only_ratio", "Share of sessions that are voice-only.",
                                value=modes.get(True, 0) / total if total else 0)

        active = GaugeMetricFamily("voice_sessions_active", "Live sessions by status.", labels=["status"])
        by_status = dict(VoiceSession.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in (SessionStatus.CONNECTING, SessionStatus.ACTIVE, SessionStatus.PAUSED,
                       SessionStatus.INACTIVE, SessionStatus.UNAVAILABLE):
            active.add_metric([status], by_status.get(status, 0))
        yield active

        conversations = OpsEvent.objects.filter(kind=OpsEventKind.CONVERSATION)
        counts, total_s = value_histogram(conversations, "value", DURATION_BUCKETS)
        yield HistogramMetricFamily("voice_session_duration_seconds",
                                    "How long conversations lasted (bot connected to user left or session over).",
                                    buckets=counts, sum_value=total_s)

        # Minutes consumed per provider: finished conversations plus the running ones so far.
        minutes = CounterMetricFamily("voice_provider_minutes", "Conversation minutes, by room provider.",
                                      labels=["provider"])
        done = dict(conversations.values_list("label").annotate(s=Sum("value")).order_by())
        running = (VoiceSession.objects.filter(status__in=(SessionStatus.ACTIVE, SessionStatus.PAUSED),
                                               connected_at__isnull=False)
                   .values_list("room__provider", "connected_at"))
        per_provider: dict[str, float] = {p: s or 0.0 for p, s in done.items()}
        for provider, connected_at in running:
            per_provider[provider] = per_provider.get(provider, 0.0) + (now - connected_at).total_seconds()
        for provider, seconds in sorted(per_provider.items()):
            minutes.add_metric([provider], seconds / 60)
        yield minutes

        # Participants in rooms now: the user and the bot in a conversation, the user alone while connecting.
        participants = GaugeMetricFamily("voice_provider_participants", "Participants in voice rooms now.",
                                         labels=["provider"])
        counts_by = (VoiceSession.objects.filter(status__in=(SessionStatus.CONNECTING, SessionStatus.ACTIVE,
                                                             SessionStatus.PAUSED))
                     .values("room__provider").annotate(
                         talking=Count("pk", filter=Q(status__in=(SessionStatus.ACTIVE, SessionStatus.PAUSED))),
                         waiting=Count("pk", filter=Q(status=SessionStatus.CONNECTING))).order_by())
        for row in counts_by:
            participants.add_metric([row["room__provider"]], 2 * row["talking"] + row["waiting"])
        yield participants

    def _rooms_and_tokens(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily("voice_provider_active_rooms", "Live voice rooms, by provider.", labels=["provider"])
        for provider, n in (VoiceRoom.objects.filter(state=RoomState.LIVE).values_list("provider")
                            .annotate(n=Count("pk")).order_by()):
            rooms.add_metric([provider], n)
        yield rooms

        requests = CounterMetricFamily("voice_room_requests", "Room requests, by result and provider.",
                                       labels=["result", "provider"])
        rows = (OpsEvent.objects.filter(kind__in=(OpsEventKind.ROOM_CREATED, OpsEventKind.ROOM_REUSED,
                                                  OpsEventKind.TOKEN_ISSUED))
                .values_list("kind", "label").annotate(n=Count("id")).order_by())
        reused = total = 0
        tokens_by_provider: dict[str, int] = {}
        for kind, provider, n in rows:
            # Every room request issued one token; TOKEN_ISSUED rows are the other tokens.
            tokens_by_provider[provider] = tokens_by_provider.get(provider, 0) + n
            if kind == OpsEventKind.TOKEN_ISSUED:
                continue
            result = "reused" if kind == OpsEventKind.ROOM_REUSED else "created"
            requests.add_metric([result, provider], n)
            total += n
            reused += n if result == "reused" else 0
        yield requests
        tokens = CounterMetricFamily("voice_tokens_issued", "Room and meeting tokens issued, by provider.",
                                     labels=["provider"])
        for provider, n in sorted(tokens_by_provider.items()):
            tokens.add_metric([provider], n)
        yield tokens
        yield GaugeMetricFamily("voice_room_reuse_ratio", "Share of room requests that reused the user's room.",
                                value=reused / total if total else 0)


registry = CollectorRegistry(auto_describe=False)
registry.register(VoiceCollector())


def scrape_allowed(request: HttpRequest) -> bool:
    """VOICE_METRICS_TOKEN (a Bearer token) if set, else the VOICE_METRICS_ALLOWED_IPS networks."""
    token = settings.VOICE_METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and constant_time_compare(header[7:].strip(), token)
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.VOICE_METRICS_ALLOWED_IPS)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics in Prometheus's text format, for allowed scrapers only."""
    if not scrape_allowed(request):
        return JsonResponse({"error": "forbidden", "detail": "Metrics need the scrape token or an allowed address.",
                             "fields": {"Authorization": ["missing or wrong metrics token"]}}, status=403)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
