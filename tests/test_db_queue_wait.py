"""The embedded queue's worker waits on the SQLite files instead of querying 20 times a second."""
from __future__ import annotations

import asyncio
import threading

from voicesessions import queue as queue_module
from voicesessions.queue import DatabaseBotJobQueue

from tests.sqlitefiles import commit_a_row, wal_database
from tests.waiting import await_until


def test_an_idle_worker_looks_again_only_after_a_commit(tmp_path, monkeypatch, settings):
    path = str(tmp_path / "db.sqlite3")
    wal_database(path)
    monkeypatch.setattr(queue_module, "_sqlite_files", lambda: [path, f"{path}-wal"])
    settings.VOICE_WORKER_JOB_WAIT_SECONDS = 120  # far longer than the test: only the commit can end the wait
    queue = DatabaseBotJobQueue()
    stats = {"n": 0}
    real_stamp = queue_module._file_stamp

    def counted_stamp(name: str) -> tuple[int, int]:
        stats["n"] += 1
        return real_stamp(name)

    monkeypatch.setattr(queue_module, "_file_stamp", counted_stamp)

    async def scenario() -> bool:
        assert await queue.wait_for_jobs(0.01) is True  # the first wait has nothing to compare with: look
        waiting = asyncio.create_task(queue.wait_for_jobs(0.01))
        # Still waiting after many looks at the files: nothing was written.
        await await_until(lambda: stats["n"] > 40, 30, "the worker to look at the files many times")
        assert not waiting.done()
        writer = threading.Thread(target=commit_a_row, args=(path,))
        writer.start()
        try:
            return await asyncio.wait_for(waiting, 60)
        finally:
            writer.join()

    assert asyncio.run(scenario()) is True


def test_with_nothing_written_the_wait_ends_at_its_limit(tmp_path, monkeypatch, settings):
    path = str(tmp_path / "db.sqlite3")
    wal_database(path)
    monkeypatch.setattr(queue_module, "_sqlite_files", lambda: [path, f"{path}-wal"])
    settings.VOICE_WORKER_JOB_WAIT_SECONDS = 0.1
    queue = DatabaseBotJobQueue()

    async def twice() -> tuple[bool, bool]:
        return await queue.wait_for_jobs(0.01), await queue.wait_for_jobs(0.01)

    assert asyncio.run(twice()) == (True, False)  # then the worker runs its claim query anyway


def test_a_database_that_is_not_a_sqlite_file_is_polled(monkeypatch, settings):
    monkeypatch.setattr(queue_module, "_sqlite_files", lambda: [])
    assert asyncio.run(DatabaseBotJobQueue().wait_for_jobs(0.01)) is False


def test_the_files_are_the_default_database_and_its_log(settings):
    settings.DATABASES = {**settings.DATABASES,
                          "default": {**settings.DATABASES["default"], "ENGINE": "django.db.backends.sqlite3",
                                      "NAME": "/var/lib/voice/db.sqlite3"}}
    assert queue_module._sqlite_files() == ["/var/lib/voice/db.sqlite3", "/var/lib/voice/db.sqlite3-wal"]
    settings.DATABASES["default"]["NAME"] = ":memory:"
    assert queue_module._sqlite_files() == []
    settings.DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
    settings.DATABASES["default"]["NAME"] = "voice"
    assert queue_module._sqlite_files() == []
