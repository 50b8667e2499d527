"""The embedded event relay queries the event table only after a commit (voicesessions/relay.py)."""
from __future__ import annotations

import asyncio
from typing import Any

from voicesessions import relay

from tests.sqlitefiles import commit_a_row, wal_database
from tests.waiting import await_until


def test_the_watch_sees_each_commit_of_another_connection_and_nothing_else(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    wal_database(path)
    commits = relay.Commits(path)
    assert commits.since_last_look() is True  # the first look has nothing to compare with
    assert commits.since_last_look() is False
    commit_a_row(path)
    assert commits.since_last_look() is True
    assert commits.since_last_look() is False
    commit_a_row(path)
    commit_a_row(path)
    assert commits.since_last_look() is True


class _Watch:
    """A stand-in for Commits: `commit()` is another process's commit."""

    def __init__(self) -> None:
        self.version, self.seen = 0, None
        self.looks = 0

    def commit(self) -> None:
        self.version += 1

    def since_last_look(self) -> bool:
        self.looks += 1
        changed, self.seen = self.version != self.seen, self.version
        return changed


def test_the_relay_reads_after_a_commit_only_and_reads_a_full_batch_on(monkeypatch, settings):
    settings.VOICE_EVENT_DELIVERY = "relay"
    settings.VOICE_EVENT_RELAY_INTERVAL = 0.001
    watch = _Watch()
    rows: list[dict[str, Any]] = []
    queries: list[int] = []
    sent: list[int] = []

    async def after(cursor: int) -> list[dict[str, Any]]:
        queries.append(cursor)
        return [r for r in rows if r["id"] > cursor][:relay.BATCH]

    async def latest() -> int:
        return 0

    class Layer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append(message["event"]["id"])

    monkeypatch.setattr(relay, "_after", after)
    monkeypatch.setattr(relay, "_latest_id", latest)
    monkeypatch.setattr(relay, "_commits", lambda: watch)
    monkeypatch.setattr(relay, "get_channel_layer", lambda: Layer())

    def store(n: int) -> None:
        start = len(rows)
        rows.extend({"id": start + i + 1, "userId": 7} for i in range(n))
        watch.commit()

    async def scenario() -> None:
        task = asyncio.create_task(relay._run())
        try:
            await await_until(lambda: watch.looks > 50, 30, "the relay to look for commits many times")
            idle_queries = len(queries)
            assert idle_queries <= 2  # the start's reads, and none while nothing is committed
            store(3)
            await await_until(lambda: sent == [1, 2, 3], 30, "the three events to be relayed")
            store(relay.BATCH + 2)  # one commit, more rows than a read takes
            await await_until(lambda: len(sent) == relay.BATCH + 5, 30, "the whole batch and the rest")
            looks = watch.looks
            await await_until(lambda: watch.looks > looks + 50, 30, "many more looks")
            assert len(queries) == idle_queries + 3  # one read per commit, plus one for the full batch
            assert sent == list(range(1, relay.BATCH + 6))
        finally:
            task.cancel()

    asyncio.run(scenario())
