"""Every risk decision with its reasons, and merchant freezes and settlement holds (SQLite, WAL).

Decisions are written in batches: every `flush_every` decisions, or when the oldest
waiting one is `flush_after_s` old (checked at each decision, and by a background
thread when traffic stops), and at `explain` and close. One commit per decision would
cost more than the decision itself. The thread that fills a batch encodes it (the
Python work: `codec`), and the background thread writes it, on a connection of its own:
SQLite's inserts and commit release the GIL, so on the host they run on the other core
while the event loop goes on deciding. `flush()` writes everything now, on the caller's
thread, after any batch the background thread is writing (batches are written in the
order they filled). A process crash loses at most what was not written yet (the batch
filling, and one being written): a few decisions missing from `risk explain` and from
the counters rebuilt at start. A batch the background thread cannot write stays first
in line and is tried again. Freezes and holds change what happens next, so they are
written at once.

What waits unwritten is capped (`max_unwritten` decisions, about a minute of the host's
full rate): past it the store is `backlogged` and keeps nothing more, and the engine then
declines every transaction (96) rather than approve one whose reasons could not be kept
(acquirer.risk.engine). Once the file takes writes again, the backlog is written in order
and decisions go on. Entering and leaving that state are logged as errors.

The background thread also checkpoints the WAL (autocheckpoint is off on the writing
connections): a checkpoint fsyncs, and that wait belongs off the request path.

Looking a decision up by transaction id goes through `decisions_by_txn`, which the
background thread brings up to date every `index_every_s` (5 s) in large sorted chunks
(`index_txns`) rather than an index on `decisions` maintained row by row: transaction
ids arrive in no order (terminal:batch:stan from many terminals), so such an index
dirtied one page per decision in every commit (about 4 KB of WAL per 300-byte row, half
the cost of the store). `decisions()` reads that table and scans the few rows written
since it was last brought up (`store_meta.txn_indexed_to`). The other index, on the
decision time, only ever grows at its end.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass

from .codec import encode_facts, encode_hits, facts_dict, hits_dicts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY, txn_id TEXT NOT NULL, at REAL NOT NULL,
    terminal_id TEXT NOT NULL, merchant_id TEXT NOT NULL, card_token TEXT NOT NULL,
    amount INTEGER NOT NULL, round INTEGER NOT NULL, action TEXT NOT NULL, code TEXT NOT NULL,
    text TEXT NOT NULL, ruleset TEXT NOT NULL, facts TEXT NOT NULL, hits TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
CREATE TABLE IF NOT EXISTS decisions_by_txn (
    txn_id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (txn_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO store_meta VALUES ('txn_indexed_to', 0);
CREATE TABLE IF NOT EXISTS holds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, merchant_id TEXT NOT NULL, kind TEXT NOT NULL,
    rule_id TEXT NOT NULL, txn_id TEXT NOT NULL, at REAL NOT NULL,
    released_at REAL, released_by TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS holds_active ON holds (merchant_id, kind) WHERE released_at IS NULL;
"""
# a store written before decisions_by_txn: its rows move into it, its per-row index goes
_MIGRATE = """
BEGIN;
INSERT OR IGNORE INTO decisions_by_txn SELECT txn_id, seq FROM decisions;
UPDATE store_meta SET value = (SELECT coalesce(max(seq), 0) FROM decisions) WHERE key = 'txn_indexed_to';
DROP INDEX decisions_txn;
COMMIT;
"""
_BY_TXN = ("SELECT * FROM decisions WHERE seq IN (SELECT seq FROM decisions_by_txn WHERE txn_id = :txn)"
           " UNION ALL SELECT * FROM decisions WHERE txn_id = :txn AND seq >"
           " (SELECT value FROM store_meta WHERE key = 'txn_indexed_to') ORDER BY seq")
FREEZE, HOLD = "freeze", "hold"
_INSERT = ("INSERT INTO decisions (txn_id, at, terminal_id, merchant_id, card_token, amount, round, action, code, text,"
           " ruleset, facts, hits) VALUES ")
_COLUMNS = 13
_ROW = "(" + ",".join("?" * _COLUMNS) + ")"
_ROWS_PER_INSERT = 64  # 832 parameters: below the 999 of SQLite builds before 3.32
MAX_UNWRITTEN = 200_000  # decisions waiting unwritten before the store refuses more (module docstring)
log = logging.getLogger("acquirer.risk")


