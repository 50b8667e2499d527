"""Production-mode benchmarks: 2 Daphne servers + 3 bot workers on PostgreSQL and Redis.

The production configuration, for real on this machine: every process shares a
throw-away PostgreSQL database (created here, dropped at the end WITH (FORCE)),
the channels-redis channel layer and the Redis Streams bot job queue
(voicesessions/redis_queue.py) on one Redis db index (default 11, flushed at
start and end; the tests use 13). Events reach websockets through the channel
layer (VOICE_EVENT_DELIVERY=layer). Room provider `local`.

Processes (all stopped at the end, also on Ctrl-C / SIGTERM / a failure):
  server A, server B: `daphne voiceproject.asgi:application`, each on its own port
  w1, w2, w3: `manage.py runbotworker --pool-size 2 --worker-id wN` (local models,
      VOICE_WORKER_HEARTBEAT_SECONDS=0.5 as in the tests)

What it measures (mirrors bench/bench_core.py where it can):
  1. Room API: POST /api/voice/room latency p50/p99/mean and requests/s,
     --requests from --clients keep-alive clients (client i talks to server i % 2)
     over --users users with DRF tokens, after --requests/5 from one client
     (unloaded latency) and untimed warm-up requests on both servers.
  2. Join -> bot ready under --joins concurrent joins: --joins users each get
     their room, then all POST /api/bot/join at once (user i on server i % 2).
     A bot is ready when its BotJob row is done (the worker acks it once the
     bot is ready): join->ready = BotJob.finished_at - created_at, read from
     PostgreSQL (polled every 20 ms), and the client's view (join sent -> row
     seen done). 3 workers x pool 2 = 6 slots, so as soon as a bot is ready its
     user leaves (DELETE /api/voice/room {"teardownDelay": 0}); the worker
     reaps the bot on its next heartbeat and claims the next job. Also: total
     time for all joins, BotJob.worker_id counts, claim wait, Redis stream
     length / pending entries afterwards.
  3. Websocket fan-out across processes: C1) one user, --sockets sockets on
     server B, a sender socket on server A sending {"type": "user-message"}:
     --paced events one at a time, then --events back to back. C2) --sockets
     users, each with a receiving socket on B and a sending socket on A, each
     sends --events/20 messages. The user(s) get an ACTIVE session created
     through the ORM *without* a bot (no BotJob), so the messages are not also
     answered by a local-model bot. Delivered events/s, p50/p99 latency, lost.
  4. Worker concurrency with hosted-model sessions: only if
     tests/fakes/openai_api.py exists. The 3 workers are stopped, one worker
     with VOICE_STT/LLM/TTS=openai pointed at the fake and --hosted-pool slots
     starts, and N WebRTC peers (voicebot/peer.py BotPeer) each speak an
     espeak-ng WAV in a loop (--hosted-turns turns each, default 4). For each N in
     --hosted-ns: worker CPU % and RSS, the bot's per-turn latency
     (voice.bot.speaking payload.latency.totalMs, read on websockets held by
     server B). Stops when the p50 exceeds 2x the first N's.

Run from the project root:

    .venv/bin/python bench/bench_prod.py [--requests 1000] [--clients 16] [--users 20] [--joins 50]
                                         [--sockets 100] [--events 200] [--hosted-ns 2,5,10,20] [--keep-tmp]

Progress goes to stdout; results as JSON in bench/results/prod-<timestamp>.json.
Server and worker logs are scanned for errors (Traceback, ERROR, CRITICAL) and
the access logs for HTTP 5xx.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from bench_core import (bench_fanout, bench_many_users, _die_with_parent, auth, cpu_seconds, free_port,  # noqa: E402
                        memory_kib, open_sockets, percentile, scan_server_logs, settled_rss_mib,
                        summarize, wait_until_up, write_results, UNTHROTTLED, _raise_interrupt, bench_env, Stagger)

VENV_BIN = ROOT / ".venv" / "bin"
RESULTS_DIR = BENCH_DIR / "results"
PG = "postgres://postgres@127.0.0.1:5432"
REDIS_DB = 11
WARMUP_REQUESTS = 32  # untimed, per server
FAKE_OPENAI = ROOT / "tests" / "fakes" / "openai_api.py"
FAKE_KEY = "sk-bench-fake"
QUESTION = "What is the capital of France?"
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def ms_summary(values_ms: list[float]) -> dict[str, float]:
    return summarize([v / 1000 for v in values_ms])


# --- processes --------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    access_path: Path | None = None
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid


class Fleet:
    """Every subprocess this bench starts; `stop_all` ends each of them by pid."""

    def __init__(self, var_dir: Path, env: dict[str, str]) -> None:
        self.var_dir, self.env = var_dir, env
        self.procs: dict[str, Proc] = {}
        self.stopped: list[Proc] = []  # kept for the log scan

    def start_server(self, name: str) -> Proc:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**self.env, "PUBLIC_BASE_URL": url, "CSRF_TRUSTED_ORIGINS": url}
        log_path, access = self.var_dir / f"daphne-{name}.log", self.var_dir / f"access-{name}.log"
        popen = subprocess.Popen([str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                  "--access-log", str(access), "voiceproject.asgi:application"],
                                 cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                 preexec_fn=_die_with_parent)
        proc = self.procs[name] = Proc(name, popen, log_path, access, url)
        return proc

    def start_worker(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        log_path = self.var_dir / f"worker-{name}.log"
        popen = subprocess.Popen([str(VENV_BIN / "python"), "manage.py", "runbotworker", "--worker-id", name, *args],
                                 cwd=ROOT, env=env or self.env, stdout=open(log_path, "wb"),
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        proc = self.procs[name] = Proc(name, popen, log_path)
        return proc

    def start_other(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.var_dir / f"{name}.log"
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, stdout=open(log_path, "wb"),
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        proc = self.procs[name] = Proc(name, popen, log_path)
        return proc

    def wait_for_log(self, proc: Proc, marker: str, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if marker in proc.log_path.read_text(errors="replace"):
                return time.monotonic() - started
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} not ready ({marker!r}):\n"
                           + proc.log_path.read_text(errors="replace")[-3000:])

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        self.stopped.append(proc)
        if proc.popen.poll() is None:
            proc.popen.terminate()
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=5)

    def stop_all(self) -> None:
        # Workers first: their shutdown writes to the database.
        for name in sorted(self.procs, key=lambda n: not n.startswith("w")):
            self.stop(name)

    def all_procs(self) -> list[Proc]:
        return [*self.stopped, *self.procs.values()]


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def redis_run_id(url: str) -> str:
    """Redis's run id: it changes when the Redis server restarts (other people's tests may restart it)."""
    try:
        return redis.Redis.from_url(url, socket_timeout=2).info("server")["run_id"]
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"


class Meter:
    """CPU % of one core per process and machine-wide busy % between marks; flags a Redis restart."""

    def __init__(self, fleet: Fleet, redis_url: str) -> None:
        self.fleet = fleet
        self.redis_url = redis_url
        self.mark()

    def mark(self) -> None:
        self.wall = time.monotonic()
        self.cpu = {name: cpu_seconds(p.pid) for name, p in self.fleet.procs.items() if p.popen.poll() is None}
        self.own = time.process_time()
        self.machine = machine_busy()
        self.redis_id = redis_run_id(self.redis_url)

    def since(self, phase: str) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        out: dict[str, Any] = {"phase": phase, "wall_s": round(wall, 2), "cpu_pct": {}, "rss_mib": {}}
        for name, proc in self.fleet.procs.items():
            if proc.popen.poll() is not None or name not in self.cpu:
                continue
            out["cpu_pct"][name] = round(100 * (cpu_seconds(proc.pid) - self.cpu[name]) / wall, 1)
            out["rss_mib"][name] = round(memory_kib(proc.pid)["VmRSS"] / 1024, 1)
        out["cpu_pct"]["bench"] = round(100 * (time.process_time() - self.own) / wall, 1)
        busy, total = machine_busy()
        out["machine_busy_pct"] = round(100 * (busy - self.machine[0]) / max(1, total - self.machine[1]), 1)
        out["redis_restarted"] = redis_run_id(self.redis_url) != self.redis_id
        if out["redis_restarted"]:
            log(f"  WARNING: the Redis server restarted (or was unreachable) during {phase}: figures affected")
        self.mark()
        return out


# --- environment, database, users ------------------------------------------------------

def prod_env(var_dir: Path, db_name: str) -> dict[str, str]:
    """bench_core's server env, moved onto PostgreSQL, Redis and the Redis Streams queue."""
    env = bench_env(var_dir)
    for key in ("VOICE_STT", "VOICE_LLM", "VOICE_TTS", "VOICE_BOT_QUEUE"):
        env.pop(key, None)  # the hosted-model round sets its own; the queue follows REDIS_URL
    env.update({
        "DATABASE_URL": f"{PG}/{db_name}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "VOICE_EVENT_DELIVERY": "layer",
        # As in the tests (tests/botharness.py BOT_ENV): slots are freed on the next heartbeat.
        "VOICE_WORKER_HEARTBEAT_SECONDS": "0.5", "VOICE_WORKER_DEAD_AFTER": "4",
        "VOICE_TEARDOWN_POLL_SECONDS": "0.5",
    })
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def setup_django(env: dict[str, str]) -> None:
    for key in ("VOICE_VAR_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
                "VOICE_PROVIDER", "VOICE_EVENT_DELIVERY", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    import django

    django.setup()


def create_users(prefix: str, count: int) -> list[str]:
    """`count` users named <prefix>-NNN with DRF tokens (what `drf_create_token` makes); returns the keys."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    users = [User(username=f"{prefix}-{i:03d}") for i in range(count)]
    for user in users:
        user.set_unusable_password()
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith=f"{prefix}-").order_by("username"))
    tokens = [Token(user=user, key=Token.generate_key()) for user in users]
    Token.objects.bulk_create(tokens)
    return [t.key for t in tokens]


def create_active_sessions(tokens: list[str]) -> int:
    """An ACTIVE session without a bot (no BotJob, no worker) in each user's existing room."""
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from voicesessions.models import SessionStatus, VoiceRoom, VoiceSession

    user_ids = list(Token.objects.filter(key__in=tokens).values_list("user_id", flat=True))
    now = timezone.now()
    made = 0
    for room in VoiceRoom.objects.filter(user_id__in=user_ids):
        VoiceSession.objects.create(user_id=room.user_id, room=room, status=SessionStatus.ACTIVE, started_at=now,
                                    voice_only=True)
        made += 1
    return made


def db_counts() -> dict[str, Any]:
    from django.db.models import Count

    from voicesessions.models import BotJob, SessionEvent, VoiceSession

    return {"sessions": VoiceSession.objects.count(), "events": SessionEvent.objects.count(),
            "bot_jobs": dict(BotJob.objects.values_list("status").annotate(n=Count("id")))}


def redis_stream_stats(url: str) -> dict[str, Any]:
    from voicesessions.redis_queue import GROUP, STREAM

    client = redis.Redis.from_url(url)
    stats: dict[str, Any] = {"xlen": client.xlen(STREAM) if client.exists(STREAM) else 0}
    if stats["xlen"]:
        for group in client.xinfo_groups(STREAM):
            if group["name"].decode() == GROUP:
                stats.update({"pending": group["pending"], "lag": group.get("lag"),
                              "entries_read": group.get("entries-read")})
    return stats


# --- HTTP helpers ------------------------------------------------------------------------

def http_client(base: str, connections: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, timeout=60.0, trust_env=False, limits=limits)


async def request(client: httpx.AsyncClient, method: str, url: str, token: str,
                  body: dict[str, Any] | None = None) -> tuple[int, float, Any]:
    started = time.perf_counter()
    try:
        resp = await client.request(method, url, json=body, headers=auth(token))
        status = resp.status_code
        try:
            data: Any = resp.json()
        except ValueError:
            data = resp.text[:300]
    except httpx.HTTPError as exc:
        status, data = 0, f"{type(exc).__name__}: {exc}"
    return status, time.perf_counter() - started, data


def count_status(bucket: dict[str, int], status: int) -> None:
    bucket[str(status)] = bucket.get(str(status), 0) + 1


# --- 1. room API ---------------------------------------------------------------------------

async def room_run(servers: list[str], tokens: list[str], total: int, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    per_server: dict[str, list[float]] = {s: [] for s in servers}
    statuses: dict[str, int] = {}
    samples: list[str] = []
    counter = itertools.count()

    async def client(i: int) -> None:
        base = servers[i % len(servers)]
        async with http_client(base) as http:
            while (n := next(counter)) < total:
                status, elapsed, data = await request(http, "POST", "/api/voice/room", tokens[n % len(tokens)],
                                                      {"assistant": "pearl"})
                latencies.append(elapsed)
                per_server[base].append(elapsed)
                count_status(statuses, status)
                if status != 200 and len(samples) < 5:
                    samples.append(f"{status} {str(data)[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - started
    return {"requests": len(latencies), **summarize(latencies), "rps": round(len(latencies) / wall, 1),
            "wall_s": round(wall, 2), "statuses": statuses,
            "errors": sum(n for s, n in statuses.items() if s != "200"), "error_samples": samples,
            "per_server_p50_ms": {s: round(percentile([v * 1000 for v in lat], 50), 2)
                                  for s, lat in per_server.items()}}


def phase_rooms(args: argparse.Namespace, servers: list[str], tokens: list[str], meter: Meter,
                results: dict[str, Any]) -> None:
    log(f"1. warm-up: {WARMUP_REQUESTS} untimed POST /api/voice/room on each server")
    for base in servers:
        asyncio.run(room_run([base], tokens, WARMUP_REQUESTS, 4))
    baseline = max(1, args.requests // 5)
    meter.mark()
    log(f"1. POST /api/voice/room: {baseline} from 1 client on A, {baseline} on B, then {args.requests} "
        f"from {args.clients} clients over both servers and {len(tokens)} users")
    one = asyncio.run(room_run(servers, tokens, baseline, 1))  # 1 client: always server A
    one_b = asyncio.run(room_run(servers[1:], tokens, baseline, 1))
    meter.mark()
    many = asyncio.run(room_run(servers, tokens, args.requests, args.clients))
    cpu = meter.since("1 room API")
    results["rooms"] = {"one_client_server_a": one, "one_client_server_b": one_b,
                        f"{args.clients}_clients": many, "cpu": cpu}
    for name, r in (("1 client, A", one), ("1 client, B", one_b), (f"{args.clients} clients", many)):
        log(f"  {name}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['rps']} req/s, statuses {r['statuses']}")
    log(f"  CPU % of one core: {cpu['cpu_pct']}; machine busy {cpu['machine_busy_pct']}%")


# --- 2. join -> bot ready ----------------------------------------------------------------------

async def joins_run(servers: list[str], tokens: list[str], db_url: str, timeout: float) -> dict[str, Any]:
    n = len(tokens)
    room_statuses: dict[str, int] = {}
    leave_statuses: dict[str, int] = {}
    samples: list[str] = []
    # Rooms first (untimed), 16 at a time.
    clients = [http_client(base, connections=n) for base in servers]
    try:
        sem = asyncio.Semaphore(16)

        async def room(i: int) -> None:
            async with sem:
                status, _, data = await request(clients[i % 2], "POST", "/api/voice/room", tokens[i],
                                                {"assistant": "pearl"})
                count_status(room_statuses, status)

        await asyncio.gather(*(room(i) for i in range(n)))
        sent_at: dict[int, float] = {}
        join_ms: list[float] = []
        job_of: dict[str, int] = {}
        join_statuses: dict[str, int] = {}

        async def join(i: int) -> None:
            sent_at[i] = time.perf_counter()
            status, elapsed, data = await request(clients[i % 2], "POST", "/api/bot/join", tokens[i],
                                                  {"voiceOnly": True, "assistant": "pearl"})
            join_ms.append(elapsed * 1000)
            count_status(join_statuses, status)
            if status == 202 and isinstance(data, dict) and data.get("jobId"):
                job_of[data["jobId"]] = i
            elif len(samples) < 5:
                samples.append(f"join {status} {str(data)[:300]}")

        leaves: list[asyncio.Task] = []

        async def leave(i: int) -> None:
            status, _, data = await request(clients[i % 2], "DELETE", "/api/voice/room", tokens[i],
                                            {"teardownDelay": 0})
            count_status(leave_statuses, status)
            if status != 200 and len(samples) < 5:
                samples.append(f"leave {status} {str(data)[:300]}")

        rows: dict[str, tuple] = {}
        seen_done: dict[str, float] = {}
        started = time.perf_counter()
        joins = asyncio.gather(*(join(i) for i in range(n)))
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                await asyncio.sleep(0.02)
                pending = [j for j in job_of if j not in seen_done]
                if pending:
                    cur = await conn.execute(
                        "SELECT id::text, status, worker_id, created_at, claimed_at, finished_at, attempts "
                        "FROM voicesessions_botjob WHERE id::text = ANY(%s)", (pending,))
                    now = time.perf_counter()
                    for row in await cur.fetchall():
                        rows[row[0]] = row
                        if row[1] in ("done", "failed"):
                            seen_done[row[0]] = now
                            if row[1] == "done":
                                leaves.append(asyncio.create_task(leave(job_of[row[0]])))
                if joins.done() and len(seen_done) >= len(job_of):
                    break
            await joins
        last_seen = max(seen_done.values(), default=started)
        await asyncio.gather(*leaves)
    finally:
        for client in clients:
            await client.aclose()
    done = [r for r in rows.values() if r[1] == "done"]
    ready_ms = [(r[5] - r[3]).total_seconds() * 1000 for r in done]
    claim_wait_ms = [(r[4] - r[3]).total_seconds() * 1000 for r in done if r[4]]
    start_ms = [(r[5] - r[4]).total_seconds() * 1000 for r in done if r[4]]
    client_ms = [(seen_done[j] - sent_at[job_of[j]]) * 1000 for j in seen_done if rows[j][1] == "done"]
    spread: dict[str, int] = {}
    for r in done:
        spread[r[2]] = spread.get(r[2], 0) + 1
    db_total = (max(r[5] for r in done) - min(r[3] for r in done)).total_seconds() if done else float("nan")
    first_five = sorted(ready_ms)[:6]
    return {
        "users": n, "room_statuses": room_statuses, "join_statuses": join_statuses,
        "join_request": ms_summary(join_ms), "jobs": len(job_of), "done": len(done),
        "failed": sum(1 for r in rows.values() if r[1] == "failed"),
        "not_finished": len(job_of) - len(seen_done), "retried": sum(1 for r in done if r[6] > 1),
        "join_to_ready_db": ms_summary(ready_ms), "join_to_ready_client": ms_summary(client_ms),
        "claim_wait": ms_summary(claim_wait_ms), "claim_to_ready": ms_summary(start_ms),
        "first_slots_ready_ms": [round(v, 1) for v in first_five],
        "total_s_client": round(last_seen - started, 2), "total_s_db": round(db_total, 2),
        "bots_per_s": round(len(done) / db_total, 2) if done and db_total else 0.0,
        "worker_spread": dict(sorted(spread.items())), "leave_statuses": leave_statuses, "error_samples": samples,
    }


def phase_joins(args: argparse.Namespace, servers: list[str], tokens: list[str], db_url: str, redis_url: str,
                meter: Meter, results: dict[str, Any]) -> None:
    log(f"2. {len(tokens)} users: room each, then {len(tokens)} POST /api/bot/join at once over both servers; "
        f"leave as soon as each bot is ready")
    meter.mark()
    r = asyncio.run(joins_run(servers, tokens, db_url, timeout=150))
    time.sleep(1.0)  # let the last bots be reaped
    r["cpu"] = meter.since("2 joins")
    r["redis_stream_after"] = redis_stream_stats(redis_url)
    results["joins"] = r
    log(f"  join request: p50 {r['join_request']['p50_ms']} ms, p99 {r['join_request']['p99_ms']} ms; "
        f"statuses {r['join_statuses']}")
    log(f"  join->ready (BotJob created->finished): p50 {r['join_to_ready_db']['p50_ms']} ms, "
        f"p99 {r['join_to_ready_db']['p99_ms']} ms; client view p50 {r['join_to_ready_client']['p50_ms']} ms, "
        f"p99 {r['join_to_ready_client']['p99_ms']} ms")
    log(f"  all {r['done']}/{r['jobs']} ready in {r['total_s_client']} s (db {r['total_s_db']} s, "
        f"{r['bots_per_s']} bots/s); failed {r['failed']}, unfinished {r['not_finished']}, retried {r['retried']}")
    log(f"  spread {r['worker_spread']}; leaves {r['leave_statuses']}; stream {r['redis_stream_after']}")
    log(f"  CPU % of one core: {r['cpu']['cpu_pct']}; machine busy {r['cpu']['machine_busy_pct']}%")


# --- 3. websocket fan-out across processes ----------------------------------------------------

async def fanout_cross(a: str, b: str, token: str, sockets_n: int, paced: int, events: int) -> list[dict[str, Any]]:
    """C1: `sockets_n` sockets of one user on B; the sender's socket is on A."""
    return await bench_fanout(b, token, sockets_n, events, sender_base=a, paced_events=paced,
                              label="C1 cross-server fan-out,", tag="bench-xfan-")


async def many_users_cross(a: str, b: str, tokens: list[str], per_user: int) -> dict[str, Any]:
    """C2: each user has a receiving socket on B and a sending socket on A; all send at once."""
    return await bench_many_users(b, tokens, per_user, sender_base=a, label="C2 cross-server, many users",
                                  tag="bench-xself-")


def phase_fanout(args: argparse.Namespace, a: str, b: str, fan_token: str, user_tokens: list[str],
                 meter: Meter, results: dict[str, Any]) -> None:
    log("3. websocket fan-out B <- A: rooms via the API, ACTIVE sessions (no bot) via the ORM")
    asyncio.run(room_run([a], [fan_token, *user_tokens], len(user_tokens) + 1, 8))
    made = create_active_sessions([fan_token, *user_tokens])
    out: dict[str, Any] = {"active_sessions_made": made, "results": []}
    meter.mark()
    for r in asyncio.run(fanout_cross(a, b, fan_token, args.sockets, args.paced, args.events)):
        out["results"].append(r)
        log(f"  {r['name']}: {r['deliveries_per_s']} deliveries/s ({r['events_per_s']} events/s), "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, lost {r['lost']}, dup {r['duplicates']}")
    out["cpu_c1"] = meter.since("3 C1")
    log(f"  CPU % of one core: {out['cpu_c1']['cpu_pct']}; machine busy {out['cpu_c1']['machine_busy_pct']}%")
    r = asyncio.run(many_users_cross(a, b, user_tokens, max(1, args.events // 20)))
    out["results"].append(r)
    out["cpu_c2"] = meter.since("3 C2")
    log(f"  {r['name']}: {r['deliveries_per_s']} deliveries/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
        f"lost {r['lost']}, dup {r['duplicates']}")
    log(f"  CPU % of one core: {out['cpu_c2']['cpu_pct']}; machine busy {out['cpu_c2']['machine_busy_pct']}%")
    results["fanout"] = out


# --- 4. hosted-model sessions on one worker -----------------------------------------------------

FAKE_RUNNER = r"""
import inspect, signal, sys, time
sys.path.insert(0, sys.argv[1])
import tests.fakes.openai_api as mod
cls = getattr(mod, sys.argv[2])
params = inspect.signature(cls).parameters
kwargs = {}
for name in ("api_key", "key"):
    if name in params:
        kwargs[name] = sys.argv[3]
if "transcript" in params:  # a plain question: one LLM call per turn, no tool call
    kwargs["transcript"] = sys.argv[4]
fake = cls(**kwargs)
started = fake.start()
fake = started if started is not None else fake
url = fake.url() if callable(getattr(fake, "url", None)) else fake.url
key = getattr(fake, "api_key", None) or getattr(fake, "key", None) or sys.argv[3]
print("FAKE_URL", url, "FAKE_KEY", key, flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
"""


def find_fake_class() -> str | None:
    """The fake API's server class in tests/fakes/openai_api.py: one with start() and url."""
    module = importlib.import_module("tests.fakes.openai_api")
    for name, obj in vars(module).items():
        if isinstance(obj, type) and obj.__module__ == module.__name__ and hasattr(obj, "start") \
                and hasattr(obj, "url"):
            return name
    return None


class Inbox:
    """Every event one websocket receives, with waiting on a predicate from an index on."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.events, self.changed = ws, [], asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.events.append(json.loads(raw))
                self.changed.set()
        except Exception:  # noqa: BLE001 - closed
            pass

    async def wait_for(self, start: int, predicate: Callable[[dict], bool], timeout: float) -> tuple[int, dict]:
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.events):
                if predicate(self.events[i]):
                    return i + 1, self.events[i]
                i += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


def is_speaking(flag: bool) -> Callable[[dict], bool]:
    return lambda e: e.get("type") == "voice.bot.speaking" and bool((e.get("payload") or {}).get("speaking")) == flag


async def hosted_round(servers: list[str], tokens: list[str], wav: str, turns: int, worker_url: str,
                       fleet: Fleet, worker: Proc, *, spread: float = 0.4, steady_only: bool = False) -> dict[str, Any]:
    """N sessions on the worker, each asking `turns` questions, their starts spread over `spread`
    seconds; with `steady_only`, the latencies are those of the turns answered while every
    session talked (bench_core.Stagger)."""
    from voicebot.peer import BotPeer

    a, b = servers
    n = len(tokens)
    errors: list[str] = []
    peers: list[Any] = []
    inboxes: list[Inbox] = []
    sessions: dict[int, str] = {}
    async with http_client(a, n) as http_a, http_client(b, n) as http_b:
        http = [http_a, http_b]
        try:
            # Websocket on B first (so nothing is missed), then room + join + WebRTC offer.
            inboxes = [Inbox(ws) for ws in await open_sockets(b, tokens)]

            async def start(i: int) -> Any:
                status, _, room = await request(http[i % 2], "POST", "/api/voice/room", tokens[i],
                                                {"assistant": "pearl"})
                if status != 200:
                    raise RuntimeError(f"room {status} {room}")
                status, _, join = await request(http[i % 2], "POST", "/api/bot/join", tokens[i],
                                                {"voiceOnly": True, "assistant": "pearl", "sessionPersistence": 0})
                if status not in (200, 202):
                    raise RuntimeError(f"join {status} {join}")
                sessions[i] = join["sessionId"]
                peer = BotPeer(servers[i % 2], room["token"])
                await peer.connect()
                await inboxes[i].wait_for(0, lambda e: e.get("type") == "voice.session.status"
                                          and (e.get("payload") or {}).get("status") == "active", 30)
                return peer

            connect_started = time.perf_counter()
            peers = list(await asyncio.gather(*(start(i) for i in range(n))))
            connect_s = time.perf_counter() - connect_started
            await asyncio.sleep(1.0)  # a greeting, if any, starts now
            latencies: list[float] = []
            stages: dict[str, list[float]] = {}
            client_ms: list[float] = []
            timeouts = 0
            meter_cpu, meter_wall = cpu_seconds(worker.pid), time.monotonic()
            own_cpu = time.process_time()
            busy_mark = machine_busy()
            redis_id = redis_run_id(os.environ["REDIS_URL"])
            rss_peak = 0
            stagger = Stagger(n, spread, worker.pid)  # by default 0.4 s: do not all start on the same frame

            async def converse(i: int) -> None:
                nonlocal timeouts
                peer, inbox = peers[i], inboxes[i]
                await stagger.start(i)
                pos = len(inbox.events)
                for _ in range(turns):
                    peer.say_wav(wav)
                    try:
                        pos, event = await inbox.wait_for(pos, lambda e: is_speaking(True)(e) and
                                                          ((e["payload"].get("latency") or {}).get("totalMs")
                                                           is not None), 45)
                        latency = event["payload"]["latency"]
                        counted = not steady_only or stagger.within(time.monotonic())
                        if counted:
                            latencies.append(float(latency["totalMs"]))
                            for stage, value in latency.items():
                                if value is not None and stage != "totalMs":
                                    stages.setdefault(stage, []).append(float(value))
                        pos, _ = await inbox.wait_for(pos, is_speaking(False), 60)
                        heard, ended = peer.heard.first_loud_at, peer.mic.speech_ended_at
                        if counted and heard and ended and heard > ended:  # the WAV's trailing silence is included
                            client_ms.append((heard - ended) * 1000)
                    except asyncio.TimeoutError:
                        timeouts += 1
                        errors.append(f"peer {i}: no bot answer in time")
                        pos = len(inbox.events)
                    await asyncio.sleep(0.3)
                stagger.finish()

            async def sample_rss() -> None:
                nonlocal rss_peak
                while True:
                    rss_peak = max(rss_peak, memory_kib(worker.pid)["VmRSS"])
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample_rss())
            talk_started = time.perf_counter()
            await asyncio.gather(*(converse(i) for i in range(n)))
            talk_s = time.perf_counter() - talk_started
            sampler.cancel()
            wall = time.monotonic() - meter_wall
            worker_cpu = 100 * (cpu_seconds(worker.pid) - meter_cpu) / wall
            bench_cpu = 100 * (time.process_time() - own_cpu) / wall
            busy = machine_busy()
            machine_pct = 100 * (busy[0] - busy_mark[0]) / max(1, busy[1] - busy_mark[1])
            redis_restarted = redis_run_id(os.environ["REDIS_URL"]) != redis_id
            # Lost events: bot-speaking events the database has vs what the websockets got.
            stored = 0
            for i, sid in sessions.items():
                status, _, events = await request(http[0], "GET", f"/api/voice/sessions/{sid}/events?limit=500",
                                                  tokens[i])
                if status == 200 and isinstance(events, list):
                    stored += sum(1 for e in events if e.get("type") == "voice.bot.speaking")
            received = sum(1 for box in inboxes for e in box.events if e.get("type") == "voice.bot.speaking")
        finally:
            for peer in peers:
                await peer.close()
            for i in range(n):
                await request(http[i % 2], "DELETE", "/api/voice/room", tokens[i], {"teardownDelay": 0})
            for box in inboxes:
                await box.close()
    # Wait until the worker has reaped every bot.
    for _ in range(60):
        try:
            health = httpx.get(f"{worker_url}/health", timeout=2, trust_env=False).json()
            if not health.get("activeSessions"):
                break
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    rss_after = await asyncio.to_thread(settled_rss_mib, worker.pid)  # once the freed memory is handed back
    return {"n": n, "turns": len(latencies), "timeouts": timeouts, "connect_s": round(connect_s, 2),
            "talk_s": round(talk_s, 2), "latency_total_ms": ms_summary(latencies),
            "stage_p50_ms": {k: round(percentile(v, 50), 1) for k, v in stages.items()},
            "client_speech_end_to_audio_ms": ms_summary(client_ms),
            "machine_busy_pct": round(machine_pct, 1), "redis_restarted": redis_restarted,
            "worker_cpu_pct": round(worker_cpu, 1), "bench_cpu_pct": round(bench_cpu, 1),
            "spread_s": spread, "worker_cpu_pct_all_talking": stagger.cpu_pct(),
            "worker_rss_mib_peak": round(rss_peak / 1024, 1), "worker_rss_mib_after_reap": rss_after,
            "bot_speaking_events_stored": stored, "bot_speaking_events_received": received,
            "error_samples": errors[:5],
            # Every turn's figure, for other percentiles (bench_capacity.py reports p95).
            "raw_total_ms": latencies, "raw_client_ms": [round(v, 1) for v in client_ms]}


def phase_hosted(args: argparse.Namespace, fleet: Fleet, env: dict[str, str], servers: list[str],
                 tokens: list[str], results: dict[str, Any]) -> None:
    if args.skip_hosted:
        log("4. skipped (--skip-hosted)")
        results["hosted"] = {"skipped": "--skip-hosted"}
        return
    if not FAKE_OPENAI.exists():
        log("4. skipped: tests/fakes/openai_api.py does not exist")
        results["hosted"] = {"skipped": "tests/fakes/openai_api.py does not exist"}
        return
    class_name = find_fake_class()
    if class_name is None:
        log("4. skipped: no server class (start() + url) in tests/fakes/openai_api.py")
        results["hosted"] = {"skipped": "no server class found in tests/fakes/openai_api.py"}
        return
    from tests.botharness import speak_to_wav

    log(f"4. hosted models: stopping the local-model workers; fake OpenAI API ({class_name}) in a subprocess")
    for name in [n for n in fleet.procs if n.startswith("w")]:
        fleet.stop(name)
    fake = fleet.start_other("fake-openai", [str(VENV_BIN / "python"), "-c", FAKE_RUNNER, str(ROOT), class_name,
                                             FAKE_KEY, QUESTION])
    fleet.wait_for_log(fake, "FAKE_URL", 30)
    line = next(ln for ln in fake.log_path.read_text().splitlines() if ln.startswith("FAKE_URL"))
    _, fake_url, _, fake_key = line.split()
    base_url = fake_url.rstrip("/") + ("" if fake_url.rstrip("/").endswith("/v1") else "/v1")
    hosted_env = {**env}
    for stage in ("STT", "LLM", "TTS"):
        hosted_env.update({f"VOICE_{stage}": "openai", f"VOICE_{stage}_BASE_URL": base_url,
                           f"VOICE_{stage}_API_KEY": fake_key})
    worker = fleet.start_worker("hosted", "--pool-size", str(args.hosted_pool), env=hosted_env)
    fleet.wait_for_log(worker, "listening on", 120)
    worker_url = re.search(r"listening on (http://\S+)", worker.log_path.read_text()).group(1)  # type: ignore[union-attr]
    wav = speak_to_wav(QUESTION, Path(fleet.var_dir) / "question.wav")
    out: dict[str, Any] = {"fake_class": class_name, "fake_url": base_url, "pool_size": args.hosted_pool,
                           "worker_idle_rss_mib": round(memory_kib(worker.pid)["VmRSS"] / 1024, 1), "rounds": []}
    log(f"  hosted worker idle RSS {out['worker_idle_rss_mib']} MiB; rounds N = {args.hosted_ns}")
    base_p50 = None
    used = 0
    for n in args.hosted_ns:
        if used + n > len(tokens):
            break
        if time.monotonic() - T0 > args.budget_s:
            log(f"  stopping: time budget of {args.budget_s}s reached")
            out["stopped"] = "time budget"
            break
        log(f"  N={n}: connecting {n} peers, {args.hosted_turns} turns each")
        r = asyncio.run(hosted_round(servers, tokens[used:used + n], str(wav), args.hosted_turns, worker_url,
                                     fleet, worker))
        used += n  # fresh users each round: no leftover sessions
        out["rounds"].append(r)
        p50 = r["latency_total_ms"]["p50_ms"]
        log(f"  N={n}: totalMs p50 {p50}, p99 {r['latency_total_ms']['p99_ms']} over {r['turns']} turns "
            f"({r['timeouts']} timeouts); worker CPU {r['worker_cpu_pct']}%, RSS peak {r['worker_rss_mib_peak']} "
            f"MiB (after the bots left {r['worker_rss_mib_after_reap']} MiB); bench CPU {r['bench_cpu_pct']}%; machine busy {r['machine_busy_pct']}%; stages p50 "
            f"{r['stage_p50_ms']}; client speech end -> bot audio p50 "
            f"{r['client_speech_end_to_audio_ms']['p50_ms']} ms; bot-speaking events stored/received "
            f"{r['bot_speaking_events_stored']}/{r['bot_speaking_events_received']}")
        if base_p50 is None and p50 == p50:
            base_p50 = p50
        elif base_p50 and p50 > 2 * base_p50:
            log(f"  stopping: p50 {p50} ms > 2 x {base_p50} ms")
            out["stopped"] = f"p50 {p50} > 2 x {base_p50}"
            break
    results["hosted"] = out


# --- logs and report -----------------------------------------------------------------------------

ERROR_RE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception inside")
KNOWN = {"deadlock": re.compile(r"deadlock detected"), "redis_unreachable": re.compile(r"connecting to 127\.0\.0\.1:6379"),
         "push_failed": re.compile(r"push failed")}


def scan_logs(fleet: Fleet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for proc in fleet.all_procs():
        if proc.access_path is not None:
            out[proc.name] = scan_server_logs(proc.log_path, proc.access_path)
        else:
            text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
            lines = [ln for ln in text.splitlines() if ERROR_RE.search(ln)]
            out[proc.name] = {"error_lines": len(lines), "error_samples": lines[:10]}
        text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        out[proc.name]["known"] = {k: len(rx.findall(text)) for k, rx in KNOWN.items()}
    return out



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed POST /api/voice/room in 1")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients in 1")
    parser.add_argument("--users", type=int, default=20, help="users the room requests of 1 are spread over")
    parser.add_argument("--joins", type=int, default=50, help="concurrent joins in 2")
    parser.add_argument("--workers", type=int, default=3, help="bot workers (local models)")
    parser.add_argument("--pool-size", type=int, default=2, help="slots per worker")
    parser.add_argument("--sockets", type=int, default=100, help="websockets on server B in 3 (also C2 users)")
    parser.add_argument("--paced", type=int, default=20, help="paced events in 3 C1")
    parser.add_argument("--events", type=int, default=200, help="burst events in 3 C1 (C2: events/20 per user)")
    parser.add_argument("--hosted-ns", type=lambda s: [int(x) for x in s.split(",")], default=[2, 5, 10, 20],
                        help="peer counts in 4")
    parser.add_argument("--hosted-turns", type=int, default=4, help="turns per peer in 4")
    parser.add_argument("--hosted-pool", type=int, default=20, help="pool size of the hosted worker in 4")
    parser.add_argument("--budget-s", type=float, default=420, help="start no new round of 4 after this many s")
    parser.add_argument("--skip-hosted", action="store_true", help="skip 4")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with the logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    var_dir = Path(tempfile.mkdtemp(prefix="voice-bench-prod-"))
    db_name = f"voice_bench_{uuid.uuid4().hex[:8]}"
    env = prod_env(var_dir, db_name)
    redis_url = env["REDIS_URL"]
    results: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"), "args": vars(args),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_start": os.getloadavg()},
        "config": {"database": f"{PG}/{db_name}", "redis": redis_url, "servers": 2,
                   "ws_refresh_seconds": os.environ.get("VOICE_WS_REFRESH_SECONDS", "default"),
                   "workers": args.workers, "pool_size": args.pool_size}}
    fleet = Fleet(var_dir, env)
    db_created = False
    try:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
            results["machine"]["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        db_created = True
        redis.Redis.from_url(redis_url).flushdb()
        results["redis_run_id_start"] = redis_run_id(redis_url)
        results["machine"]["redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
        log(f"database {db_name}, redis db {REDIS_DB}; migrate + seed_demo")
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        setup_django(env)
        room_tokens = create_users("room", args.users)
        join_tokens = create_users("join", args.joins)
        fan_token = create_users("fan", 1)[0]
        c2_tokens = create_users("cx", args.sockets)
        hosted_tokens = create_users("hosted", sum(args.hosted_ns))
        log("users with tokens created; starting 2 servers and "
            f"{args.workers} workers (pool {args.pool_size})")
        a, b = fleet.start_server("A"), fleet.start_server("B")
        workers = [fleet.start_worker(f"w{i + 1}", "--pool-size", str(args.pool_size)) for i in range(args.workers)]
        for server in (a, b):
            wait_until_up(server.popen, server.url, 60)
        started = time.monotonic()
        for worker in workers:
            fleet.wait_for_log(worker, "listening on", 180)
        log(f"servers {a.url} {b.url}; workers ready after {time.monotonic() - started:.1f}s")
        time.sleep(1.0)
        meter = Meter(fleet, redis_url)
        results["idle_rss_mib"] = {n: round(memory_kib(p.pid)["VmRSS"] / 1024, 1) for n, p in fleet.procs.items()}
        log(f"idle RSS MiB: {results['idle_rss_mib']}")
        servers = [a.url, b.url]
        phase_rooms(args, servers, room_tokens, meter, results)
        phase_joins(args, servers, join_tokens, env["DATABASE_URL"], redis_url, meter, results)
        phase_fanout(args, a.url, b.url, fan_token, c2_tokens, meter, results)
        results["rss_mib_after_3"] = {n: round(memory_kib(p.pid)["VmRSS"] / 1024, 1)
                                      for n, p in fleet.procs.items()}
        phase_hosted(args, fleet, env, servers, hosted_tokens, results)
        results["db_counts"] = db_counts()
    except KeyboardInterrupt:
        log("interrupted")
        results["failure"] = "interrupted"
    except Exception as exc:  # noqa: BLE001 - keep what was measured, then fail
        import traceback

        traceback.print_exc()
        log(f"FAILED: {type(exc).__name__}: {exc}")
        results["failure"] = f"{type(exc).__name__}: {exc}"
    finally:
        fleet.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up
            pass
        results["logs"] = scan_logs(fleet)
        try:
            redis.Redis.from_url(redis_url).flushdb()
        except redis.RedisError as exc:
            log(f"could not flush redis db {REDIS_DB}: {exc}")
        if db_created:
            try:
                with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                log(f"dropped database {db_name}")
            except psycopg.Error as exc:
                log(f"could not drop database {db_name}: {exc}")
        results["redis_run_id_end"] = redis_run_id(redis_url)
        if results["redis_run_id_end"] != results.get("redis_run_id_start"):
            log("WARNING: the Redis server restarted during this run (someone else's test?)")
        results["runtime_s"] = round(time.monotonic() - T0, 1)
        results["machine"]["loadavg_end"] = os.getloadavg()
        if args.keep_tmp:
            log(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    path = write_results(results, "prod")
    for name, scan in results["logs"].items():
        extra = (f", HTTP 5xx {scan['http_5xx']}, statuses {scan['access_status_counts']}"
                 if "http_5xx" in scan else "")
        print(f"log {name}: {scan['error_lines']} error lines{extra}; {scan['known']}")
        for line in scan["error_samples"][:5]:
            print("    " + line[:220])
    print(f"db: {results.get('db_counts')}; runtime {results['runtime_s']}s; results: {path}")
    if "failure" in results:
        print(f"FAILED: {results['failure']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
