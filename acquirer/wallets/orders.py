"""The QR channel's own order book: which route an order took and where it stands.

It is written before a wallet is called, so a retried request (same order id) goes to
the same provider and is answered from here, never sent as a second payment; a host
restart finds orders whose outcome was unknown and resolves them. Payment codes are
never stored, only their SM3, to tell a retry from a different payment.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .reconcile import HostRecord


class OrderState(str, enum.Enum):
    SENT = "SENT"  # asked the wallet; no final answer yet
    USER_PAYING = "USER_PAYING"
    WAITING = "WAITING"  # merchant QR shown, not paid yet
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CLOSED = "CLOSED"
    REVERSED = "REVERSED"
    REVERSAL_PENDING = "REVERSAL_PENDING"  # must be reversed, the wallet has not confirmed it yet

    @property
    def final(self) -> bool:
        return self in (OrderState.SUCCESS, OrderState.FAILED, OrderState.CLOSED, OrderState.REVERSED)


@dataclass
class QROrder:
    order_id: str
    kind: str  # micropay (customer code) or precreate (merchant QR)
    wallet: str
    provider: str
    amount: int
    merchant_id: str
    terminal_id: str
    code_digest: str = ""
    state: OrderState = OrderState.SENT
    response_code: str = ""
    text: str = ""
    wallet_txn_id: str = ""
    code_url: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class QRRefund:
    refund_id: str
    order_id: str
    amount: int
    state: str = "SENT"  # SENT, SUCCESS or FAILED
    response_code: str = ""
    text: str = ""
    wallet_refund_id: str = ""
    created_at: float = 0.0


_ORDER_COLUMNS = [f.name for f in dataclasses.fields(QROrder)]
_REFUND_COLUMNS = [f.name for f in dataclasses.fields(QRRefund)]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS qr_orders ({", ".join(c + (" TEXT PRIMARY KEY" if c == "order_id" else "")
                                                  for c in _ORDER_COLUMNS)});
CREATE TABLE IF NOT EXISTS qr_refunds ({", ".join(c + (" TEXT PRIMARY KEY" if c == "refund_id" else "")
                                                   for c in _REFUND_COLUMNS)});
CREATE INDEX IF NOT EXISTS qr_orders_state ON qr_orders (state);
"""


class QROrderBook:
    def __init__(self, path: str | os.PathLike = ":memory:", clock=time.time):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # the route is durable before the wallet is called
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.clock = clock

    def close(self) -> None:
        self._db.close()

    def get(self, order_id: str) -> QROrder | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM qr_orders WHERE order_id=?",
                                   (order_id,)).fetchone()
        if row is None:
            return None
        order = QROrder(*row)
        order.state = OrderState(order.state)
        return order

    def put(self, order: QROrder) -> QROrder:
        order.updated_at = self.clock()
        order.created_at = order.created_at or order.updated_at
        values = [getattr(order, c) for c in _ORDER_COLUMNS]
        values[_ORDER_COLUMNS.index("state")] = order.state.value
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO qr_orders VALUES ({', '.join('?' * len(values))})", values)
        return order

    def in_state(self, *states: OrderState) -> list[QROrder]:
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                f"SELECT order_id FROM qr_orders WHERE state IN ({', '.join('?' * len(states))})",
                [s.value for s in states])]
        return [self.get(i) for i in ids]

    def get_refund(self, refund_id: str) -> QRRefund | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_REFUND_COLUMNS)} FROM qr_refunds WHERE refund_id=?",
                                   (refund_id,)).fetchone()
        return QRRefund(*row) if row else None

    def put_refund(self, refund: QRRefund) -> QRRefund:
        refund.created_at = refund.created_at or self.clock()
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO qr_refunds VALUES ({', '.join('?' * len(_REFUND_COLUMNS))})",
                             [getattr(refund, c) for c in _REFUND_COLUMNS])
        return refund

    def refunded(self, order_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM qr_refunds WHERE order_id=? AND state=?",
                                   (order_id, "SUCCESS")).fetchone()
        return row[0]

    def host_records(self) -> list[HostRecord]:
        """The book as ledger rows, for demos and tests (the host passes its own ledger)."""
        with self._lock:
            orders = list(self._db.execute("SELECT order_id, amount, state FROM qr_orders"))
            refunds = list(self._db.execute("SELECT order_id, amount, refund_id FROM qr_refunds WHERE state='SUCCESS'"))
        return ([HostRecord(o, a, s) for o, a, s in orders] +
                [HostRecord(o, a, "REFUND", r) for o, a, r in refunds])


class OrderGate:
    """Per order id: one request at a time, and a wake-up for a poll when a notify settles it.

    Locks go away with their last user and events when the order settles, so a long-running
    host does not keep one per order it ever saw.
    """

    def __init__(self):
        self._locks: dict[str, list] = {}  # order id -> [lock, users]
        self._events: dict[str, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def lock(self, order_id: str):
        entry = self._locks.setdefault(order_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[order_id]

    def settle(self, order_id: str) -> None:
        if order_id in self._events:
            self._events.pop(order_id).set()

    async def nap(self, order_id: str, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """`sleep(seconds)`, cut short when the order is settled meanwhile."""
        event = self._events.setdefault(order_id, asyncio.Event())
        sleeper, waiter = asyncio.ensure_future(sleep(seconds)), asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                task.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
