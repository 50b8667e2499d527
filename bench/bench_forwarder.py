"""What a session's events cost the worker: EventForwarder storing and pushing bursts of events.

Issue 14 found (py-spy) that after Pipecat's own media path, the worker's biggest cost of
ours is its events: per batch a session read, and per event an INSERT and a channel-layer
send in its own async_to_sync hop. This bench drives one EventForwarder the way a speaking
turn does (bursts of `--burst` events every 50 ms: levels, speaking, transcripts) against
the production stores, PostgreSQL and the channels-redis layer, and prints:

- CPU seconds of this process per 1,000 events (every thread: the forwarder's database
  thread included), and events/s;
- p50/p99 from an event's emit to its arrival on a channel-layer receiver of the user's
  group (what a websocket consumer would read);
- how many channel-layer messages carried them.

    .venv/bin/python bench/bench_forwarder.py [--events 3000] [--burst 8]

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (it makes and drops the
database `voice_bench_forwarder`, and uses Redis db 13).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "voice_bench_forwarder"


def setup() -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"], check=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB}"], check=True)
    os.environ.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}", REDIS_URL="redis://127.0.0.1:6379/13",
                      VOICE_EVENT_DELIVERY="layer", LOG_LEVEL="WARNING", SECRET_KEY="bench",
                      DJANGO_SETTINGS_MODULE="voiceproject.settings", VOICE_VAR_DIR="/tmp/voice-bench-forwarder")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


async def run(events: int, burst: int) -> dict[str, float]:
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer
    from django.contrib.auth.models import User

    from voicebot.forwarder import EventForwarder
    from voicesessions import rooms, sessions
    from voicesessions.events import user_group

    def make_session() -> tuple[int, str]:
        user = User.objects.create(username=f"bench{time.time_ns()}")
        room = rooms.get_or_create_room(user).room
        return user.pk, str(sessions.join_bot(user, room, assistant=None, params={"voiceOnly": True}).session.pk)

    user_id, session_id = await database_sync_to_async(make_session)()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(user_group(user_id), channel)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    received = {"events": 0, "messages": 0}

    async def receive() -> None:
        while received["events"] < events:
            message = await layer.receive(channel)
            batch = message.get("events") or [message["event"]]
            received["messages"] += 1
            now = time.perf_counter()
            for event in batch:
                seq = event["payload"].get("seq")
                if seq is not None:
                    received["events"] += 1
                    latencies.append((now - sent_at[seq]) * 1000)

    receiver = asyncio.ensure_future(receive())
    await asyncio.sleep(0.5)  # the receiver is listening
    forwarder = EventForwarder(session_id)
    cpu, wall = time.process_time(), time.perf_counter()
    for seq in range(events):
        sent_at[seq] = time.perf_counter()
        forwarder.emit("voice.audio.level", {"source": "bot", "level": 0.3, "seq": seq})
        if seq % burst == burst - 1:
            await asyncio.sleep(0.05)
    await forwarder.flush()
    await asyncio.wait_for(receiver, 60)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"events": events, "burst": burst, "cpu_s_per_1000": cpu / events * 1000, "events_per_s": events / wall,
            "latency_p50_ms": statistics.median(latencies), "latency_p99_ms": percentile(latencies, 99),
            "layer_messages": received["messages"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=8, help="events emitted together, every 50 ms")
    args = parser.parse_args()
    setup()
    result = asyncio.run(run(args.events, args.burst))
    print(f"{result['events']} events in bursts of {result['burst']} every 50 ms (PostgreSQL + channels-redis)")
    print(f"CPU {result['cpu_s_per_1000']:.3f} s per 1,000 events (this process, every thread); "
          f"{result['events_per_s']:.0f} events/s (paced)")
    print(f"emit -> on the user's group: p50 {result['latency_p50_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} ms; "
          f"{result['layer_messages']} channel-layer messages")
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"],
                   check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
