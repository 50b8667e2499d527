"""Core benchmarks of the voice session service, against a real Daphne server.

What it measures (embedded mode: SQLite + in-memory channel layer + `local`
room provider, in a throw-away VOICE_VAR_DIR, never the developer's db):

  A. POST /api/voice/room (get-or-create the user's room): latency p50/p99/mean,
     requests/s, errors (any non-200), from --concurrency keep-alive clients
     spread over several users (after --requests/5 from a single client, for
     the unloaded latency; A and B both do this).
  B. POST /api/bot/join (record a session + enqueue a bot job): each timed join
     is a real enqueue (202), because every worker cycles its own users through
     join -> DELETE /api/voice/room {"teardownDelay": 0} -> POST /api/voice/room,
     timing only the joins.
  C1. Websocket fan-out: --clients sockets of ONE user (token header auth) whose
     session is set ACTIVE through the ORM; one extra sender socket sends
     user-message frames; each becomes a voice.transcript event pushed to every
     socket. First a few paced events (one at a time: unloaded latency), then
     --events sent back to back (throughput: events x clients / seconds, and
     latency under saturation), plus lost events.
  C2. Websocket, many users: --clients users, each with its own active session
     and one socket that sends --events/10 messages to itself, all at once.
  Memory: the Daphne process's VmRSS (and VmHWM, its peak) at idle and after
     each benchmark.

Run from the project root:

    .venv/bin/python bench/bench_core.py [--requests 1000] [--clients 100] [--events 200]
                                         [--concurrency 8] [--keep-tmp]

Progress goes to stdout, a table at the end; results are written as JSON to
bench/results/core-<timestamp>.json. The server's log (app logs, 500
tracebacks via bench/bench_settings.py) is scanned for errors and 5xx.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
RESULTS_DIR = BENCH_DIR / "results"
PACED_EVENTS = 20  # C1: events sent one at a time before the burst
ROOM_USERS = 16  # A and B spread over this many users
BASELINE_FRACTION = 5  # A and B also run requests/5 from a single client (unloaded latency)
WARMUP_REQUESTS = 32  # untimed requests before A: first-request imports and caches
T0 = time.monotonic()


# --- output -----------------------------------------------------------------

def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# --- statistics ---------------------------------------------------------------

def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for an empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(latencies_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies_s]
    mean = sum(ms) / len(ms) if ms else float("nan")
    return {"p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "mean_ms": round(mean, 2), "max_ms": round(max(ms), 2) if ms else float("nan")}


@dataclass
class HttpRun:
    """Timings and statuses of one HTTP benchmark."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    other_statuses: dict[str, int] = field(default_factory=dict)  # untimed helper requests
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def record(self, status: int, body: str, *, timed: bool, expected: set[int]) -> None:
        bucket = self.statuses if timed else self.other_statuses
        bucket[str(status)] = bucket.get(str(status), 0) + 1
        if status not in expected and len(self.error_samples) < 5:
            self.error_samples.append(f"{status} {body[:300]}")


# --- environment, database, users ---------------------------------------------

UNTHROTTLED = {"VOICE_THROTTLE_ROOM": "1000000/second", "VOICE_THROTTLE_JOIN": "1000000/second"}


