"""Face pay's SQLite file (WAL): customers, their sealed templates, and an audit trail.

This layer stores and counts; it never sees a clear template or passcode. Templates
arrive sealed by the HSM, passcodes as scrypt records (acquirer.face.passcode).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from acquirer.sqlite_tx import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    wallet_account TEXT NOT NULL,
    passcode TEXT NOT NULL,               -- scrypt record of the HSM-peppered passcode
    failures INTEGER NOT NULL DEFAULT 0,  -- wrong passcodes since the last right one
    locked_at REAL,                       -- set: face pay refused until an operator unlocks
    enrolled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(customer_id) ON DELETE CASCADE,
    model TEXT NOT NULL,                  -- face model id (hex): templates of two models never mix
    sealed BLOB NOT NULL,                 -- SM4-CBC under the HSM key host/FACE
    tag TEXT NOT NULL,                    -- HMAC-SM3 (HSM key host/FACE_MAC) over customer id and sealed
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_customer ON templates(customer_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    customer_id TEXT NOT NULL,
    event TEXT NOT NULL,                  -- enrolled, re-enrolled, passcode_failed, locked, unlocked, withdrawn
    operator TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
"""


class FaceStoreError(RuntimeError):
    """The store refuses an operation (unknown or duplicate customer)."""


@dataclass(frozen=True, repr=False)
class CustomerRecord:
    customer_id: str
    wallet_account: str
    passcode: str
    failures: int
    locked_at: float | None
    enrolled_at: float

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    def __repr__(self) -> str:  # the passcode record stays out of logs too
        return (f"<CustomerRecord {self.customer_id} wallet={self.wallet_account} failures={self.failures} "
                f"locked={self.locked}>")


class FaceStore:
    def __init__(self, path: str | os.PathLike, clock=time.time):
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise FaceStoreError(f"{self.path}: cannot use WAL mode (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")  # a failure count must survive a crash, or lockout is bypassed
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _event(self, customer_id: str, event: str, operator: str = "", detail: str = "") -> None:
        self._db.execute("INSERT INTO events (at, customer_id, event, operator, detail) VALUES (?,?,?,?,?)",
                         (self._clock(), customer_id, event, operator, detail))

    def put_customer(self, customer_id: str, wallet_account: str, passcode_record: str, model: str,
                     sealed_templates: list[tuple[bytes, str]], *, replace: bool, operator: str = "") -> None:
        """Enrol (or re-enrol with `replace`) in one transaction: all of it or nothing."""
        now = self._clock()
        with write_transaction(self._db, self._lock) as db:
            exists = db.execute("SELECT failures, locked_at FROM customers WHERE customer_id=?",
                                (customer_id,)).fetchone()
            if exists and not replace:
                raise FaceStoreError(f"customer {customer_id} is already enrolled (re-enrol with replace)")
            # a re-enrolment keeps the lock: unlocking is its own audited operator action
            failures, locked_at = exists or (0, None)
            db.execute("DELETE FROM customers WHERE customer_id=?", (customer_id,))
            db.execute("INSERT INTO customers (customer_id, wallet_account, passcode, failures, locked_at,"
                       " enrolled_at) VALUES (?,?,?,?,?,?)",
                       (customer_id, wallet_account, passcode_record, failures, locked_at, now))
            db.executemany("INSERT INTO templates (customer_id, model, sealed, tag, created_at) VALUES (?,?,?,?,?)",
                           [(customer_id, model, s, tag, now) for s, tag in sealed_templates])
            self._event(customer_id, "re-enrolled" if exists else "enrolled", operator,
                        f"{len(sealed_templates)} templates, wallet {wallet_account}")

    def customer(self, customer_id: str) -> CustomerRecord | None:
        with self._lock:
            row = self._db.execute("SELECT customer_id, wallet_account, passcode, failures, locked_at, enrolled_at "
                                   "FROM customers WHERE customer_id=?", (customer_id,)).fetchone()
        return CustomerRecord(*row) if row else None

    def customers(self) -> list[CustomerRecord]:
        with self._lock:
            rows = self._db.execute("SELECT customer_id, wallet_account, passcode, failures, locked_at, enrolled_at "
                                    "FROM customers ORDER BY customer_id").fetchall()
        return [CustomerRecord(*r) for r in rows]

    def templates(self) -> Iterator[tuple[int, str, str, bytes, str]]:
        """(row id, customer id, model id, sealed template, tag) for every stored template."""
        with self._lock:
            rows = self._db.execute("SELECT id, customer_id, model, sealed, tag FROM templates ORDER BY id").fetchall()
        yield from rows

    def record_failure(self, customer_id: str, max_failures: int) -> tuple[int, bool]:
        """Count a wrong passcode atomically; lock at `max_failures`. (failures, locked now)"""
        with write_transaction(self._db, self._lock) as db:
            row = db.execute("UPDATE customers SET failures = failures + 1 WHERE customer_id=? "
                             "RETURNING failures, locked_at", (customer_id,)).fetchone()
            if row is None:
                raise FaceStoreError(f"customer {customer_id} is not enrolled")
            failures, locked_at = row
            self._event(customer_id, "passcode_failed", detail=f"{failures} in a row")
            if failures >= max_failures and locked_at is None:
                locked_at = self._clock()
                db.execute("UPDATE customers SET locked_at=? WHERE customer_id=?", (locked_at, customer_id))
                self._event(customer_id, "locked", detail=f"{failures} wrong passcodes")
        return failures, locked_at is not None

    def reset_failures(self, customer_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE customers SET failures=0 WHERE customer_id=? AND failures<>0", (customer_id,))

    def unlock(self, customer_id: str, operator: str, reason: str = "") -> None:
        with self._lock:
            cur = self._db.execute("UPDATE customers SET failures=0, locked_at=NULL WHERE customer_id=?",
                                   (customer_id,))
            if cur.rowcount == 0:
                raise FaceStoreError(f"customer {customer_id} is not enrolled")
            self._event(customer_id, "unlocked", operator, reason)

    def delete(self, customer_id: str, operator: str, reason: str = "") -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM customers WHERE customer_id=?", (customer_id,))
            if cur.rowcount == 0:
                raise FaceStoreError(f"customer {customer_id} is not enrolled")
            self._event(customer_id, "withdrawn", operator, reason)

    def events(self, customer_id: str | None = None) -> list[tuple[float, str, str, str, str]]:
        sql = "SELECT at, customer_id, event, operator, detail FROM events"
        args: tuple = ()
        if customer_id is not None:
            sql, args = sql + " WHERE customer_id=?", (customer_id,)
        with self._lock:
            return self._db.execute(sql + " ORDER BY id", args).fetchall()
