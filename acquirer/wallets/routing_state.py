"""What routing must remember across processes: the manual switch and the limit usage.

The `acquirer channel disable/enable` command runs in its own process while the host
routes in another; both open the same SQLite file (WAL), and the router reads the switch
before every decision, so an operator's switch takes effect on the next transaction.
Usage per channel and period (day, month) is kept here too, so limits survive a restart.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time

from acquirer.sqlite_tx import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS switch (channel TEXT PRIMARY KEY, disabled INTEGER NOT NULL, reason TEXT NOT NULL,
                                   actor TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS switch_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,
                                       action TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS usage (channel TEXT NOT NULL, period TEXT NOT NULL, amount INTEGER NOT NULL,
                                  count INTEGER NOT NULL, PRIMARY KEY (channel, period));
"""


class RoutingState:
    def __init__(self, path: str | os.PathLike = ":memory:"):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def disabled(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT channel, reason FROM switch WHERE disabled=1"))

    def set_switch(self, channel: str, disabled: bool, reason: str = "", actor: str = "operator",
                   at: float | None = None) -> None:
        at = time.time() if at is None else at
        with write_transaction(self._db, self._lock):
            self._db.execute("INSERT INTO switch VALUES (?,?,?,?,?) ON CONFLICT(channel) DO UPDATE SET "
                             "disabled=excluded.disabled, reason=excluded.reason, actor=excluded.actor, at=excluded.at",
                             (channel, int(disabled), reason, actor, at))
            self._db.execute("INSERT INTO switch_log (channel, action, reason, actor, at) VALUES (?,?,?,?,?)",
                             (channel, "disable" if disabled else "enable", reason, actor, at))

    def switch_log(self, channel: str | None = None) -> list[tuple]:
        with self._lock:
            sql = "SELECT seq, channel, action, reason, actor, at FROM switch_log"
            rows = self._db.execute(sql + (" WHERE channel=?" if channel else "") + " ORDER BY seq",
                                    (channel,) if channel else ())
            return list(rows)

    def add_usage(self, channel: str, periods: tuple[str, ...], amount: int) -> None:
        with write_transaction(self._db, self._lock):
            for period in periods:
                self._db.execute("INSERT INTO usage VALUES (?,?,?,1) ON CONFLICT(channel, period) DO UPDATE SET "
                                 "amount=amount+excluded.amount, count=count+1", (channel, period, amount))

    def usage(self, channel: str, period: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT amount FROM usage WHERE channel=? AND period=?", (channel, period)).fetchone()
            return row[0] if row else 0


def disable(state_path: str | os.PathLike, channel: str, reason: str = "", actor: str = "operator") -> None:
    """Take a channel out of routing until `enable` (the `acquirer channel disable` command)."""
    state = RoutingState(state_path)
    try:
        state.set_switch(channel, True, reason, actor)
    finally:
        state.close()


def enable(state_path: str | os.PathLike, channel: str, reason: str = "", actor: str = "operator") -> None:
    state = RoutingState(state_path)
    try:
        state.set_switch(channel, False, reason, actor)
    finally:
        state.close()
