"""The terminal's own record of what it did: history for the cashier, totals for settlement.

Only masked card data, amounts and references; kept in the same SQLite file as the
online session's state and reversal queue (WAL, synchronous FULL).
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, batch TEXT NOT NULL, stan TEXT NOT NULL,
    kind TEXT NOT NULL, channel TEXT NOT NULL, amount INTEGER NOT NULL, masked TEXT NOT NULL DEFAULT '',
    rrn TEXT NOT NULL DEFAULT '', auth_code TEXT NOT NULL DEFAULT '', code TEXT NOT NULL, text TEXT NOT NULL DEFAULT '',
    original_id INTEGER, voided INTEGER NOT NULL DEFAULT 0, refunded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_batch ON history (batch);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL
);
"""
# Host answers that are the risk engine's or the fence's, shown on the alerts screen
RISK_CODES = {"G1": "fence", "59": "risk", "61": "risk", "62": "risk", "58": "risk", "65": "risk", "1A": "step-up"}
CHANNELS = {"card": "CD", "qr": "QR", "face": "FC"}


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    batch: str
    stan: str
    kind: str  # sale / void / refund
    channel: str  # card / qr / face
    amount: int
    masked: str  # masked PAN, or wallet and masked code
    rrn: str
    auth_code: str
    code: str
    text: str
    original_id: int | None
    voided: bool
    refunded: int

    @property
    def approved(self) -> bool:
        return self.code == "00"

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded if self.kind == "sale" and self.approved and not self.voided else 0

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))


@dataclass(frozen=True)
class Alert:
    at: float
    kind: str  # fence, location, risk, step-up
    text: str

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))


class Journal:
    def __init__(self, path: str | os.PathLike):
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, *, batch: str, stan: str, kind: str, channel: str, amount: int, code: str, masked: str = "",
               rrn: str = "", auth_code: str = "", text: str = "", original: Entry | None = None) -> Entry:
        with self._db:  # COMMIT at the end; ROLLBACK if a statement fails, leaving the connection usable
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT INTO history (at, batch, stan, kind, channel, amount, masked, rrn, auth_code, code, text,"
                " original_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (time.time(), batch, stan, kind, channel, amount, masked, rrn, auth_code, code, text[:99],
                 original.id if original else None))
            if original is not None and code == "00":
                if kind == "void":
                    self._db.execute("UPDATE history SET voided=1 WHERE id=?", (original.id,))
                elif kind == "refund":
                    self._db.execute("UPDATE history SET refunded=refunded+? WHERE id=?", (amount, original.id))
        return self.get(cur.lastrowid)

    def note_alert(self, kind: str, text: str) -> None:
        """Something the cashier or a supervisor should see later: a refusal outside the
        fence, a lost fix, the host's verdict on a location report."""
        self._db.execute("INSERT INTO alerts (at, kind, text) VALUES (?,?,?)", (time.time(), kind, text[:200]))

    def alerts(self, limit: int = 50) -> list[Alert]:
        """The terminal's own alerts and the payments the host's risk step or fence refused,
        newest first."""
        own = [Alert(at, kind, text) for at, kind, text in self._db.execute(
            "SELECT at, kind, text FROM alerts ORDER BY id DESC LIMIT ?", (limit,))]
        marks = ",".join("?" * len(RISK_CODES))
        refused = [Alert(e.at, RISK_CODES[e.code], f"{e.kind} CNY {e.amount / 100:,.2f} {e.channel} {e.masked}: "
                         f"{e.code} {e.text}".replace("  ", " "))
                   for e in map(_entry, self._db.execute(
                       f"SELECT * FROM history WHERE code IN ({marks}) ORDER BY id DESC LIMIT ?",
                       (*RISK_CODES, limit)))]
        return sorted(own + refused, key=lambda a: a.at, reverse=True)[:limit]

    def get(self, entry_id: int) -> Entry:
        row = self._db.execute("SELECT * FROM history WHERE id=?", (entry_id,)).fetchone()
        return _entry(row)

    def entries(self, search: str = "", batch: str | None = None, limit: int = 200) -> list[Entry]:
        q = "SELECT * FROM history WHERE 1=1"
        args: list = []
        if batch:
            q += " AND batch=?"
            args.append(batch)
        if search:
            q += " AND (stan LIKE ? OR rrn LIKE ? OR masked LIKE ? OR kind LIKE ? OR channel LIKE ? OR amount=?)"
            like = f"%{search}%"
            amount = int(round(float(search) * 100)) if _is_number(search) else -1
            args += [like, like, like, like, like, amount]
        rows = self._db.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_entry(r) for r in rows]

    def totals(self, batch: str) -> dict[str, tuple[int, int, int, int]]:
        """Per channel: approved sales (not voided) and refunds of the batch, as field 48 wants."""
        out = {code: [0, 0, 0, 0] for code in CHANNELS.values()}
        for e in self.entries(batch=batch, limit=100000):
            if not e.approved:
                continue
            t = out[CHANNELS[e.channel]]
            if e.kind == "sale" and not e.voided:
                t[0] += 1
                t[1] += e.amount
            elif e.kind == "refund":
                t[2] += 1
                t[3] += e.amount
        return {k: tuple(v) for k, v in out.items()}

    def upload_items(self, batch: str) -> list[tuple[str, str, str, int, str]]:
        """What the host should have for this batch (approved, standing), for a batch upload."""
        items = []
        for e in reversed(self.entries(batch=batch, limit=100000)):
            if e.approved and e.kind in ("sale", "refund") and not e.voided:
                kind = {"card": "sale", "qr": "qr", "face": "face"}[e.channel] if e.kind == "sale" else "refund"
                items.append((e.stan, kind, CHANNELS[e.channel], e.amount, e.rrn))
        return items


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _entry(row) -> Entry:
    (id_, at, batch, stan, kind, channel, amount, masked, rrn, auth, code, text, original_id, voided,
     refunded) = row
    return Entry(id_, at, batch, stan, kind, channel, amount, masked, rrn, auth, code, text, original_id,
                 bool(voided), refunded)
