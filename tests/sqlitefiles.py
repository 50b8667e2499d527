"""A SQLite file in WAL mode, as the embedded default keeps its database, and another process's commit
to it: for the tests of what watches that file (the queue's wait, the event relay)."""
from __future__ import annotations

import sqlite3


def wal_database(path: str) -> None:
    db = sqlite3.connect(path)  # closed here, not whenever it is collected (its close writes the files)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT)")
        db.commit()
    finally:
        db.close()


def commit_a_row(path: str) -> None:
    """Another process's commit (a job enqueued, an event stored): a connection of its own."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("INSERT INTO rows (payload) VALUES ('row')")
        db.commit()
    finally:
        db.close()