def bench_env(var_dir: Path) -> dict[str, str]:
    """The server's env: pinned to embedded mode in `var_dir`, whatever .env says."""
    env = dict(os.environ)
    env.update({
        "VOICE_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "REDIS_URL": "",
        "SECRET_KEY": "bench-" + os.urandom(24).hex(),
        "DEBUG": "False",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "VOICE_PROVIDER": "local",
        "VOICE_BOT_QUEUE": "voicesessions.queue.DatabaseBotJobQueue",
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        # The benches measure raw throughput, a few users sending thousands of requests:
        # the per-user rate limits (tests/test_throttling.py) would turn most into 429s.
        **UNTHROTTLED,
    })
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def setup_django(env: dict[str, str]) -> None:
    """Django in this process, on the same settings and database as the server."""
    for key in ("VOICE_VAR_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
                "VOICE_PROVIDER", "VOICE_BOT_QUEUE", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    for path in (str(ROOT), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def create_bench_users(count: int) -> list[str]:
    """`count` users named bench-NNN with DRF tokens; returns their token keys."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    users = [User(username=f"bench-{i:03d}") for i in range(count)]
    for user in users:
        user.set_unusable_password()
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith="bench-").order_by("username"))
    tokens = [Token(user=user, key=Token.generate_key()) for user in users]
    Token.objects.bulk_create(tokens)
    return [t.key for t in tokens]


def activate_sessions(tokens: list[str]) -> int:
    """Set the live sessions of these users ACTIVE directly in the database."""
    from rest_framework.authtoken.models import Token

    from voicesessions.models import SessionStatus, VoiceSession

    user_ids = Token.objects.filter(key__in=tokens).values_list("user_id", flat=True)
    return VoiceSession.objects.filter(user_id__in=list(user_ids), status=SessionStatus.CONNECTING).update(
        status=SessionStatus.ACTIVE)


def db_counts() -> dict[str, int]:
    from voicesessions.models import BotJob, SessionEvent, VoiceSession

    return {"sessions": VoiceSession.objects.count(), "bot_jobs": BotJob.objects.count(),
            "events": SessionEvent.objects.count()}


# --- the server -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the bench dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_server(env: dict[str, str], port: int, log_path: Path, access_path: Path) -> subprocess.Popen:
    cmd = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
           "--access-log", str(access_path), "voiceproject.asgi:application"]
    log_file = open(log_path, "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)


def wait_until_up(proc: subprocess.Popen, base: str, timeout: float = 30.0) -> float:
    """Poll until the server answers any HTTP status; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode} before answering")
        try:
            httpx.get(f"{base}/api/voice/config", timeout=1.0, trust_env=False)
            return time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"daphne did not answer within {timeout}s")


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, and its thread count."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            found[name] = int(value.split()[0])
    return found


