"""How one journal entry changes the `transactions` projection.

The same function runs when an entry is committed and when the projection is rebuilt
from the journal, so the two cannot disagree (a creating entry committed is projected
from its record, `project_created`, through the same `_create`). It reads nothing but
the projection itself and the entry (no clock, no other table).
"""
from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any, Mapping

from .model import Channel, Event, Status, Transaction, TxnKind, TxnRecord

COLUMNS = tuple(f.name for f in dataclasses.fields(Transaction))
SELECT_TXN = f"SELECT {', '.join(COLUMNS)} FROM transactions"
INSERT = f"INSERT INTO transactions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_AMOUNT, _ORIGINAL, _AT = (COLUMNS.index(c) for c in ("amount", "original_txn_id", "created_at"))
CREATED_STATUS = {Event.AUTHORISED: Status.APPROVED, Event.REFUNDED: Status.APPROVED,
                   Event.VOIDED: Status.APPROVED, Event.DECLINED: Status.DECLINED}


def id_range(terminal_id: str, batch: str | None = None) -> tuple[str, str]:
    """The bounds (both excluded) of the ids of a terminal's transactions, or of one of its
    batches': an id is "terminal:batch:stan" (`txn_id_for`; a terminal id has no ':') and
    ';' sorts right after ':'. `txn_id > ? AND txn_id < ?` is then a range of the primary key."""
    prefix = f"{terminal_id}:" if batch is None else f"{terminal_id}:{batch}:"
    return prefix, prefix[:-1] + ";"


def row_to_txn(row: tuple) -> Transaction:
    values = dict(zip(COLUMNS, row))
    values["kind"] = TxnKind(values["kind"])
    values["channel"] = Channel(values["channel"])
    values["status"] = Status(values["status"])
    return Transaction(**values)


def load(conn: sqlite3.Connection, txn_id: str) -> Transaction | None:
    row = conn.execute(f"{SELECT_TXN} WHERE txn_id = ?", (txn_id,)).fetchone()
    return row_to_txn(row) if row else None


def project(conn: sqlite3.Connection, event: Event, txn_id: str, amount: int, at: float,
            details: Mapping[str, Any]) -> None:
    if event in CREATED_STATUS:
        d = details
        _create(conn, event, (txn_id, d["terminal_id"], d["merchant_id"], d["batch"], d["stan"], d["rrn"],
                              d["auth_code"], d["kind"], d["channel"], amount, d["currency"],
                              CREATED_STATUS[event].value, 0, d["original_txn_id"], d["response_code"],
                              d["masked_pan"], d["pan_token"], at, at))
    elif event is Event.REVERSED:
        row = conn.execute("SELECT kind, original_txn_id, amount FROM transactions WHERE txn_id = ?",
                           (txn_id,)).fetchone()
        if row is None:
            raise ValueError(f"journal reverses unknown transaction {txn_id}")
        kind, original, own_amount = TxnKind(row[0]), row[1], row[2]
        conn.execute("UPDATE transactions SET status = ?, updated_at = ? WHERE txn_id = ?",
                     (Status.REVERSED.value, at, txn_id))
        if kind is TxnKind.REFUND:  # the refunded amount goes back to the sale
            conn.execute("UPDATE transactions SET refunded_amount = refunded_amount - ?, updated_at = ? "
                         "WHERE txn_id = ?", (own_amount, at, original))
        elif kind is TxnKind.VOID:  # the sale stands again
            conn.execute("UPDATE transactions SET status = ?, updated_at = ? WHERE txn_id = ?",
                         (Status.APPROVED.value, at, original))
    elif event is Event.SETTLED:
        conn.execute("UPDATE transactions SET status = ?, updated_at = ? WHERE txn_id = ?",
                     (Status.SETTLED.value, at, txn_id))
    else:  # pragma: no cover - Event is closed
        raise ValueError(f"unknown event {event}")


def project_created(conn: sqlite3.Connection, event: Event, txn_id: str, amount: int, at: float,
                    rec: TxnRecord) -> None:
    """`project` of a creating entry, read from its record instead of the journal's details
    (`TxnRecord.details()`: the same values under the same names)."""
    _create(conn, event, (txn_id, rec.terminal_id, rec.merchant_id, rec.batch, rec.stan, rec.rrn, rec.auth_code,
                          rec.kind.value, rec.channel.value, amount, rec.currency, CREATED_STATUS[event].value, 0,
                          rec.original_txn_id, rec.response_code, rec.masked_pan, rec.pan_token, at, at))


def _create(conn: sqlite3.Connection, event: Event, row: tuple) -> None:
    """A new transaction's row (in `COLUMNS` order), and what it does to its original."""
    conn.execute(INSERT, row)
    if event is Event.REFUNDED:
        conn.execute("UPDATE transactions SET refunded_amount = refunded_amount + ?, updated_at = ? "
                     "WHERE txn_id = ?", (row[_AMOUNT], row[_AT], row[_ORIGINAL]))
    elif event is Event.VOIDED:
        conn.execute("UPDATE transactions SET status = ?, updated_at = ? WHERE txn_id = ?",
                     (Status.VOIDED.value, row[_AT], row[_ORIGINAL]))
