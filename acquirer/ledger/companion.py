"""Companion stores: SQLite files whose writes ride on the ledger writer's group commit.

The card vault and the issuer simulator each wrote one SQLite transaction per sale on
the event loop: a BEGIN and a COMMIT (a WAL append) per request, on the host's busiest
thread. A companion instead keeps ONE transaction open across requests; each change is
a savepoint inside it, visible at once to the same connection (the next decision reads
the balance the last one left). `LedgerWriter` calls `flush()` on its companions after
it has gathered a group and before it commits the group's units, so

    every unit the ledger commits had its companion writes committed first.

A response leaves only after its unit is durable, hence only after the vault row and
the issuer decision it depends on are committed too; a killed host loses only
companion writes whose units were not committed either (those requests got no answer
and are reversed or resent). Companions keep their own `synchronous` setting: their
COMMIT is a WAL append, the fsync that makes a response durable is the ledger's.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class GroupedWrites:
    """One connection, one open write transaction, flushed by the ledger writer's thread."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock | None = None,
                 on_begin: Callable[[], None] | None = None):
        if conn.isolation_level is not None:
            raise ValueError("a companion connection must be in autocommit mode (isolation_level=None)")
        self.conn = conn
        self.lock = lock or threading.RLock()
        self.on_begin = on_begin  # runs after each BEGIN: what other connections wrote is visible from here
        self.flushes = 0

    def _begin(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")  # takes the write lock before anything is read
            if self.on_begin is not None:
                self.on_begin()

    @contextmanager
    def change(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing change (a savepoint) inside the open transaction."""
        with self.lock:
            conn = self.conn
            self._begin()
            conn.execute("SAVEPOINT change")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO change")
                    conn.execute("RELEASE change")
                raise
            conn.execute("RELEASE change")

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        """One statement inside the open transaction (a statement is all-or-nothing by itself)."""
        with self.lock:
            self._begin()
            return self.conn.execute(sql, params)

    def flush(self) -> None:
        """Commit everything changed so far (called by the ledger writer before each group)."""
        with self.lock:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")
                self.flushes += 1


class CompanionStore:
    """What the companion stores (the card vault, the issuer's accounts, the fence store)
    share: one connection and its lock, the grouped writes (None: each change is its own
    transaction), a close that commits what is pending first, and forgetting what they
    keep in memory when another connection wrote the file (PRAGMA data_version moved).
    A subclass opens `_db`, `_lock` and `_grouped`, and says what `_forget` drops."""

    _db: sqlite3.Connection
    _lock: threading.RLock
    _grouped: GroupedWrites | None = None
    _closed = False
    _seen_version: int | None = None

    def _forget(self) -> None:
        """Drop what is kept in memory: it may be stale."""

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen_version:
            self._forget()
            self._seen_version = version

    def flush(self) -> None:
        """Commit the pending changes (grouped: the ledger writer calls this before each group)."""
        if self._grouped is not None:
            self._grouped.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:  # closing twice is harmless, as sqlite3's close is
                return
            self.flush()
            self._db.close()
            self._closed = True
