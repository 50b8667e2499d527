"""The operations dashboard's figures, from the database, over a chosen period.

Plain Python shared by the admin page (charts) and its JSON form. Each series
has one value per hour (24 h / 48 h) or per day (7 d / 30 d).
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Avg, Count, DateTimeField, Q
from django.db.models.functions import Trunc
from django.utils import timezone

from .models import BotJob, BotJobStatus, ErrorKind, OpsEvent, OpsEventKind, VoiceSession


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    span: dt.timedelta
    bucket: str  # "hour" | "day"


PERIODS = {p.key: p for p in (
    Period("24h", "Last 24 hours", dt.timedelta(hours=24), "hour"),
    Period("48h", "Last 48 hours", dt.timedelta(hours=48), "hour"),
    Period("7d", "Last 7 days", dt.timedelta(days=7), "day"),
    Period("30d", "Last 30 days", dt.timedelta(days=30), "day"),
)}
DEFAULT_PERIOD = "24h"


class UnknownPeriod(ValueError):
    pass


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100) of values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _floor(moment: dt.datetime, bucket: str) -> dt.datetime:
    moment = moment.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _buckets(since: dt.datetime, until: dt.datetime, bucket: str) -> list[dt.datetime]:
    step = dt.timedelta(days=1) if bucket == "day" else dt.timedelta(hours=1)
    start, out = _floor(since, bucket), []
    while start <= until:
        out.append(start)
        start += step
    return out


def _per_bucket(qs: Any, field: str, bucket: str, **aggregates: Any) -> dict[dt.datetime, dict[str, Any]]:
    rows = (qs.annotate(b=Trunc(field, bucket, output_field=DateTimeField(), tzinfo=dt.timezone.utc))
            .values("b").annotate(**aggregates).order_by())
    return {_floor(row["b"], bucket): row for row in rows}


def stats(period_key: str = DEFAULT_PERIOD, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every figure the dashboard shows, JSON-ready."""
    if period_key not in PERIODS:
        raise UnknownPeriod(f"Unknown period '{period_key}'; use one of {', '.join(PERIODS)}.")
    period = PERIODS[period_key]
    now = now or timezone.now()
    since = now - period.span
    buckets = _buckets(since, now, period.bucket)

    sessions = VoiceSession.objects.filter(created_at__gte=since)
    ops = OpsEvent.objects.filter(created_at__gte=since)
    conversations = ops.filter(kind=OpsEventKind.CONVERSATION)
    room_requests = ops.filter(kind__in=(OpsEventKind.ROOM_CREATED, OpsEventKind.ROOM_REUSED))
    errors = ops.filter(kind=OpsEventKind.ERROR)

    created_hourly = _per_bucket(sessions, "created_at", "hour", n=Count("pk"))
    created_daily = _per_bucket(sessions, "created_at", "day", n=Count("pk"))
    durations = _per_bucket(conversations, "created_at", period.bucket, avg=Avg("value"), n=Count("pk"))
    reuse = _per_bucket(room_requests, "created_at", period.bucket, n=Count("pk"),
                        reused=Count("pk", filter=Q(kind=OpsEventKind.ROOM_REUSED)))
    error_counts = _per_bucket(errors, "created_at", period.bucket, n=Count("pk"))

    joins = BotJob.objects.filter(status=BotJobStatus.DONE, created_at__gte=since, join_seconds__isnull=False)
    latency_by_bucket: dict[dt.datetime, list[float]] = defaultdict(list)
    for created, seconds in joins.values_list("created_at", "join_seconds").iterator(chunk_size=5000):
        latency_by_bucket[_floor(created, period.bucket)].append(seconds * 1000)
    all_latencies = [ms for values in latency_by_bucket.values() for ms in values]

    def series(source: dict, key: str, default: Any = 0) -> list[Any]:
        return [source.get(b, {}).get(key, default) for b in buckets]

    def ratio(num: Iterable[float], den: Iterable[float], scale: float = 100) -> list[float | None]:
        return [round(scale * n / d, 1) if d else None for n, d in zip(num, den)]

    hour_buckets = _buckets(since, now, "hour")
    day_buckets = _buckets(since, now, "day")
    requests_n, reused_n = series(reuse, "n"), series(reuse, "reused")
    total_requests, total_errors = sum(requests_n), sum(series(error_counts, "n"))
    total_conversations = conversations.aggregate(avg=Avg("value"), n=Count("pk"))
    by_kind = dict(errors.values_list("label").annotate(n=Count("pk")).order_by())
    return {
        "period": {"key": period.key, "label": period.label, "bucket": period.bucket,
                   "since": since.isoformat(), "until": now.isoformat()},
        "labels": [_label(b, period.bucket) for b in buckets],
        "sessionsPerHour": {"labels": [_label(b, "hour") for b in hour_buckets],
                            "values": [created_hourly.get(b, {}).get("n", 0) for b in hour_buckets]},
        "sessionsPerDay": {"labels": [_label(b, "day") for b in day_buckets],
                           "values": [created_daily.get(b, {}).get("n", 0) for b in day_buckets]},
        "avgDurationSeconds": [round(v, 1) if v is not None else None for v in series(durations, "avg", None)],
        "reuseRatePercent": ratio(reused_n, requests_n),
        "joinLatencyP50Ms": [_round(percentile(latency_by_bucket.get(b, []), 50)) for b in buckets],
        "joinLatencyP99Ms": [_round(percentile(latency_by_bucket.get(b, []), 99)) for b in buckets],
        "errorRatePercent": ratio(series(error_counts, "n"), requests_n),
        "errorsPerBucket": series(error_counts, "n"),
        "totals": {
            "sessions": sum(row["n"] for row in created_daily.values()),
            "conversations": total_conversations["n"],
            "avgDurationSeconds": _round(total_conversations["avg"]),
            "roomRequests": total_requests,
            "reuseRatePercent": round(100 * sum(reused_n) / total_requests, 1) if total_requests else None,
            "joins": len(all_latencies),
            "joinLatencyP50Ms": _round(percentile(all_latencies, 50)),
            "joinLatencyP99Ms": _round(percentile(all_latencies, 99)),
            "errors": total_errors,
            "errorRatePercent": round(100 * total_errors / total_requests, 1) if total_requests else None,
            "errorsByKind": {kind: by_kind.get(kind, 0) for kind in ErrorKind.values},
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _label(moment: dt.datetime, bucket: str) -> str:
    return moment.strftime("%Y-%m-%d") if bucket == "day" else moment.strftime("%m-%d %H:00")
