"""Applying one commit unit inside an open SQLite transaction: the ledger's rules.

Every check reads through the writer connection, so it sees the units applied before
it in the same group commit: two refunds racing for the last amount meet here, one
after the other, and the second is refused. A refused unit raises; the caller undoes
it so nothing of it stays (the group's transaction rolled back, then each unit applied
again in a savepoint of its own: `SQLiteLedger._apply_groups`).

These statements are most of the ledger process's work per sale, so a creating entry
is journaled and projected from its record (no details dict, no generic JSON encoder:
`TxnRecord.details_json`, `projection.project_created`), and the reads that may refuse
it are one query (`_ARRIVAL`). Plain units (a sale, a decline: `rows`) do better still:
a run of them is one executemany per table (`apply_plain`), their checks folded into the
journal's insert.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Mapping, Sequence

from . import projection
from .errors import (AlreadyAnswered, BatchNotOpen, DedupConflict, DuplicateTransaction, InvalidEntry,
                     OriginalNotFound, RefundExceedsRemaining, RefundNotAllowed, ReversedBeforeArrival, UnknownBatch,
                     VoidNotAllowed)
from .model import (CommitUnit, Event, JournalEntry, Receipt, ReversalOutcome, Status, StoredResponse,
                    details_dumps as dumps, reversal_outcome)
from .rows import entry_details
from .settlement import BatchClose, BatchUpload, difference_json, totals_of


def apply_unit(conn: sqlite3.Connection, unit: CommitUnit, at: float, *, probe: bool = True) -> Receipt:
    """`probe=False`: a new transaction's id is not looked up first; the projection's primary
    key refuses one that exists (an IntegrityError, not `DuplicateTransaction`: only for a
    caller that then applies the unit again with probes, `SQLiteLedger._apply_groups`)."""
    seqs: list[int] = []
    reversals: dict[str, ReversalOutcome] = {}
    if unit.response is not None:
        store_response(conn, unit.response, at)
    for entry in unit.entries:
        if entry.event is Event.REVERSED:
            txn = projection.load(conn, entry.txn_id)
            outcome = reversal_outcome(txn)
            reversals[entry.txn_id] = outcome
            if outcome is not ReversalOutcome.REVERSED:
                continue  # idempotent: a second reversal journals nothing
            assert txn is not None
            seqs.append(journal(conn, Event.REVERSED, entry.txn_id, txn.amount, at, txn.original_txn_id,
                                entry.journal_details()))
        elif entry.event is Event.SETTLED:
            raise InvalidEntry("event", "SETTLED is journaled by closing the batch, not by the pipeline")
        else:
            check_new(conn, entry, probe=probe)
            seqs.append(journal_created(conn, entry, at))
    if unit.upload is not None:
        store_upload(conn, unit.upload, at)
    next_batch = close_batch(conn, unit.close, at, seqs) if unit.close is not None else None
    return Receipt(tuple(seqs), reversals, next_batch)


# A plain unit's statements (`rows`), each run by one executemany for a run of plain units.
# Its entries are journaled only where `check_new` would let them in (no reversal of their
# STAN already answered; their batch open, unless declined): where it would not, the details
# are NULL, which the journal's NOT NULL refuses (an IntegrityError: the caller applies the
# group again unit by unit). A one-row INSERT ... VALUES, not INSERT ... SELECT WHERE: an
# INSERT from a SELECT may write several rows, so SQLite opens a statement journal (a
# savepoint) for every row it runs. seq is given, counted on from the journal's last.
_PLAIN_RESPONSE = ("INSERT INTO responses (terminal_id, batch, stan, reversal, request_digest, response, at) "
                   "VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT DO NOTHING")
_PLAIN_JOURNAL = ("INSERT INTO journal (seq, txn_id, event, amount, at, original_txn_id, details) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN NOT EXISTS (SELECT 1 FROM responses WHERE terminal_id = ?8 "
                  "AND batch = ?9 AND stan = ?10 AND reversal = 1) AND (?3 = 'DECLINED' OR EXISTS (SELECT 1 FROM "
                  "batches WHERE terminal_id = ?8 AND batch = ?9 AND closed_at IS NULL)) THEN ?7 END)")
_CREATED = {event.value: status.value for event, status in projection.CREATED_STATUS.items()}  # by wire value


def apply_plain(conn: sqlite3.Connection, items: Sequence[tuple], at: float) -> list[tuple[int, ...]] | None:
    """Applies a run of plain units (`rows`): each one's journal seqs, or None if any unit
    would be refused or fails a key (the caller rolls back and applies the group unit by
    unit, for the refusals in their order). The same rows as `apply_unit` with probe=False
    writes, and the same seqs: plain units read nothing another one writes (`rows`)."""
    responses, journal_rows, txn_rows, seqs = [], [], [], []
    seq = conn.execute("SELECT max(seq) FROM journal").fetchone()[0] or 0
    for response, entries in items:
        if response is not None:
            responses.append((*response, at))
        first = seq + 1
        for e in entries:
            seq += 1
            (event, txn_id, amount, tid, mid, batch, stan, kind, channel, currency, rrn, auth, code, masked, token,
             orig, _) = e
            journal_rows.append((seq, txn_id, event, amount, at, orig, entry_details(e), tid, batch, stan))
            txn_rows.append((txn_id, tid, mid, batch, stan, rrn, auth, kind, channel, amount, currency,
                             _CREATED[event], 0, orig, code, masked, token, at, at))
        seqs.append(tuple(range(first, seq + 1)))
    try:
        if responses and conn.executemany(_PLAIN_RESPONSE, responses).rowcount != len(responses):
            return None  # a key answered already
        if journal_rows:
            conn.executemany(_PLAIN_JOURNAL, journal_rows)
            conn.executemany(projection.INSERT, txn_rows)
    except sqlite3.IntegrityError:  # an entry check_new refuses (details NULL), or a transaction that exists
        return None
    return seqs


_JOURNAL = "INSERT INTO journal (txn_id, event, amount, at, original_txn_id, details) VALUES (?, ?, ?, ?, ?, ?)"


def journal(conn: sqlite3.Connection, event: Event, txn_id: str, amount: int, at: float, original: str | None,
            details: Mapping[str, Any]) -> int:
    cur = conn.execute(_JOURNAL, (txn_id, event.value, amount, at, original, dumps(details)))
    projection.project(conn, event, txn_id, amount, at, details)
    return cur.lastrowid


def journal_created(conn: sqlite3.Connection, entry: JournalEntry, at: float) -> int:
    """`journal` of an entry that creates a transaction: the same row, the same projection."""
    rec = entry.record
    assert rec is not None
    cur = conn.execute(_JOURNAL, (entry.txn_id, entry.event.value, entry.amount, at, rec.original_txn_id,
                                  rec.details_json()))
    projection.project_created(conn, entry.event, entry.txn_id, entry.amount, at, rec)
    return cur.lastrowid


def store_response(conn: sqlite3.Connection, r: StoredResponse, at: float) -> None:
    key = (r.terminal_id, r.batch, r.stan, int(r.reversal))
    cur = conn.execute("INSERT INTO responses (terminal_id, batch, stan, reversal, request_digest, response, at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (*key, bytes(r.request_digest), bytes(r.response), at))
    if cur.rowcount == 1:
        return
    digest, response = conn.execute("SELECT request_digest, response FROM responses WHERE terminal_id = ? "
                                    "AND batch = ? AND stan = ? AND reversal = ?", key).fetchone()
    if digest == r.request_digest:
        raise AlreadyAnswered(response)
    raise DedupConflict(f"terminal {r.terminal_id} batch {r.batch} STAN {r.stan} was used by another request")


# whether the terminal reversed this STAN already; whether the batch is open (None: no such batch)
_ARRIVAL = ("SELECT EXISTS (SELECT 1 FROM responses WHERE terminal_id = ?1 AND batch = ?2 AND stan = ?3 "
            "AND reversal = 1), (SELECT closed_at IS NULL FROM batches WHERE terminal_id = ?1 AND batch = ?2)")


def check_new(conn: sqlite3.Connection, entry: JournalEntry, *, probe: bool = True) -> None:
    """Refuses a new transaction, in this order: it exists (unless `probe` is off: see
    `apply_unit`), its STAN was reversed before it arrived, its batch is not open (not
    asked of a decline), a refund or void its original does not allow."""
    rec = entry.record
    assert rec is not None
    if entry.txn_id != rec.txn_id:  # the classmethods make it so; the id ranges rely on it (projection.id_range)
        raise InvalidEntry("txn_id", "must be terminal:batch:stan of its record")
    if probe and conn.execute("SELECT 1 FROM transactions WHERE txn_id = ?", (entry.txn_id,)).fetchone():
        raise DuplicateTransaction(f"transaction {entry.txn_id} exists already")
    reversed_first, batch_open = conn.execute(_ARRIVAL, (rec.terminal_id, rec.batch, rec.stan)).fetchone()
    if reversed_first:
        raise ReversedBeforeArrival(f"the terminal reversed {entry.txn_id} before it arrived")
    if entry.event is Event.DECLINED:
        return  # a decline is kept whatever its batch: it moves no money
    if not batch_open:
        raise BatchNotOpen(f"batch {rec.batch} is not open for terminal {rec.terminal_id}")
    if entry.event is Event.REFUNDED:
        check_refund(conn, entry)
    elif entry.event is Event.VOIDED:
        check_void(conn, entry)


def check_refund(conn: sqlite3.Connection, entry: JournalEntry) -> None:
    rec = entry.record
    assert rec is not None and rec.original_txn_id is not None
    orig = projection.load(conn, rec.original_txn_id)
    if orig is None:
        raise OriginalNotFound(f"no original {rec.original_txn_id} to refund")
    if not orig.kind.is_sale:
        raise RefundNotAllowed(f"{orig.txn_id} is a {orig.kind.value}, not a sale")
    if orig.status not in (Status.APPROVED, Status.SETTLED):
        raise RefundNotAllowed(f"{orig.txn_id} is {orig.status.value}")
    if orig.merchant_id != rec.merchant_id:
        raise RefundNotAllowed(f"{orig.txn_id} belongs to another merchant")
    if orig.currency != rec.currency:
        raise RefundNotAllowed(f"{orig.txn_id} is in currency {orig.currency}")
    if rec.amount > orig.refundable:
        raise RefundExceedsRemaining(orig.txn_id, rec.amount, orig.refundable)


def check_void(conn: sqlite3.Connection, entry: JournalEntry) -> None:
    rec = entry.record
    assert rec is not None and rec.original_txn_id is not None
    orig = projection.load(conn, rec.original_txn_id)
    if orig is None:
        raise OriginalNotFound(f"no original {rec.original_txn_id} to void")
    if not orig.kind.is_sale:
        raise VoidNotAllowed(f"{orig.txn_id} is a {orig.kind.value}; only sales can be voided")
    if orig.terminal_id != rec.terminal_id or orig.batch != rec.batch:
        raise VoidNotAllowed(f"{orig.txn_id} is not in this terminal's open batch {rec.batch}")
    if orig.status is not Status.APPROVED:
        raise VoidNotAllowed(f"{orig.txn_id} is {orig.status.value}")
    if orig.refunded_amount:
        raise VoidNotAllowed(f"{orig.txn_id} has refunds against it")
    if rec.amount != orig.amount:
        raise VoidNotAllowed(f"a void must name the original amount {orig.amount}, not {rec.amount}")


def store_upload(conn: sqlite3.Connection, upload: BatchUpload, at: float) -> None:
    if conn.execute("SELECT 1 FROM batches WHERE terminal_id = ? AND batch = ?",
                    (upload.terminal_id, upload.batch)).fetchone() is None:
        raise UnknownBatch(upload.terminal_id, upload.batch)
    conn.executemany(
        "INSERT INTO batch_uploads (terminal_id, batch, stan, kind, channel, amount, rrn, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_id, batch, stan) DO UPDATE SET kind = excluded.kind, "
        "channel = excluded.channel, amount = excluded.amount, rrn = excluded.rrn, at = excluded.at",
        [(upload.terminal_id, upload.batch, i.stan, i.kind.value, i.channel.value, i.amount, i.rrn, at)
         for i in upload.items])


def open_next_batch(conn: sqlite3.Connection, terminal_id: str, at: float) -> str:
    row = conn.execute("SELECT batch FROM batches WHERE terminal_id = ? ORDER BY rowid DESC LIMIT 1",
                       (terminal_id,)).fetchone()
    batch = f"{int(row[0]) % 999_999 + 1:06d}" if row else "000001"
    conn.execute("INSERT INTO batches (terminal_id, batch, opened_at) VALUES (?, ?, ?)", (terminal_id, batch, at))
    return batch


def close_batch(conn: sqlite3.Connection, close: BatchClose, at: float, seqs: list[int]) -> str:
    row = conn.execute("SELECT closed_at FROM batches WHERE terminal_id = ? AND batch = ?",
                       (close.terminal_id, close.batch)).fetchone()
    if row is None:
        raise UnknownBatch(close.terminal_id, close.batch)
    if row[0] is not None:
        raise BatchNotOpen(f"batch {close.batch} of terminal {close.terminal_id} is closed already")
    txns = [projection.row_to_txn(r) for r in conn.execute(
        f"{projection.SELECT_TXN} WHERE txn_id > ? AND txn_id < ? AND terminal_id = ? AND batch = ? ORDER BY txn_id",
        (*projection.id_range(close.terminal_id, close.batch), close.terminal_id, close.batch))]
    host = totals_of(txns)
    for t in txns:
        if t.status is Status.APPROVED:
            seqs.append(journal(conn, Event.SETTLED, t.txn_id, t.amount, at, t.original_txn_id,
                                {"batch": close.batch}))
    balanced = None if close.terminal_totals is None else int(host == close.terminal_totals)
    conn.execute("UPDATE batches SET closed_at = ?, host_totals = ?, terminal_totals = ?, balanced = ?, "
                 "differences = ? WHERE terminal_id = ? AND batch = ?",
                 (at, dumps(host.to_json()),
                  None if close.terminal_totals is None else dumps(close.terminal_totals.to_json()), balanced,
                  dumps([difference_json(d) for d in close.differences]), close.terminal_id, close.batch))
    return open_next_batch(conn, close.terminal_id, at)
