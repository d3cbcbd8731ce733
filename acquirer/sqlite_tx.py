"""The one way the acquirer's SQLite stores write a unit atomically."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager, nullcontext
from typing import Iterator


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.Lock | threading.RLock | None = None
                      ) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock is taken before anything is read), COMMIT when the
    block ends, ROLLBACK when the block or the COMMIT raises: a failed write leaves nothing
    behind and the connection ready for the next one. `db` is in autocommit mode
    (isolation_level=None); `lock`, when given, is held throughout (the store's own lock)."""
    with lock if lock is not None else nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
