"""A worker hands the memory its ended sessions freed back to the system (issue 14)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from voicebot.memory import release_freed_memory, resident_mib
start = resident_mib()
buffers = [bytearray(1024) for _ in range(200_000)]  # ~200 MiB in pieces malloc serves from its heap
peak = resident_mib()
del buffers
freed = resident_mib()
released = release_freed_memory()
print(json.dumps({"start": start, "peak": peak, "freed": freed, "released": released, "after": resident_mib()}))
"""


def test_memory_freed_by_the_heap_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout)
    assert rss["released"] is True
    assert rss["peak"] - rss["start"] > 150  # the pieces were resident...
    assert rss["freed"] - rss["start"] > 150  # ...and freeing them kept them so (glibc keeps its heap)
    assert rss["after"] - rss["start"] < 50, rss  # handed back


@pytest.mark.django_db
def test_the_worker_hands_memory_back_after_a_heartbeat_that_finds_sessions_ended(monkeypatch):
    from voicebot import worker as worker_module

    trims: list[int] = []
    monkeypatch.setattr(worker_module, "release_freed_memory", lambda: trims.append(1) or True)
    worker = worker_module.BotWorkerProcess(pool_size=4)
    worker.sessions = {"a": object(), "b": object()}
    asyncio.run(worker._release_memory())
    assert trims == []  # sessions started: nothing to hand back
    del worker.sessions["a"]
    asyncio.run(worker._release_memory())
    assert trims == [1]  # one ended
    asyncio.run(worker._release_memory())
    assert trims == [1]  # none ended since