def settled_rss_mib(pid: int, *, within: float = 1.0, every: float = 0.5, limit: float = 10.0) -> float:
    """A process's RSS in MiB once it has settled: two readings `every` s apart within `within` MiB.

    A worker hands the memory of ended sessions back just after the heartbeat that reaped them
    (voicebot/worker.py _release_memory); read at once, its RSS would catch it half done.
    """
    rss = memory_kib(pid)["VmRSS"] / 1024
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(every)
        now = memory_kib(pid)["VmRSS"] / 1024
        if abs(now - rss) < within:
            return round(now, 1)
        rss = now
    return round(rss, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stagger:
    """N sessions' start offsets, spread evenly over `spread` seconds, and the window in
    which all of them are talking.

    Sessions that all ask the same question at once end their turns together and meet
    every turn's work in one burst; users' turns are independent. Spread over one turn's
    cycle, the turn ends fall evenly. The figures are then read only while every session
    talks (from the last one's start to the first one's end), not in the ramps.
    """

    def __init__(self, n: int, spread: float, pid: int) -> None:
        self.n, self.spread, self.pid = n, spread, pid
        self._started = 0
        self.opened: tuple[float, float] | None = None  # (time.monotonic(), the process's CPU seconds)
        self.closed: tuple[float, float] | None = None

    def _now(self) -> tuple[float, float]:
        return time.monotonic(), cpu_seconds(self.pid)

    async def start(self, i: int) -> None:
        """Wait for session i's offset; the last to start opens the window."""
        await asyncio.sleep(self.spread * i / max(1, self.n))
        self._started += 1
        if self._started == self.n:
            self.opened = self._now()

    def finish(self) -> None:
        """A session's last turn is over; the first to finish closes the window."""
        if self.opened is not None and self.closed is None:
            self.closed = self._now()

    def within(self, at: float) -> bool:
        """Whether every session was talking at `at` (a window not yet closed is still open)."""
        return (self.opened is not None and self.opened[0] <= at
                and (self.closed is None or at <= self.closed[0]))

    def cpu_pct(self) -> float | None:
        """The process's CPU while every session talked, in % of one core."""
        if self.opened is None or self.closed is None or self.closed[0] <= self.opened[0]:
            return None
        return round(100 * (self.closed[1] - self.opened[1]) / (self.closed[0] - self.opened[0]), 1)


class CpuMeter:
    """CPU used by the server and by this bench process between two calls."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mark()

    def mark(self) -> None:
        self.server, self.own, self.wall = cpu_seconds(self.pid), time.process_time(), time.monotonic()

    def since(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        used = {"server_cpu_s": round(cpu_seconds(self.pid) - self.server, 2),
                "bench_cpu_s": round(time.process_time() - self.own, 2), "wall_s": round(wall, 2)}
        used["server_cpu_pct"] = round(100 * used["server_cpu_s"] / wall, 1) if wall else 0.0
        used["bench_cpu_pct"] = round(100 * used["bench_cpu_s"] / wall, 1) if wall else 0.0
        self.mark()
        return used


def scan_server_logs(log_path: Path, access_path: Path) -> dict[str, Any]:
    """Errors in the server's log and 5xx lines in its access log."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    error_lines = [ln for ln in text.splitlines()
                   if re.search(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception inside", ln)]
    access = access_path.read_text(errors="replace") if access_path.exists() else ""
    status_counts: dict[str, int] = {}
    for match in re.finditer(r'" (\d{3}) ', access):
        status_counts[match.group(1)] = status_counts.get(match.group(1), 0) + 1
    return {"error_lines": len(error_lines), "error_samples": error_lines[:10],
            "access_status_counts": status_counts,
            "http_5xx": sum(n for s, n in status_counts.items() if s.startswith("5"))}


# --- HTTP benchmarks ----------------------------------------------------------------

def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def http_client(base: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=base, timeout=60.0, trust_env=False, limits=limits)


async def timed(client: httpx.AsyncClient, method: str, url: str, token: str,
                body: dict[str, Any]) -> tuple[int, float, str]:
    started = time.perf_counter()
    try:
        resp = await client.request(method, url, json=body, headers=auth(token))
        status, text = resp.status_code, resp.text
    except httpx.HTTPError as exc:
        status, text = 0, f"{type(exc).__name__}: {exc}"
    return status, time.perf_counter() - started, text


async def bench_rooms(base: str, tokens: list[str], total: int, concurrency: int) -> HttpRun:
    """A: `total` POST /api/voice/room from `concurrency` clients, users round-robin."""
    run = HttpRun()
    counter = itertools.count()

    async def worker() -> None:
        async with http_client(base) as client:
            while (i := next(counter)) < total:
                status, elapsed, text = await timed(client, "POST", "/api/voice/room", tokens[i % len(tokens)],
                                                    {"assistant": "pearl"})
                run.latencies.append(elapsed)
                run.record(status, text, timed=True, expected={200})

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


async def bench_joins(base: str, tokens: list[str], total: int, concurrency: int) -> HttpRun:
    """B: `total` timed joins; each worker owns its users and cycles join -> leave(0) -> room."""
    run = HttpRun()
    counter = itertools.count()
    join_body = {"voiceOnly": True, "assistant": "pearl"}

    async def worker(own: list[str]) -> None:
        async with http_client(base) as client:
            for token in itertools.cycle(own):
                if next(counter) >= total:
                    return
                status, elapsed, text = await timed(client, "POST", "/api/bot/join", token, join_body)
                run.latencies.append(elapsed)
                run.record(status, text, timed=True, expected={202})
                for method, body in (("DELETE", {"teardownDelay": 0}), ("POST", {"assistant": "pearl"})):
                    status, _, text = await timed(client, method, "/api/voice/room", token, body)
                    run.record(status, text, timed=False, expected={200})

    started = time.perf_counter()
    await asyncio.gather(*(worker(tokens[w::concurrency]) for w in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


async def prepare_sessions(base: str, tokens: list[str], concurrency: int) -> dict[str, int]:
    """Room + join for each user (the session is then set active through the ORM)."""
    statuses: dict[str, int] = {}
    queue = list(tokens)

    async def worker() -> None:
        async with http_client(base) as client:
            while queue:
                token = queue.pop()
                for url, body in (("/api/voice/room", {"assistant": "pearl"}),
                                  ("/api/bot/join", {"voiceOnly": True, "assistant": "pearl"})):
                    status, _, _ = await timed(client, "POST", url, token, body)
                    key = f"{url} {status}"
                    statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def http_result(name: str, run: HttpRun, expected: int) -> dict[str, Any]:
    count = len(run.latencies)
    errors = sum(n for s, n in run.statuses.items() if int(s) != expected)
    helper_errors = sum(n for s, n in run.other_statuses.items() if s != "200")
    return {"name": name, "requests": count, **summarize(run.latencies),
            "rps": round(count / run.wall_s, 1) if run.wall_s else 0.0, "wall_s": round(run.wall_s, 2),
            "errors": errors, "statuses": run.statuses, "helper_statuses": run.other_statuses,
            "helper_errors": helper_errors, "error_samples": run.error_samples}


# --- websocket benchmarks --------------------------------------------------------------

def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws/voice/"


async def open_socket(base: str, token: str) -> ClientConnection:
    """A connected socket that has received its voice.connected greeting."""
    # An Origin is required: AllowedHostsOriginValidator refuses handshakes without one.
    ws = await connect(ws_url(base), origin=base, additional_headers=auth(token), proxy=None,
                       compression=None, max_queue=None, open_timeout=30, ping_interval=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if hello.get("type") != "voice.connected":
        raise RuntimeError(f"unexpected first message: {hello}")
    return ws


async def open_sockets(base: str, tokens: list[str], batch: int = 25) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    for i in range(0, len(tokens), batch):
        sockets += await asyncio.gather(*(open_socket(base, t) for t in tokens[i:i + batch]))
    return sockets


@dataclass
class FanOut:
    """Shared bookkeeping of sent and received events, keyed by sequence number."""

    receivers: int
    sent_at: dict[int, float] = field(default_factory=dict)
    received: dict[int, list[float]] = field(default_factory=dict)  # seq -> receive times
    all_in: dict[int, asyncio.Event] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0

    def expect(self, seq: int) -> None:
        self.received.setdefault(seq, [])
        self.all_in.setdefault(seq, asyncio.Event())

    def got(self, seq: int, when: float) -> None:
        self.expect(seq)
        self.received[seq].append(when)
        if len(self.received[seq]) >= self.receivers:
            self.all_in[seq].set()

    def latencies(self, seqs: range) -> list[float]:
        return [t - self.sent_at[s] for s in seqs if s in self.sent_at for t in self.received.get(s, [])]


def _parse_seq(raw: str | bytes, tag: str) -> tuple[int | None, dict[str, Any]]:
    message = json.loads(raw)
    text = (message.get("payload") or {}).get("text", "") if message.get("type") == "voice.transcript" else ""
    if text.startswith(tag):
        return int(text[len(tag):]), message
    return None, message


async def receive_loop(ws: ClientConnection, fan: FanOut, tag: str, wanted: int, deadline: float,
                       count: bool = True) -> int:
    """Read until `wanted` distinct tagged transcripts arrived or the deadline; returns how many."""
    got, seen = 0, set[int]()
    while got < wanted:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        try:
            raw = await asyncio.wait_for(ws.recv(), remaining)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - a closed socket ends the loop
            if not isinstance(exc, asyncio.TimeoutError):
                fan.errors.append(f"recv: {type(exc).__name__}: {exc}")
            break
        seq, message = _parse_seq(raw, tag)
        if seq is not None and seq in seen:
            fan.duplicates += 1
        elif seq is not None:
            seen.add(seq)
            got += 1
            if count:
                fan.got(seq, time.perf_counter())
        elif message.get("type") == "voice.error" and len(fan.errors) < 20:
            fan.errors.append(json.dumps(message.get("payload")))
    return got


async def send_event(ws: ClientConnection, fan: FanOut, tag: str, seq: int) -> None:
    fan.expect(seq)
    fan.sent_at[seq] = time.perf_counter()
    await ws.send(json.dumps({"type": "user-message", "content": f"{tag}{seq}"}))


def fanout_result(name: str, fan: FanOut, seqs: range, receivers: int, wall_s: float) -> dict[str, Any]:
    expected = len(seqs) * receivers
    delivered = sum(len(fan.received.get(s, [])) for s in seqs)
    return {"name": name, "events": len(seqs), "receivers": receivers, "deliveries": delivered,
            "lost": expected - delivered, "duplicates": fan.duplicates, "wall_s": round(wall_s, 3),
            "deliveries_per_s": round(delivered / wall_s, 1) if wall_s else 0.0,
            "events_per_s": round(len(seqs) / wall_s, 1) if wall_s else 0.0,
            **summarize(fan.latencies(seqs)), "error_samples": fan.errors[:5]}


async def bench_fanout(base: str, token: str, clients: int, events: int, *, sender_base: str | None = None,
                       paced_events: int = PACED_EVENTS, label: str = "C1 fan-out",
                       tag: str = "bench-fan-") -> list[dict[str, Any]]:
    """C1: `clients` sockets of one user on `base`, one sender (on `sender_base`, default
    the same server); paced then burst events."""
    fan = FanOut(receivers=clients)
    log(f"  C1: opening {clients} sockets for one user" + (f", the sender on {sender_base}" if sender_base else ""))
    sockets = await open_sockets(base, [token] * clients)
    sender = await open_socket(sender_base or base, token)
    total = paced_events + events
    deadline = time.perf_counter() + 120
    readers = [asyncio.create_task(receive_loop(ws, fan, tag, total, deadline)) for ws in sockets]
    drain = asyncio.create_task(receive_loop(sender, fan, tag, total, deadline, count=False))
    try:
        log(f"  C1: {paced_events} paced events (each waits for all {clients} sockets)")
        started = time.perf_counter()
        for seq in range(paced_events):
            await send_event(sender, fan, tag, seq)
            try:
                await asyncio.wait_for(fan.all_in[seq].wait(), 10)
            except asyncio.TimeoutError:
                if seq == 0:  # nothing works (no active session?): do not wait out every event
                    raise RuntimeError(f"C1: first event not delivered to all sockets in 10s: {fan.errors[:3]}")
                fan.errors.append(f"paced event {seq} not delivered to all sockets in 10s")
        paced = fanout_result(f"{label} paced", fan, range(paced_events), clients,
                              time.perf_counter() - started)
        log(f"  C1: {events} events back to back")
        burst = range(paced_events, total)
        started = time.perf_counter()
        for seq in burst:
            await send_event(sender, fan, tag, seq)
        await asyncio.gather(*readers)
        last = max((max(fan.received[s], default=started) for s in burst), default=started)
        result = fanout_result(f"{label} burst", fan, burst, clients, last - started)
    finally:
        drain.cancel()
        await asyncio.gather(*(ws.close() for ws in [*sockets, sender]), return_exceptions=True)
    return [paced, result]


async def bench_many_users(base: str, tokens: list[str], per_user: int, *, sender_base: str | None = None,
                           label: str = "C2 many users", tag: str = "bench-self-") -> dict[str, Any]:
    """C2: one socket per user, each sends `per_user` messages to itself, all users at once.

    With `sender_base`, each user sends from a second socket on that server instead.
    """
    log(f"  C2: opening {len(tokens)} sockets, one per user" + (f", senders on {sender_base}" if sender_base else ""))
    sockets = await open_sockets(base, tokens)
    senders = await open_sockets(sender_base, tokens) if sender_base else sockets
    fans = [FanOut(receivers=1) for _ in sockets]
    deadline = time.perf_counter() + 120

    async def one(rx: ClientConnection, tx: ClientConnection, fan: FanOut) -> None:
        reader = asyncio.create_task(receive_loop(rx, fan, tag, per_user, deadline))
        drain = None if tx is rx else asyncio.create_task(
            receive_loop(tx, FanOut(receivers=1), tag, per_user, deadline, count=False))
        for seq in range(per_user):
            await send_event(tx, fan, tag, seq)
        await reader
        if drain:
            drain.cancel()

    try:
        log(f"  C2: {len(tokens)} users x {per_user} messages")
        started = time.perf_counter()
        await asyncio.gather(*(one(rx, tx, fan) for rx, tx, fan in zip(sockets, senders, fans)))
        last = max((t for fan in fans for times in fan.received.values() for t in times), default=started)
        wall = last - started
    finally:
        await asyncio.gather(*(ws.close() for ws in {*sockets, *senders}), return_exceptions=True)
    merged = FanOut(receivers=1)
    for i, fan in enumerate(fans):
        for seq, sent in fan.sent_at.items():
            merged.sent_at[i * per_user + seq] = sent
            merged.received[i * per_user + seq] = fan.received.get(seq, [])
        merged.errors += fan.errors
        merged.duplicates += fan.duplicates
    result = fanout_result(label, merged, range(len(tokens) * per_user), 1, wall)
    return {**result, "users": len(tokens), "per_user": per_user}


# --- report -----------------------------------------------------------------------------

def fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "count", "p50 ms", "p99 ms", "mean ms", "rate", "errors/lost", "notes")]
    for r in results["http"]:
        note = f"202s={r['statuses'].get('202', 0)}" if r["name"].startswith("B") else ""
        if r["helper_errors"]:
            note += f" helper non-200={r['helper_errors']}"
        rows.append((r["name"], str(r["requests"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["mean_ms"]),
                     f"{r['rps']} req/s", str(r["errors"]), note.strip()))
    for r in results["websocket"]:
        count = f"{r['users']}u x {r['per_user']}" if "users" in r else f"{r['events']} x {r['receivers']}"
        rows.append((r["name"], count, fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                     fmt(r["mean_ms"]), f"{r['deliveries_per_s']} deliv/s", str(r["lost"]),
                     f"{r['events_per_s']} events/s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("Daphne memory (MiB):  " + "  ".join(
        f"{m['when']}: RSS {m['VmRSS'] / 1024:.1f} (peak {m['VmHWM'] / 1024:.1f})" for m in results["memory"]))
    lines.append("CPU, % of one core (server / bench client):  " + "  ".join(
        f"{c['phase']}: {c['server_cpu_pct']} / {c['bench_cpu_pct']}" for c in results["cpu"]))
    return "\n".join(lines)


def write_results(results: dict[str, Any], prefix: str = "core") -> Path:
    """Write a run's results to bench/results/<prefix>-<timestamp>.json (shared by every bench)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


# --- main ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests in A and in B")
    parser.add_argument("--clients", type=int, default=100, help="websocket clients in C1; users in C2")
    parser.add_argument("--events", type=int, default=200, help="burst events in C1 (C2 sends events/10 per user)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients in A and B")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary VOICE_VAR_DIR and logs")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Recorder:
    """Collects results, and the server's memory and CPU after each phase."""

    def __init__(self, results: dict[str, Any], pid: int) -> None:
        self.results, self.pid, self.cpu = results, pid, CpuMeter(pid)

    def memory(self, when: str) -> None:
        self.results["memory"].append({"when": when, **memory_kib(self.pid)})
        line = f"  Daphne RSS {when}: {self.results['memory'][-1]['VmRSS'] / 1024:.1f} MiB"
        if when.startswith("after "):
            used = {"phase": when.removeprefix("after "), **self.cpu.since()}
            self.results["cpu"].append(used)
            line += f"; CPU server {used['server_cpu_pct']}% / bench {used['bench_cpu_pct']}% of one core"
        log(line)

    def http(self, result: dict[str, Any]) -> None:
        self.results["http"].append(result)
        log(f"  {result['name']}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {result['rps']}/s, "
            f"errors {result['errors']}, statuses {result['statuses']}, helpers {result['helper_statuses']}")

    def websocket(self, result: dict[str, Any]) -> None:
        self.results["websocket"].append(result)
        log(f"  {result['name']}: {result['deliveries_per_s']} deliveries/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, lost {result['lost']}")


def run_rooms(rec: Recorder, args: argparse.Namespace, base: str, users: list[str]) -> None:
    log(f"warm-up: {WARMUP_REQUESTS} untimed POST /api/voice/room")
    asyncio.run(bench_rooms(base, users, WARMUP_REQUESTS, args.concurrency))
    rec.cpu.mark()
    baseline = max(1, args.requests // BASELINE_FRACTION)
    log(f"A: {args.requests} x POST /api/voice/room from {args.concurrency} clients over {len(users)} users, "
        f"after {baseline} from 1 client (unloaded latency)")
    for name, total, conc in (("A room, 1 client", baseline, 1),
                              (f"A room, {args.concurrency} clients", args.requests, args.concurrency)):
        rec.http(http_result(name, asyncio.run(bench_rooms(base, users, total, conc)), 200))
    rec.memory("after A")


def run_joins(rec: Recorder, args: argparse.Namespace, base: str, users: list[str]) -> None:
    baseline = max(1, args.requests // BASELINE_FRACTION)
    log(f"B: {args.requests} x POST /api/bot/join from {args.concurrency} clients, after {baseline} from 1 "
        f"client; each join is followed by leave(teardownDelay=0) + room, untimed")
    for name, total, conc in (("B join, 1 client", baseline, 1),
                              (f"B join, {args.concurrency} clients", args.requests, args.concurrency)):
        rec.http(http_result(name, asyncio.run(bench_joins(base, users, total, conc)), 202))
    rec.memory("after B")


def run_fanout(rec: Recorder, args: argparse.Namespace, base: str, user: str) -> None:
    log("C1: preparing the fan-out user's session (room + join, then ACTIVE via the ORM)")
    rec.results["prep"]["C1"] = {**asyncio.run(prepare_sessions(base, [user], 1)),
                                 "activated": activate_sessions([user])}
    rec.cpu.mark()
    for result in asyncio.run(bench_fanout(base, user, args.clients, args.events)):
        rec.websocket(result)
    rec.memory("after C1")


def run_many_users(rec: Recorder, args: argparse.Namespace, base: str, users: list[str]) -> None:
    log(f"C2: preparing {len(users)} users' sessions")
    rec.results["prep"]["C2"] = {**asyncio.run(prepare_sessions(base, users, args.concurrency)),
                                 "activated": activate_sessions(users)}
    rec.cpu.mark()
    rec.websocket(asyncio.run(bench_many_users(base, users, max(1, args.events // 10))))
    rec.memory("after C2")


def run_benchmarks(args: argparse.Namespace, base: str, pid: int, tokens: list[str],
                   results: dict[str, Any]) -> None:
    rec = Recorder(results, pid)
    rec.memory("idle")
    run_rooms(rec, args, base, tokens[:ROOM_USERS])
    run_joins(rec, args, base, tokens[:ROOM_USERS])
    run_fanout(rec, args, base, tokens[-1])
    run_many_users(rec, args, base, tokens[:args.clients])
    time.sleep(1.0)
    rec.memory("idle at end")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    var_dir = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    env = bench_env(var_dir)
    log_path, access_path = var_dir / "daphne.log", var_dir / "access.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"), "args": vars(args),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_start": os.getloadavg()},
        "http": [], "websocket": [], "memory": [], "cpu": [], "prep": {}}
    proc: subprocess.Popen | None = None
    try:
        log(f"VOICE_VAR_DIR={var_dir}: migrate + seed_demo")
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        setup_django(env)
        tokens = create_bench_users(max(args.clients, ROOM_USERS) + 1)
        log(f"created {len(tokens)} bench users with tokens; starting daphne on {base}")
        proc = start_server(env, port, log_path, access_path)
        log(f"daphne pid {proc.pid} answered after {wait_until_up(proc, base):.1f}s")
        time.sleep(1.0)
        run_benchmarks(args, base, proc.pid, tokens, results)
        results["db_counts"] = db_counts()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - keep what was measured, then fail
        log(f"FAILED: {type(exc).__name__}: {exc}")
        results["failure"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_server(proc)
        results["server_log"] = scan_server_logs(log_path, access_path)
        results["runtime_s"] = round(time.monotonic() - T0, 1)
        results["machine"]["loadavg_end"] = os.getloadavg()
        if args.keep_tmp:
            log(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    path = write_results(results)
    print("\n" + table(results))
    srv = results["server_log"]
    print(f"\nserver log: {srv['error_lines']} error lines, {srv['http_5xx']} HTTP 5xx; "
          f"access-log statuses {srv['access_status_counts']}")
    for line in srv["error_samples"]:
        print("  " + line[:200])
    machine = results["machine"]
    print(f"machine: {machine['nproc']} CPUs, Python {machine['python']}, load average "
          f"{machine['loadavg_start'][0]:.2f} at start, {machine['loadavg_end'][0]:.2f} at end")
    print(f"db: {results.get('db_counts')}; total runtime {results['runtime_s']}s; results: {path}")
    if "failure" in results:
        print(f"FAILED: {results['failure']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