@dataclass(frozen=True)
class StoredDecision:
    seq: int
    txn_id: str
    at: float
    terminal_id: str
    merchant_id: str
    card_token: str
    amount: int
    round: bool
    action: str
    code: str
    text: str
    ruleset: str
    facts: dict
    hits: list[dict]


@dataclass(frozen=True)
class Hold:
    merchant_id: str
    kind: str  # freeze or hold
    rule_id: str
    txn_id: str
    at: float


class DecisionStore:
    def __init__(self, path: str | os.PathLike, *, flush_every: int = 256, flush_after_s: float = 0.5,
                 checkpoint_every_s: float = 5.0, index_every_s: float = 5.0, monotonic=time.monotonic,
                 max_unwritten: int = MAX_UNWRITTEN):
        self.path = os.fspath(path)
        self._db = _connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'decisions_txn'").fetchone():
            try:
                self._db.executescript(_MIGRATE)
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        self._lock = threading.RLock()  # the main connection: reads, holds, the lookup table
        self._w = _connect(self.path)  # the decision batches' own connection
        self._write_lock = threading.Lock()  # the writing connection; batches go in the order they filled
        self._queue_lock = threading.Lock()  # the rows waiting and the batches ready
        self._pending: list[tuple] = []
        self._ready: deque[list] = deque()  # encoded batches (flat column values), oldest first
        self._first_pending = 0.0
        self._unwritten = 0  # decisions recorded and not yet written (pending and ready)
        self.max_unwritten = max_unwritten
        self.backlogged = False  # `max_unwritten` reached: nothing more is kept until the backlog is written
        self.refused = 0  # decisions not kept because the store was backlogged (since it opened)
        self._refused_before = 0  # `refused` when the store last became backlogged
        self.flush_every = flush_every
        self.flush_after_s = flush_after_s
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._wake = threading.Event()  # a batch is ready
        self._upkeep = threading.Thread(target=self._run_upkeep, args=(checkpoint_every_s, index_every_s),
                                        name="risk-store-upkeep", daemon=True)
        self._upkeep.start()

    # --- decisions ------------------------------------------------------------------
    def record(self, row: tuple) -> None:
        """`row`: txn_id, at, terminal, merchant, token, amount, round, action, code, text, ruleset, then the
        facts as `codec.capture` takes them, the facts' flags and the decision's hits (encoded with the batch)."""
        now = self._monotonic()
        with self._queue_lock:
            if self.backlogged:  # the engine declines meanwhile: this row is not kept
                self.refused += 1
                return
            pending = self._pending
            if not pending:
                self._first_pending = now
            pending.append(row)
            self._unwritten += 1
            if self._unwritten >= self.max_unwritten:
                self.backlogged, self._refused_before = True, self.refused
                log.error("risk decision store: %d decisions wait unwritten (%s): declining until they are written",
                          self._unwritten, self.path)
            if len(pending) < self.flush_every and now - self._first_pending < self.flush_after_s:
                return
            self._batch()
        self._wake.set()  # the background thread writes it

    def _batch(self) -> None:
        """The rows waiting, encoded into one batch of column values (call with `_queue_lock` held)."""
        values = []
        for r in self._pending:
            values += r[:11]
            values.append(encode_facts(r[11], r[12]))
            values.append(encode_hits(r[13]))
        self._ready.append(values)
        self._pending = []

    def flush(self) -> None:
        """Write every decision recorded so far, now, on this thread."""
        with self._queue_lock:
            if self._pending:
                self._batch()
        self._write_ready()

    def _write_ready(self) -> None:
        with self._write_lock:
            while True:
                with self._queue_lock:
                    if not self._ready:
                        return
                    values = self._ready[0]
                db = self._w
                db.execute("BEGIN")
                try:
                    # 64 rows per INSERT: one statement run instead of 64 (bind, step and reset each)
                    step = _ROWS_PER_INSERT * _COLUMNS
                    for i in range(0, len(values), step):
                        chunk = values[i:i + step]
                        db.execute(_INSERT + ",".join([_ROW] * (len(chunk) // _COLUMNS)), chunk)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise  # the batch stays first in line
                with self._queue_lock:
                    self._ready.popleft()
                    self._unwritten -= len(values) // _COLUMNS
                    if self.backlogged and self._unwritten < self.max_unwritten:
                        self.backlogged = False
                        log.error("risk decision store: the backlog is written (%d decisions refused meanwhile): "
                                  "deciding again", self.refused - self._refused_before)

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (the upkeep thread does it every `checkpoint_every_s`)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _run_upkeep(self, checkpoint_every_s: float, index_every_s: float) -> None:
        checkpointer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        next_checkpoint = self._monotonic() + checkpoint_every_s
        next_index = self._monotonic() + index_every_s
        try:
            while True:
                self._wake.wait(self.flush_after_s)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    if self._pending and self._monotonic() - self._first_pending >= self.flush_after_s:
                        self.flush()  # traffic stopped: what waits is written
                    else:
                        self._write_ready()
                    if self._monotonic() >= next_index:  # larger sorted chunks: fewer pages per row
                        next_index = self._monotonic() + index_every_s
                        self.index_txns()
                    if self._monotonic() >= next_checkpoint:
                        next_checkpoint = self._monotonic() + checkpoint_every_s
                        checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never blocks the writer
                except sqlite3.Error as exc:  # keep the rows; try again on the next round
                    log.error("risk decision store upkeep failed: %s", exc)
        finally:
            checkpointer.close()

    def index_txns(self, chunk: int = 2048) -> None:
        """Bring `decisions_by_txn` up to the last decision written, `chunk` rows per
        transaction (the lock is let go between them: a flush waits for one chunk at most)."""
        while True:
            with self._lock:
                low = self._db.execute("SELECT value FROM store_meta WHERE key = 'txn_indexed_to'").fetchone()[0]
                high = min(low + chunk, self._db.execute("SELECT coalesce(max(seq), 0) FROM decisions").fetchone()[0])
                if high <= low:
                    return
                self._db.execute("BEGIN")
                try:
                    self._db.execute("INSERT OR IGNORE INTO decisions_by_txn SELECT txn_id, seq FROM decisions"
                                     " WHERE seq > ? AND seq <= ?", (low, high))
                    self._db.execute("UPDATE store_meta SET value = max(value, ?) WHERE key = 'txn_indexed_to'",
                                     (high,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def decisions(self, txn_id: str) -> list[StoredDecision]:
        """Every decision on `txn_id`, oldest first (a transaction is normally decided once):
        through `decisions_by_txn`, and a scan of the rows written since it was last brought up."""
        self.flush()
        rows = self._db.execute(_BY_TXN, {"txn": txn_id}).fetchall()
        return [_decision(r) for r in rows]

    def since(self, at: float):
        """(at, terminal, merchant, token, amount, round, action) of decisions since `at`, oldest first."""
        self.flush()
        return self._db.execute("SELECT at, terminal_id, merchant_id, card_token, amount, round, action"
                                " FROM decisions WHERE at >= ? ORDER BY seq", (at,))

    def count(self) -> int:
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    # --- freezes and holds ------------------------------------------------------------
    def place_hold(self, merchant_id: str, kind: str, rule_id: str, txn_id: str, at: float) -> bool:
        """True if this started a hold; False if one of this kind was already in force."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO holds (merchant_id, kind, rule_id, txn_id, at)"
                                   " VALUES (?,?,?,?,?)", (merchant_id, kind, rule_id, txn_id, at))
            return cur.rowcount == 1

    def release(self, merchant_id: str, kind: str, by: str, at: float | None = None) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE holds SET released_at=?, released_by=? WHERE merchant_id=? AND kind=?"
                                   " AND released_at IS NULL",
                                   (time.time() if at is None else at, by, merchant_id, kind))
            return cur.rowcount == 1

    def holds(self, kind: str | None = None) -> list[Hold]:
        sql = "SELECT merchant_id, kind, rule_id, txn_id, at FROM holds WHERE released_at IS NULL"
        rows = self._db.execute(sql + (" AND kind=?" if kind else "") + " ORDER BY seq", (kind,) if kind else ())
        return [Hold(*r) for r in rows]

    def settlement_held(self, merchant_id: str) -> bool:
        """For settlement: pay this merchant out only when False."""
        return self._db.execute("SELECT 1 FROM holds WHERE merchant_id=? AND released_at IS NULL",
                                (merchant_id,)).fetchone() is not None

    def close(self) -> None:
        if self._stop.is_set():
            return  # closed already (a service stopped twice)
        self._stop.set()
        self._wake.set()
        self._upkeep.join(10)
        self.flush()
        self.index_txns()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._w.close()
        self._db.close()


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the upkeep thread checkpoints instead
    return db


def _decision(r: tuple) -> StoredDecision:
    return StoredDecision(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10], r[11],
                          facts_dict(r[12]), hits_dicts(r[13]))
