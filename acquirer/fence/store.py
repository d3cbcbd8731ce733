"""Fences, the last accepted report per terminal, and alerts, on one SQLite file (WAL).

synchronous=NORMAL: a process crash loses nothing; a power cut may lose the last
counters written, which reopens a replay window only as long as the fix-age limit,
and spares the till a second fsync per transaction (the ledger's is the one that counts).

In the host the store is `grouped` (acquirer.ledger.companion): a counter advance is
a savepoint in a long transaction that the ledger writer commits before the units that
depend on it, and the host commits it before any response that no unit carries. A
crash then loses only advances of requests that got no answer. Fences and last fixes
are read on every sale; fences change rarely (maybe from another process: `acquirer
fence`). So both are kept in memory while `PRAGMA data_version` says no other
connection wrote: grouped, that is checked at each BEGIN of the long transaction (no
other connection can write while it is open); otherwise at every read of a fence.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass

from acquirer.ledger.companion import CompanionStore, GroupedWrites
from acquirer.sqlite_tx import write_transaction

from .geometry import Fence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fences (
    terminal_id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL, latitude REAL, longitude REAL,
    radius_m REAL NOT NULL, polygon TEXT NOT NULL, corridor TEXT NOT NULL, corridor_width_m REAL NOT NULL,
    cell_ids TEXT NOT NULL, mobile INTEGER NOT NULL, risk_grade TEXT NOT NULL,
    registered_at REAL NOT NULL, registered_by TEXT NOT NULL
);
-- the newest counter per terminal (replay), the last fix accepted as plausible (speed), and the
-- digest of the report that carried the newest counter if it was accepted (a payment may attach it again)
CREATE TABLE IF NOT EXISTS positions (
    terminal_id TEXT PRIMARY KEY, counter INTEGER NOT NULL, fix_time_ms INTEGER, latitude REAL, longitude REAL,
    accuracy_m REAL, updated_at REAL NOT NULL, report_digest BLOB
);
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, terminal_id TEXT NOT NULL, merchant_id TEXT NOT NULL,
    kind TEXT NOT NULL, reason TEXT NOT NULL, txn_id TEXT NOT NULL, counter INTEGER,
    latitude REAL, longitude REAL, distance_m REAL, offset_m REAL
);
CREATE INDEX IF NOT EXISTS alerts_merchant ON alerts (merchant_id, at);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, terminal_id TEXT NOT NULL,
    details TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class LastFix:
    counter: int
    fix_time_ms: int | None
    latitude: float | None
    longitude: float | None
    accuracy_m: float | None
    report_digest: bytes | None = None  # SM3 of the report that set `counter`, if it was accepted


@dataclass(frozen=True)
class Alert:
    seq: int
    at: float
    terminal_id: str
    merchant_id: str
    kind: str  # outside, missing, replay, forged, foreign, speed, stale, future, malformed, no-device-key
    reason: str
    txn_id: str
    counter: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    distance_m: float | None = None
    offset_m: float | None = None


@dataclass(frozen=True)
class ReviewEntry:
    merchant_id: str
    alerts: int
    terminals: int
    last_at: float
    kinds: dict[str, int]


_UNKNOWN = object()
_ADVANCE = ("INSERT INTO positions (terminal_id, counter, fix_time_ms, latitude, longitude, accuracy_m, updated_at,"
            " report_digest) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (terminal_id) DO UPDATE SET"
            " counter=excluded.counter, updated_at=excluded.updated_at, report_digest=excluded.report_digest")
_AND_FIX = (", fix_time_ms=excluded.fix_time_ms, latitude=excluded.latitude, longitude=excluded.longitude,"
            " accuracy_m=excluded.accuracy_m")


class FenceStore(CompanionStore):
    def __init__(self, path: str | os.PathLike, *, grouped: bool = False):
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if "report_digest" not in {r[1] for r in self._db.execute("PRAGMA table_info(positions)")}:
            self._db.execute("ALTER TABLE positions ADD COLUMN report_digest BLOB")  # stores from before it
        self._lock = threading.RLock()
        self._grouped = GroupedWrites(self._db, self._lock, on_begin=self._check_version) if grouped else None
        self._fences: dict[str, Fence | None] = {}
        self._positions: dict[str, LastFix | None] = {}  # grouped: as this connection has them

    # --- fences -------------------------------------------------------------------
    def save_fence(self, fence: Fence, actor: str, at: float) -> None:
        row = (fence.terminal_id, fence.merchant_id, fence.latitude, fence.longitude, fence.radius_m,
               json.dumps(fence.polygon), json.dumps(fence.corridor), fence.corridor_width_m,
               json.dumps(sorted(fence.cell_ids)), int(fence.mobile), fence.risk_grade, at, actor)
        with self._lock:
            self.flush()
            self._fences.pop(fence.terminal_id, None)
            with write_transaction(self._db) as db:
                db.execute("INSERT OR REPLACE INTO fences VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
                db.execute("INSERT INTO changes (at, actor, terminal_id, details) VALUES (?,?,?,?)",
                           (at, actor, fence.terminal_id, json.dumps(
                               {"site": [fence.latitude, fence.longitude], "radius_m": fence.radius_m,
                                "polygon": len(fence.polygon), "corridor": len(fence.corridor),
                                "mobile": fence.mobile, "risk_grade": fence.risk_grade})))

    def _forget(self) -> None:
        self._fences.clear()
        self._positions.clear()

    def fence(self, terminal_id: str) -> Fence | None:
        if self._grouped is not None:
            kept = self._fences.get(terminal_id, _UNKNOWN)
            if kept is not _UNKNOWN:
                return kept
        with self._lock:
            if self._grouped is None:
                self._check_version()
            if terminal_id in self._fences:
                return self._fences[terminal_id]
            row = self._db.execute("SELECT * FROM fences WHERE terminal_id=?", (terminal_id,)).fetchone()
            fence = None
            if row is not None:
                (tid, mid, lat, lon, radius, polygon, corridor, width, cells, mobile, grade, at, by) = row
                fence = Fence(tid, mid, lat, lon, radius, tuple(map(tuple, json.loads(polygon))),
                              tuple(map(tuple, json.loads(corridor))), width, frozenset(json.loads(cells)),
                              bool(mobile), grade, at, by)
            self._fences[terminal_id] = fence
            return fence

    def fences(self) -> list[Fence]:
        return [self.fence(r[0]) for r in self._db.execute("SELECT terminal_id FROM fences ORDER BY 1")]

    # --- the last report per terminal -----------------------------------------------
    def last_fix(self, terminal_id: str) -> LastFix | None:
        kept = self._positions.get(terminal_id, _UNKNOWN)
        if kept is not _UNKNOWN:
            return kept
        with self._lock:  # the same connection as the pending advances (grouped)
            row = self._db.execute("SELECT counter, fix_time_ms, latitude, longitude, accuracy_m, report_digest"
                                   " FROM positions WHERE terminal_id=?", (terminal_id,)).fetchone()
            last = LastFix(*row) if row else None
            if self._grouped is not None:
                self._positions[terminal_id] = last
        return last

    def advance(self, terminal_id: str, counter: int, at: float, fix: tuple | None = None,
                digest: bytes | None = None) -> bool:
        """Record `counter` (and the fix, if accepted as plausible) if it is above the last one;
        `digest` names the report if it was accepted (None: refused, never to be taken again).

        False when another report with this counter or a higher one got there first. One
        statement, guarded by the counter, so no savepoint is needed around it.
        """
        last = self.last_fix(terminal_id)
        if last is not None and last.counter >= counter:
            return False
        position = fix if fix is not None else (None,) * 4
        sql = (_ADVANCE if fix is None else _ADVANCE + _AND_FIX) + " WHERE positions.counter < excluded.counter"
        params = (terminal_id, counter, *position, at, digest)
        grouped = self._grouped
        with self._lock:
            if grouped is not None:
                cur = grouped.execute(sql, params)
            else:
                with write_transaction(self._db) as db:
                    cur = db.execute(sql, params)
            if cur.rowcount != 1:
                self._positions.pop(terminal_id, None)  # another connection got there first: read again
                return False
            if grouped is not None and fix is not None:  # what last_fix would now read
                self._positions[terminal_id] = LastFix(counter, *fix, digest)
            else:  # the kept fix is the row's own (rare: refusals and late fixes): read it again
                self._positions.pop(terminal_id, None)
            return True

    # --- alerts ---------------------------------------------------------------------
    def add_alert(self, at: float, terminal_id: str, merchant_id: str, kind: str, reason: str, txn_id: str = "",
                  counter: int | None = None, latitude: float | None = None, longitude: float | None = None,
                  distance_m: float | None = None, offset_m: float | None = None) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO alerts (at, terminal_id, merchant_id, kind, reason, txn_id, counter, latitude, longitude,"
                " distance_m, offset_m) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (at, terminal_id, merchant_id, kind, reason, txn_id, counter, latitude, longitude, distance_m,
                 offset_m))
            return cur.lastrowid

    def alerts(self, *, merchant_id: str | None = None, terminal_id: str | None = None, since: float = 0.0,
               limit: int = 100) -> list[Alert]:
        where, args = ["at >= ?"], [since]
        if merchant_id:
            where.append("merchant_id = ?")
            args.append(merchant_id)
        if terminal_id:
            where.append("terminal_id = ?")
            args.append(terminal_id)
        rows = self._db.execute(f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                                (*args, limit))
        return [Alert(*r) for r in rows]

    def for_review(self, since: float, threshold: int) -> list[ReviewEntry]:
        """Merchants with `threshold` alerts or more since `since`, most alerts first."""
        rows = self._db.execute(
            "SELECT merchant_id, kind, COUNT(*), MAX(at) FROM alerts WHERE at >= ? GROUP BY merchant_id, kind",
            (since,)).fetchall()
        merged: dict[str, dict] = {}
        for mid, kind, n, last in rows:
            m = merged.setdefault(mid, {"alerts": 0, "last": 0.0, "kinds": {}})
            m["alerts"] += n
            m["last"] = max(m["last"], last)
            m["kinds"][kind] = n
        terminals = dict(self._db.execute("SELECT merchant_id, COUNT(DISTINCT terminal_id) FROM alerts WHERE at >= ?"
                                          " GROUP BY merchant_id", (since,)).fetchall())
        out = [ReviewEntry(mid, m["alerts"], terminals.get(mid, 0), m["last"], m["kinds"])
               for mid, m in merged.items() if m["alerts"] >= threshold]
        return sorted(out, key=lambda e: (-e.alerts, e.merchant_id))
