"""The host ledger on one SQLite file (schema and durability: `acquirer.ledger.schema`).

Two reads run on every request before anything else: the terminal's open batch, and
the de-duplication lookup. The ledger keeps both in memory for open batches, kept
true by its own writes (it is the one writer of its file): the open batch per
terminal, and the keys of the responses stored in each open batch, loaded once from
the file. A key absent there is absent from the file, so the lookup of a new STAN
costs no query; everything else (closed batches, known keys, a cache being loaded
while a write lands) asks SQLite. The file stays the truth: the writer's own checks
(`apply`) refuse a duplicate or a closed batch whatever a read said.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from typing import Callable, Sequence

from acquirer.sqlite_tx import write_transaction

from . import apply, projection, rows
from .errors import InvalidEntry, LedgerClosed, LedgerError, LedgerUnavailable
from .model import CommitUnit, Event, JournalRecord, Receipt, Transaction, txn_id_for
from .schema import SCHEMA, SCHEMA_VERSION, TRANSACTIONS_DDL, upgrade_events_check
from .settlement import BatchItem, BatchRecord, Totals
from .store import BUSINESS_TZ, LedgerStore

_UNKNOWN = object()  # not in a cache
RRN_PER_DAY = 10**8  # 12-digit RRN: YDDD (last year digit, day of year) + 8-digit sequence


class SQLiteLedger(LedgerStore):
    """WAL mode, synchronous=FULL, one writer connection guarded by a lock, one reader per thread."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.time,
                 business_tz: dt.tzinfo = BUSINESS_TZ, rrn_block: int = 10_000, writer_process: bool = False):
        """`writer_process`: group commits are applied by a child process (acquirer.ledger.
        process), so their statements do not wait for this interpreter's lock."""
        self.path = os.fspath(path)
        self.business_tz = business_tz
        self._clock = clock
        self._rrn_block = rrn_block
        self._closed = False
        self._write_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._rrn_lock = threading.Lock()
        self._rrn_day, self._rrn_next, self._rrn_end = "", 0, 0
        self._business_day = (0.0, 0.0, "")  # [start, end) of the last RRN's business day, and its YDDD
        self._cache_lock = threading.Lock()
        self._open_batches: dict[str, str | None] = {}  # terminal -> its open batch (None: none open)
        self._answered: dict[tuple[str, str], set[tuple[str, int]]] = {}  # (terminal, open batch) -> stored keys
        self._batches_gen = 0  # bumped by every write that opens or closes a batch
        self._answers_gen = 0  # bumped by every committed group that stored responses
        self._w = self._connect()
        self._w.executescript(SCHEMA)
        upgrade_events_check(self._w)
        self._w.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self._process = None
        if writer_process:  # imported here: `python -m acquirer.ledger.process` must not find it loaded
            from .process import LedgerProcess

            self._process = LedgerProcess(self.path)

    def _connect(self, *, reader: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise LedgerUnavailable(f"{self.path}: cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")  # COMMIT waits for the WAL fsync: durable before we answer
        conn.execute("PRAGMA busy_timeout=30000")
        if reader:
            conn.execute("PRAGMA query_only=ON")
        else:  # the statement journal that undoes a refused unit: past 64 KiB SQLite spills it to a temporary
            conn.execute("PRAGMA temp_store=MEMORY")  # file, a write() per page (tens of us per sale)
        return conn

    def _r(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerClosed("ledger is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(reader=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # --- de-duplication ---------------------------------------------------------------
    def lookup_response(self, terminal_id: str, batch: str, stan: str, *,
                        reversal: bool = False) -> tuple[bytes, bytes] | None:
        if self.current_batch(terminal_id) == batch:
            keys = self._answered_keys(terminal_id, batch)
            if keys is not None and (stan, int(reversal)) not in keys:
                return None  # never answered in the open batch (module docstring)
        return self.stored_response(terminal_id, batch, stan, reversal=reversal)

    def stored_response(self, terminal_id: str, batch: str, stan: str, *,
                        reversal: bool = False) -> tuple[bytes, bytes] | None:
        """What the file holds, whatever the caches say (a group whose answer never came)."""
        row = self._r().execute("SELECT request_digest, response FROM responses WHERE terminal_id = ? AND batch = ? "
                                "AND stan = ? AND reversal = ?", (terminal_id, batch, stan, int(reversal))).fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    # --- transactions -----------------------------------------------------------------
    def get(self, txn_id: str) -> Transaction | None:
        return projection.load(self._r(), txn_id)

    def find_original(self, terminal_id: str, batch: str | None = None, stan: str | None = None,
                      rrn: str | None = None) -> Transaction | None:
        if rrn:  # rrn <> '' lets SQLite use the partial index on rrn
            sql, args = "rrn = ? AND rrn <> '' AND terminal_id = ?", (rrn, terminal_id)
        elif stan and batch:
            sql, args = "txn_id = ?", (txn_id_for(terminal_id, batch, stan),)
        elif stan:
            sql, args = "txn_id > ? AND txn_id < ? AND terminal_id = ? AND stan = ?", (
                *projection.id_range(terminal_id), terminal_id, stan)
        else:
            raise InvalidEntry("original", "name a STAN (with or without its batch) or an RRN")
        row = self._r().execute(f"{projection.SELECT_TXN} WHERE {sql} ORDER BY created_at DESC LIMIT 1",
                                args).fetchone()
        return projection.row_to_txn(row) if row else None

    def transactions(self, terminal_id: str | None = None, batch: str | None = None) -> list[Transaction]:
        where, args = [], []
        if terminal_id is not None:
            where.append("txn_id > ? AND txn_id < ? AND terminal_id = ?")
            args += [*projection.id_range(terminal_id, batch), terminal_id]
        if batch is not None:
            where.append("batch = ?")
            args.append(batch)
        sql = projection.SELECT_TXN + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY txn_id"
        return [projection.row_to_txn(r) for r in self._r().execute(sql, args)]

    def merchant_transactions(self, merchant_id: str, start: float, end: float) -> list[Transaction]:
        rows = self._r().execute(f"{projection.SELECT_TXN} WHERE merchant_id = ? AND created_at >= ? "
                                 "AND created_at < ? ORDER BY txn_id", (merchant_id, start, end))
        return [projection.row_to_txn(r) for r in rows]

    def journal(self, txn_id: str | None = None, after_seq: int = 0) -> list[JournalRecord]:
        sql = "SELECT seq, txn_id, event, amount, at, details FROM journal WHERE seq > ?1"
        args: tuple = (after_seq,)
        if txn_id is not None:  # its entries and those on it as an original, each by an index (schema): the
            # one that creates it is the one dated as the projection says it was created
            sql += (" AND (txn_id = ?2 AND (at = (SELECT created_at FROM transactions WHERE txn_id = ?2) OR "
                    "event IN ('REVERSED', 'SETTLED')) OR original_txn_id = ?2)")
            args += (txn_id,)
        return [JournalRecord(s, t, Event(e), a, at, json.loads(d))
                for s, t, e, a, at, d in self._r().execute(sql + " ORDER BY seq", args)]

    # --- writing ----------------------------------------------------------------------
    def commit_many(self, units: Sequence[CommitUnit], at: float | None = None) -> list[Receipt | LedgerError]:
        """Apply a group in one transaction, durable when this returns; `at` dates its entries
        (default: now)."""
        at = self._clock() if at is None else at
        with self._write_lock:
            if self._closed:
                return [LedgerClosed("ledger is closed") for _ in units]
            if self._process is not None:
                try:
                    results = self._process.apply(units, at)
                except LedgerUnavailable as exc:
                    return [exc for _ in units]
            else:
                results = self.commit_here(units, at)
            self._remember(units, results)
            return results

    def commit_here(self, units: Sequence, at: float) -> list[Receipt | LedgerError]:
        """`commit_many` on this connection, leaving the read caches alone. `units` may be
        given as their rows (`rows.to_row`). The caller holds the write lock or is the only
        thread."""
        return rows.receipts(self.commit_rows([rows.to_row(u) for u in units], at))

    def commit_rows(self, items: Sequence, at: float) -> list:
        """`commit_here` of units as rows (`rows.to_row`), answered as the ledger process
        sends them back: a plain unit's receipt as its seqs (`rows.receipts` makes them
        Receipts). What the ledger process runs (nothing reads through its ledger)."""
        return self.commit_groups([(items, at)])[0]

    def commit_groups(self, groups: Sequence[tuple[Sequence, float]]) -> list[list]:
        """`commit_rows` of several groups, each (items, at), in ONE transaction and one
        fsync: what the ledger process does with groups that waited for it together. Each
        unit gets what it would get in a group of its own, as the groups are applied in
        their order; a storage failure refuses them all."""
        w = self._w
        try:
            w.execute("BEGIN IMMEDIATE")
            results = self._apply_groups(w, groups)
            w.execute("COMMIT")
        except Exception as exc:
            if w.in_transaction:
                w.execute("ROLLBACK")
            # every verdict was reached against state that is now gone, a replayed response
            # included: none may be answered but "system malfunction"
            return [[_unavailable(exc)] * len(items) for items, _ in groups]
        out, start = [], 0
        for items, _ in groups:
            out.append(results[start:start + len(items)])
            start += len(items)
        return out

    def _apply_groups(self, w: sqlite3.Connection, groups: Sequence[tuple[Sequence, float]]) -> list:
        # Most groups pass whole: applied with no savepoint, which would make SQLite copy every
        # page the group touches, without looking for an existing transaction first (its
        # primary key refuses a second one), and each run of plain units (`rows`) with one
        # statement per table. A unit refused, or any error: the transaction is rolled back
        # and the groups applied again, each unit in a savepoint of its own, with every check
        # in its order, so the refusals are the same as ever.
        try:
            results: list | None = []
            for items, at in groups:
                if (found := _apply_whole(w, items, at)) is None:
                    results = None
                    break
                results += found
            if results is not None:
                return results
        except Exception:
            if not w.in_transaction:  # SQLite gave up the whole transaction (I/O error, full disk)
                raise
        w.execute("ROLLBACK")
        w.execute("BEGIN IMMEDIATE")
        results = []
        for items, at in groups:
            for unit in map(rows.to_unit, items):
                w.execute("SAVEPOINT unit")
                try:
                    receipt = apply.apply_unit(w, unit, at)
                    w.execute("RELEASE unit")
                    results.append(receipt)
                except Exception as exc:  # this unit only: the others in the group still commit
                    if not w.in_transaction:  # SQLite gave up the whole transaction (I/O error, full disk)
                        raise
                    w.execute("ROLLBACK TO unit")
                    w.execute("RELEASE unit")
                    results.append(exc if isinstance(exc, LedgerError) else _unavailable(exc))
        return results

    def _write(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        """A small write of its own (batch opening, RRN blocks): one durable transaction."""
        with self._write_lock:
            if self._closed:
                raise LedgerClosed("ledger is closed")
            try:
                with write_transaction(self._w) as w:
                    return fn(w)
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc

    # --- batches ----------------------------------------------------------------------
    def open_batch(self, terminal_id: str) -> str:
        if not (isinstance(terminal_id, str) and 0 < len(terminal_id) <= 8 and ":" not in terminal_id):
            raise InvalidEntry("terminal_id", "must be 1-8 characters without ':'")

        def run(w: sqlite3.Connection) -> str:
            row = w.execute("SELECT batch FROM batches WHERE terminal_id = ? AND closed_at IS NULL",
                            (terminal_id,)).fetchone()
            return row[0] if row else apply.open_next_batch(w, terminal_id, self._clock())
        batch = self._write(run)
        with self._cache_lock:
            self._open_batches[terminal_id] = batch
            self._batches_gen += 1
        return batch  # type: ignore[return-value]

    def current_batch(self, terminal_id: str) -> str | None:
        # every request asks: the cache is read without its lock (a dict's get is atomic and its
        # writers hold the lock); only a miss takes the lock and goes on to fill it
        batch = self._open_batches.get(terminal_id, _UNKNOWN)
        if batch is not _UNKNOWN:
            return batch
        with self._cache_lock:
            gen = self._batches_gen
        row = self._r().execute("SELECT batch FROM batches WHERE terminal_id = ? AND closed_at IS NULL",
                                (terminal_id,)).fetchone()
        batch = row[0] if row else None
        with self._cache_lock:
            if gen == self._batches_gen:  # no batch opened or closed while we read: the answer is current
                self._open_batches[terminal_id] = batch
        return batch

    def _answered_keys(self, terminal_id: str, batch: str) -> set[tuple[str, int]] | None:
        """The (STAN, reversal) keys stored in this open batch; None if they cannot be known now."""
        keys = self._answered.get((terminal_id, batch))  # without the lock, as current_batch reads
        if keys is not None:
            return keys
        with self._cache_lock:
            gen = self._answers_gen, self._batches_gen
        found = self._r().execute("SELECT stan, reversal FROM responses WHERE terminal_id = ? AND batch = ?",
                                  (terminal_id, batch)).fetchall()
        with self._cache_lock:
            if gen != (self._answers_gen, self._batches_gen):
                return None  # a write landed meanwhile: ask SQLite this time
            keys = self._answered[(terminal_id, batch)] = {(stan, rev) for stan, rev in found}
        return keys

    def _remember(self, units: Sequence[CommitUnit], results: list) -> None:
        """After a COMMIT: what the group changed in the cached reads."""
        with self._cache_lock:
            for unit, result in zip(units, results):
                if isinstance(result, BaseException):
                    continue
                r = unit.response
                if r is not None:
                    keys = self._answered.get((r.terminal_id, r.batch))
                    if keys is not None:
                        keys.add((r.stan, int(r.reversal)))
                    self._answers_gen += 1
                if unit.close is not None:
                    self._answered.pop((unit.close.terminal_id, unit.close.batch), None)
                    self._open_batches[unit.close.terminal_id] = result.next_batch
                    self._batches_gen += 1

    def batch(self, terminal_id: str, batch: str) -> BatchRecord | None:
        row = self._r().execute("SELECT opened_at, closed_at, host_totals, terminal_totals, balanced, differences "
                                "FROM batches WHERE terminal_id = ? AND batch = ?", (terminal_id, batch)).fetchone()
        if row is None:
            return None
        opened, closed, host, term, balanced, diffs = row
        return BatchRecord(terminal_id, batch, opened, closed,
                           Totals.from_json(json.loads(host)) if host else None,
                           Totals.from_json(json.loads(term)) if term else None,
                           None if balanced is None else bool(balanced),
                           tuple(json.loads(diffs)) if diffs else ())

    def uploaded_items(self, terminal_id: str, batch: str) -> list[BatchItem]:
        rows = self._r().execute("SELECT stan, kind, channel, amount, rrn FROM batch_uploads WHERE terminal_id = ? "
                                 "AND batch = ? ORDER BY stan", (terminal_id, batch))
        return [BatchItem(*r) for r in rows]

    # --- reference numbers ------------------------------------------------------------
    def next_rrn(self) -> str:
        with self._rrn_lock:
            at = self._clock()
            start, end, day = self._business_day
            if not start <= at < end:  # formatted once a business day, not once a sale
                now = dt.datetime.fromtimestamp(at, self.business_tz)
                day = f"{now.year % 10}{now.timetuple().tm_yday:03d}"
                midnight = dt.datetime.combine(now.date(), dt.time(), self.business_tz)
                self._business_day = (midnight.timestamp(), (midnight + dt.timedelta(days=1)).timestamp(), day)
            if day != self._rrn_day or self._rrn_next >= self._rrn_end:
                self._rrn_next, self._rrn_end = self._reserve_rrns(day)
                self._rrn_day = day
            n = self._rrn_next
            self._rrn_next += 1
            return f"{day}{n:08d}"

    def _reserve_rrns(self, day: str) -> tuple[int, int]:
        """Reserves the next block durably, so a restart never hands out an RRN twice."""
        def run(w: sqlite3.Connection) -> tuple[int, int]:
            row = w.execute("SELECT value FROM sequences WHERE name = ?", (f"rrn:{day}",)).fetchone()
            start = row[0] if row else 1
            if start >= RRN_PER_DAY:
                raise LedgerUnavailable(f"all {RRN_PER_DAY - 1} RRNs of day {day} are used")
            end = min(start + self._rrn_block, RRN_PER_DAY)
            w.execute("INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                      "value = excluded.value", (f"rrn:{day}", end))
            return start, end
        return self._write(run)  # type: ignore[return-value]

    # --- projection -------------------------------------------------------------------
    def project_journal(self) -> list[Transaction]:
        mem = sqlite3.connect(":memory:", isolation_level=None)
        try:
            mem.executescript(TRANSACTIONS_DDL)
            mem.execute("BEGIN")
            _replay(self._r(), mem)
            mem.execute("COMMIT")
            return [projection.row_to_txn(r) for r in mem.execute(f"{projection.SELECT_TXN} ORDER BY txn_id")]
        finally:
            mem.close()

    def rebuild_projection(self) -> int:
        def run(w: sqlite3.Connection) -> int:
            w.execute("DELETE FROM transactions")
            _replay(w, w)
            return w.execute("SELECT count(*) FROM transactions").fetchone()[0]
        return self._write(run)  # type: ignore[return-value]

    # --- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            if self._process is not None:
                self._process.close()
            self._w.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


def _apply_whole(w: sqlite3.Connection, items: Sequence, at: float) -> list | None:
    """The group in its order, no unit refused: each run of plain units by `apply.apply_plain`,
    any other unit by `apply.apply_unit` with no probe. None (or an error) if one is refused."""
    results: list = []
    run: list = []
    for item in (*items, None):  # None: the end, where the last run is applied
        if type(item) is tuple:
            run.append(item)
            continue
        if run:
            if (seqs := apply.apply_plain(w, run, at)) is None:
                return None
            results += seqs
            run = []
        if item is not None:
            results.append(apply.apply_unit(w, item, at, probe=False))
    return results


def _replay(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    cur = source.execute("SELECT txn_id, event, amount, at, details FROM journal ORDER BY seq")
    while rows := cur.fetchmany(1000):
        for txn_id, event, amount, at, details in rows:
            projection.project(target, Event(event), txn_id, amount, at, json.loads(details))


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    err = LedgerUnavailable(f"ledger storage failed: {exc}")
    err.__cause__ = exc
    return err
