"""Production mode on this machine's real PostgreSQL and Redis: two Daphne servers and two
bot workers sharing the database, the channel layer and the Redis Streams job queue."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import pytest
import redis

from tests.botharness import BOT_ENV, Client, is_final_transcript, is_status, speak_to_wav, start_worker
from tests.livesrv import metric, scrape, start_server, users_with_tokens
from tests.waiting import heard_answer, wait_until
from voicebot.peer import BotPeer

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]
PG = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    name = f"voice_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_db = 13
    redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}").flushdb()
    env = {**BOT_ENV, "VOICE_WS_REFRESH_SECONDS": "1", "DATABASE_URL": f"{PG}/{name}", "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}"}
    a = start_server(tmp_path_factory.mktemp("server-a"), env)
    b = start_server(tmp_path_factory.mktemp("server-b"), env)
    workers = [start_worker(a, "--pool-size", "1", "--worker-id", f"w{i}") for i in (1, 2)]
    yield a, b, workers  # tests may replace entries of `workers`
    for w in workers:
        w.terminate()
        w.wait(timeout=20)
    a.stop()
    b.stop()
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_runs_on_postgres_and_redis(production):
    a, b, workers = production
    assert "postgresql" in a.manage("shell", "-c", "from django.db import connection; print(connection.vendor)")
    layer = a.manage("shell", "-c", "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND'],"
                                    " settings.VOICE_BOT_QUEUE, settings.VOICE_EVENT_DELIVERY)")
    assert "RedisPubSubChannelLayer" in layer and "RedisStreamBotJobQueue" in layer and "layer" in layer


def test_user_on_one_server_hears_a_bot_joined_through_the_other(production, tmp_path):
    a, b, workers = production
    # Germany, not France: the default encoder window hears espeak-ng's "capital of France" as
    # "capital and friends" (see test_bot_e2e).
    question = speak_to_wav("What is the capital of Germany?", tmp_path / "q.wav")

    async def scenario() -> None:
        on_b = Client(b)  # the browser's websocket is held by server B
        await on_b.open_ws()
        via_a = Client(a)  # ...while its API calls and signalling go to server A
        room = via_a.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        join = via_a.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                       "sessionPersistence": 2})
        assert join.status_code == 202
        peer = BotPeer(a.url, room["token"])
        await peer.connect()
        await on_b.wait_for(is_status("active"), 20, "active, seen on server B")
        peer.say_wav(str(question))
        user = await on_b.wait_for(is_final_transcript("user"), 30, "user transcript on B")
        assert "germany" in user["payload"]["text"].lower()
        await on_b.wait_for(is_final_transcript("assistant"), 30, "bot transcript on B")
        await heard_answer(peer)
        worker_id = via_a.http.get(f"/api/voice/sessions/{join.json()['sessionId']}").json()["botWorkerId"]
        assert worker_id in ("w1", "w2")
        await peer.close()
        await on_b.wait_for(lambda e: e["type"] == "voice.session.end", 20, "session end on B")
        await on_b.close()
        await via_a.close()

    asyncio.run(scenario())

    # Server B's /metrics counts what server A and the workers did: it reads PostgreSQL.
    seen = scrape(b)
    assert metric(seen, "voice_sessions_created_total", mode="voice_only") >= 1
    assert metric(seen, "voice_bot_join_latency_seconds_count") >= 1
    assert metric(seen, "voice_session_duration_seconds_count") >= 1
    assert metric(seen, "voice_tokens_issued_total", provider="local") >= 1
    assert {labels for (name, labels) in seen if name == "voice_bot_pool_capacity"} >= {
        (("worker", "w1"),), (("worker", "w2"),)}


def test_a_users_rate_limit_holds_across_servers(production):
    """The throttle's counters live in Redis: alternating servers doesn't double the allowance."""
    a, b, workers = production
    a.manage("shell", "-c", "from django.contrib.auth.models import User; User.objects.get_or_create(username='busy')")
    key = a.manage("drf_create_token", "busy").split()[2]
    statuses = [httpx.post(f"{server.url}/api/voice/room", json={}, timeout=30,
                           headers={"Authorization": f"Token {key}"}).status_code
                for server in [a, b] * 16]
    assert statuses[:30] == [200] * 30  # the default 30/minute, counted once for both servers
    assert statuses[30:] == [429, 429]


def test_200_concurrent_room_and_join_requests_start_one_bot_per_room(production):
    a, b, workers = production
    users = [f"load{i}" for i in range(25)]
    keys = users_with_tokens(a.manage, users)

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            async def call(server, user, path):
                body = {"voiceOnly": True} if path == "/api/bot/join" else {}
                return await http.post(f"{server.url}{path}", json=body,
                                       headers={"Authorization": f"Token {keys[user]}"})
            # Every room exists first, then 4 room + 4 join requests per user at once, split over both servers.
            await asyncio.gather(*(call(a, u, "/api/voice/room") for u in users))
            calls = [call(server, u, path) for u in users for server in (a, b)
                     for path in ("/api/voice/room", "/api/bot/join", "/api/voice/room", "/api/bot/join")]
            return await asyncio.gather(*calls)

    responses = asyncio.run(scenario())
    assert len(responses) == 200
    assert all(r.status_code in (200, 202, 503) for r in responses), {r.status_code for r in responses}
    # Two workers of one slot each: once the joins already waiting take both slots, the rest are
    # refused at once (admission control), each with the reason and when to try again.
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(r.json()["error"] == "no_capacity" and r.headers["Retry-After"] for r in refused)
    joined = {r.json()["sessionId"] for r in responses if r.status_code in (200, 202) and "sessionId" in r.json()}
    counts = a.manage("shell", "-c", (
        "from voicesessions.models import VoiceSession, BotJob, LIVE_STATUSES\n"
        "from django.db.models import Count\n"
        "rooms = VoiceSession.objects.filter(user__username__startswith='load', status__in=LIVE_STATUSES)"
        ".values('room').annotate(n=Count('id'))\n"
        "print(len(rooms), max(r['n'] for r in rooms), "
        "BotJob.objects.filter(session__user__username__startswith='load').count())"))
    rooms, most, jobs = map(int, counts.split()[-3:])
    assert rooms == len(joined) >= 2 and most == 1  # one live session, one bot, per room that got one
    assert jobs == rooms  # and exactly one job each: a refused join left nothing behind
    for user in users:  # free the workers' slots for the next tests
        r = httpx.request("DELETE", f"{a.url}/api/voice/room", json={"teardownDelay": 0},
                          headers={"Authorization": f"Token {keys[user]}"}, timeout=30)
        assert r.status_code == 200
    # ...and let the workers drain the jobs still queued for the ended sessions: until then the
    # next test's join would be refused (no_capacity) by the admission check.
    wait_until(lambda: a.manage("shell", "-c", "from voicesessions.models import BotJob, BotJobStatus; "
                                "print(BotJob.objects.filter(status=BotJobStatus.QUEUED).count())").split()[-1] == "0",
               90, "the burst's queued jobs drained")


def test_a_killed_server_loses_no_event_the_client_reconnects_elsewhere(production):
    """Server B dies with the user's socket on it; the client reconnects to A with ?after=<last id>
    and gets every event it missed, including those recorded while it had no socket."""
    import json
    import signal

    import websockets

    a, b, workers = production

    async def scenario() -> None:
        client = Client(b, "demo")
        await client.open_ws()
        client.http.post("/api/voice/room", json={})
        join = client.http.post("/api/bot/join", json={"voiceOnly": True}).json()
        first = await client.wait_for(lambda e: e["sessionId"] == join["sessionId"], 10, "first event")
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(timeout=10)
        # Meanwhile the session changes (through server A)
        via_a = Client(a, "demo")
        via_a.http.post(f"/api/voice/sessions/{join['sessionId']}/pause")  # 409: not active yet, that is fine
        via_a.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 60})
        url = a.url.replace("http://", "ws://") + f"/ws/voice/?after={first['id']}"
        async with websockets.connect(url, additional_headers=[client.token_header]) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["type"] == "voice.connected"
            missed = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert missed["sessionId"] == join["sessionId"] and missed["payload"]["status"] == "inactive"
        via_a.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await via_a.close()

    try:
        asyncio.run(scenario())
    finally:
        import shutil
        from pathlib import Path

        from tests.livesrv import start_server as restart

        var = Path(b.env["VOICE_VAR_DIR"])
        fresh = var.parent / (var.name + "-restarted")
        fresh.mkdir(exist_ok=True)
        new_b = restart(fresh, {k: v for k, v in b.env.items() if k.startswith(("VOICE_W", "DATABASE", "REDIS"))})
        b.url, b.process, b.env = new_b.url, new_b.process, new_b.env
        shutil.rmtree(fresh / "staticfiles", ignore_errors=True)


def test_killed_worker_session_unavailable_and_a_new_join_works(production):
    import signal

    a, b, workers = production

    async def scenario() -> None:
        client = Client(a, "demo")
        await client.open_ws()
        room = client.http.post("/api/voice/room", json={}).json()
        join = client.http.post("/api/bot/join", json={"voiceOnly": True}).json()
        peer = BotPeer(a.url, room["token"])
        await peer.connect()
        await client.wait_for(is_status("active"), 20, "active")
        holder = client.http.get(f"/api/voice/sessions/{join['sessionId']}").json()["botWorkerId"]
        index = ["w1", "w2"].index(holder)
        workers[index].send_signal(signal.SIGKILL)
        error = await client.wait_for(lambda e: e["type"] == "voice.error", 20, "voice.error")
        assert error["payload"]["code"] == "worker_lost"
        await peer.close()
        again = client.http.post("/api/bot/join", json={"voiceOnly": True}).json()
        assert again["sessionId"] != join["sessionId"]
        peer2 = BotPeer(a.url, room["token"])
        await peer2.connect()
        await client.wait_for(lambda e: is_status("active")(e) and e["sessionId"] == again["sessionId"], 20,
                              "the new session is active on the surviving worker")
        assert client.http.get(f"/api/voice/sessions/{again['sessionId']}").json()["botWorkerId"] != holder
        await peer2.close()
        client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await client.close()
        workers[index] = await asyncio.to_thread(start_worker, a, "--pool-size", "1", "--worker-id", holder + "b")

    asyncio.run(scenario())


REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def _restart_redis() -> None:
    """Kill Redis and start it again, empty (as this machine runs it: no persistence)."""
    import subprocess

    def answers() -> bool:
        try:
            return bool(redis.Redis(port=6379, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True)
    wait_until(lambda: not answers(), 10, "redis to stop")
    subprocess.run(REDIS_START, check=True, capture_output=True)
    wait_until(answers, 10, "redis to come back")


def test_redis_restart_loses_nothing_and_clients_reconnect(production, tmp_path):
    """Redis dies mid-session and comes back empty (no groups, no streams, no channel state):
    the socket gets every event (the pub/sub layer subscribes again, the socket catches up from
    the database, or it reconnects with ?after=), and a join made after the restart still
    reaches a bot that answers."""
    a, b, workers = production
    question = speak_to_wav("What is the capital of France?", tmp_path / "q.wav")

    async def scenario() -> None:
        client = Client(b, "demo")
        await client.open_ws()
        room = client.http.post("/api/voice/room", json={}).json()
        earlier = Client(a, "demo")  # a socket that came and went: server a's layer connection is left idle
        await earlier.open_ws()
        await earlier.close()
        await asyncio.to_thread(_restart_redis)
        join = client.http.post("/api/bot/join", json={"voiceOnly": True})
        assert join.status_code == 202
        session_id = join.json()["sessionId"]
        await client.wait_for(lambda e: e["sessionId"] == session_id and e["type"] == "voice.session.start", 20,
                              "the join's event, across the restart")
        # A socket opened after the restart connects, on the server whose idle layer connection the
        # restart broke, and gets the session's events (before: a 500 at the handshake).
        reloaded = Client(a, "demo")
        await reloaded.open_ws()
        peer = BotPeer(a.url, room["token"])
        await peer.connect()  # a worker claimed the job from the re-created stream
        await client.wait_for(lambda e: is_status("active")(e) and e["sessionId"] == session_id, 30, "active")
        peer.say_wav(str(question))
        await client.wait_for(is_final_transcript("assistant"), 40, "an answer after the restart")
        await reloaded.wait_for(is_final_transcript("assistant"), 40, "the answer, on the socket opened after it")
        await reloaded.close()
        await peer.close()
        client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await client.wait_for(lambda e: e["type"] == "voice.session.end" and e["sessionId"] == session_id, 30,
                              "the session's end")
        stored = a.manage("shell", "-c", "from voicesessions.models import SessionEvent as V; print(sorted(V.objects"
                          f".filter(session_id='{session_id}').values_list('id', flat=True)))").strip().splitlines()[-1]
        received = sorted({e["id"] for e in client.events if e.get("sessionId") == session_id})
        assert stored == str(received), f"stored {stored}, received {received}"
        await client.close()

    try:
        asyncio.run(scenario())
    finally:
        try:
            redis.Redis(port=6379).ping()
        except redis.ConnectionError:
            _restart_redis()
