"""Cost of the operations pages: a /metrics scrape and the dashboard's figures, by database size.

Both are computed from the database on every request (voicesessions/metrics.py,
voicesessions/dashboard.py), so their cost grows with the tables. This fills a
throw-away database (SQLite by default; --postgres for the local PostgreSQL)
with a month of synthetic history at several sizes and times:

  - GET /metrics (in-process Django test client): p50 / p99 / mean, and scrapes/s;
  - dashboard.stats("24h") and dashboard.stats("30d"): p50 / p99;
  - the process's peak memory (VmHWM).

Run from the project root:

    .venv/bin/python bench/bench_ops.py [--sizes 1000,10000,50000] [--repeat 20] [--postgres]

Figures go to stdout and to bench/results/ops-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def setup_django(postgres: bool) -> str:
    var = tempfile.mkdtemp(prefix="bench-ops-")
    os.environ.update({"VOICE_VAR_DIR": var, "SECRET_KEY": "bench-ops", "REDIS_URL": "",
                       "DJANGO_SETTINGS_MODULE": "voiceproject.settings", "LOG_LEVEL": "WARNING"})
    if postgres:
        import psycopg

        name = f"bench_ops_{os.getpid()}"
        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{var}/db.sqlite3"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return os.environ["DATABASE_URL"].split(":")[0]


def fill(sessions: int, start_index: int) -> None:
    """Add `sessions` sessions over the last 30 days, each with a job, ~12 events and ops facts."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from voicesessions.models import (BotJob, BotJobStatus, OpsEvent, OpsEventKind, SessionEvent, VoiceRoom,
                                      VoiceSession)

    now, rng = timezone.now(), random.Random(start_index)
    users = User.objects.bulk_create([User(username=f"bench{start_index + i}") for i in range(sessions)])
    rooms = VoiceRoom.objects.bulk_create([
        VoiceRoom(user=u, name=f"voice-{u.pk}", provider="local", url=f"http://x/voice/rooms/voice-{u.pk}",
                  expires_at=now + dt.timedelta(days=30)) for u in users])
    rows, jobs, events, ops = [], [], [], []
    for user, room in zip(users, rooms):
        created = now - dt.timedelta(seconds=rng.uniform(0, 30 * 86400))
        session = VoiceSession(id=uuid.uuid4(), user=user, room=room, status="ended", voice_only=rng.random() < .8,
                               created_at=created, started_at=created + dt.timedelta(seconds=1),
                               ended_at=created + dt.timedelta(seconds=rng.uniform(10, 900)),
                               ends_at=created + dt.timedelta(hours=1))
        rows.append(session)
        join = dt.timedelta(milliseconds=rng.lognormvariate(3.5, 0.5))
        jobs.append(BotJob(session=session, status=BotJobStatus.DONE, created_at=created,
                           claimed_at=created + join / 2, finished_at=created + join,
                           acquire_seconds=join.total_seconds() / 2, spawn_seconds=join.total_seconds() / 2,
                           join_seconds=join.total_seconds()))
        for i in range(12):
            kind = ("voice.transcript", "voice.bot.speaking", "voice.tool.call")[i % 3]
            events.append(SessionEvent(session=session, user=user, type=kind, room_url=room.url,
                                       payload={"name": "create_note"} if kind == "voice.tool.call" else {},
                                       created_at=created))
        ops += [OpsEvent(kind=OpsEventKind.ROOM_CREATED, label="local", created_at=created),
                OpsEvent(kind=OpsEventKind.TOKEN_ISSUED, label="local", created_at=created),
                OpsEvent(kind=OpsEventKind.CONVERSATION, label="local", value=rng.uniform(10, 900),
                         created_at=created)]
        if rng.random() < 0.03:
            ops.append(OpsEvent(kind=OpsEventKind.ERROR, label="bot_join", created_at=created))
    VoiceSession.objects.bulk_create(rows, batch_size=2000)
    BotJob.objects.bulk_create(jobs, batch_size=2000)
    SessionEvent.objects.bulk_create(events, batch_size=5000)
    OpsEvent.objects.bulk_create(ops, batch_size=5000)


def timed(fn, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(times[min(len(times) - 1,
                                                                                   int(len(times) * .99))], 1),
            "mean_ms": round(statistics.mean(times), 1), "per_s": round(1000 / statistics.mean(times), 1)}


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="total sessions at each step")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="the local PostgreSQL instead of SQLite")
    args = parser.parse_args()
    engine = setup_django(args.postgres)

    from django.test import Client

    from bench_core import write_results
    from voicesessions import dashboard

    client = Client(REMOTE_ADDR="127.0.0.1")
    results: dict = {"engine": engine, "repeat": args.repeat, "steps": []}
    have = 0
    print(f"{'sessions':>9} {'events':>9}  {'/metrics p50/p99 ms':>20} {'scrapes/s':>9}  "
          f"{'stats 24h p50/p99':>18}  {'stats 30d p50/p99':>18}  {'peak MiB':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"[bench] filling to {size} sessions...", file=sys.stderr, flush=True)
        fill(size - have, have)
        have = size
        assert client.get("/metrics").status_code == 200
        scrape = timed(lambda: client.get("/metrics"), args.repeat)
        day = timed(lambda: dashboard.stats("24h"), args.repeat)
        month = timed(lambda: dashboard.stats("30d"), args.repeat)
        step = {"sessions": size, "events": size * 12, "metrics": scrape, "stats_24h": day, "stats_30d": month,
                "peak_rss_mib": peak_rss_mib()}
        results["steps"].append(step)
        print(f"{size:>9} {size * 12:>9}  {scrape['p50_ms']:>9} / {scrape['p99_ms']:<8} {scrape['per_s']:>9}  "
              f"{day['p50_ms']:>8} / {day['p99_ms']:<7}  {month['p50_ms']:>8} / {month['p99_ms']:<7}  "
              f"{step['peak_rss_mib']:>8}")
    print(f"[bench] results: {write_results(results, 'ops')}")


if __name__ == "__main__":
    main()
