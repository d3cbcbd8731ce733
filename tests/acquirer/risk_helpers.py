"""A decision store whose file takes no writes, for the tests of what the store and the
engine do then: another connection holds the write lock (a real SQLite lock, as a second
writer or a stuck process would), and the store's writes give up after 20 ms."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager

from acquirer.risk import DecisionStore


@contextmanager
def writes_held(store: DecisionStore):
    """Inside the block every batch the store tries to write fails ("database is locked");
    when it ends the lock is let go and the file takes writes again."""
    store._w.execute("PRAGMA busy_timeout=20")
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
