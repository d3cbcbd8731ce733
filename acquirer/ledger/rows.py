"""A plain unit: most commit units as flat rows, the way they cross the pipe and enter SQLite.

Nearly every unit is a plain one: a response kept for de-duplication (not a reversal's)
and entries that create a transaction as approved or declined (AUTHORISED, DECLINED).
Such a unit changes nothing another plain unit's checks read (no reversal response, no
batch opened or closed, no original touched), so a run of them can be applied with one
`executemany` per table instead of four statements per unit (`apply.apply_plain`).

Why rows, not the dataclasses: pickling a `CommitUnit` writes four objects' state dicts
and three enums rebuilt by a call each, and the ledger process then spends more time
loading them than inserting them. A plain unit crosses the pipe as two tuples of str,
int and bytes (`to_row`), and the ledger process builds its statement parameters
straight from them. Any other unit crosses as the `CommitUnit` itself, and a plain one
is made back into its `CommitUnit` (`to_unit`) for the rare group applied unit by unit.

A plain unit is (response, entries): response None or (terminal_id, batch, stan,
request_digest, response), entries a tuple of `ENTRY` rows, each with the record's
fields (`TxnRecord`) in that order after the event and the amount.
"""
from __future__ import annotations

from typing import Any

from .model import CommitUnit, Event, JournalEntry, Receipt, StoredResponse, TxnRecord, details_json_of

ENTRY = ("event", "txn_id", "amount", "terminal_id", "merchant_id", "batch", "stan", "kind", "channel", "currency",
         "rrn", "auth_code", "response_code", "masked_pan", "pan_token", "original_txn_id", "extra")
PLAIN_EVENTS = frozenset({Event.AUTHORISED, Event.DECLINED})
_EVENT = {e.value: e for e in Event}


def to_row(unit: CommitUnit) -> Any:
    """A plain unit's rows; any other unit (or object) as it is."""
    if type(unit) is not CommitUnit or unit.upload is not None or unit.close is not None:
        return unit
    r = unit.response
    if r is None:
        response = None
    elif r.reversal:
        return unit
    else:
        # bytearray: sqlite3 binds one as a blob straight away, bytes only after looking for an
        # adapter (about 1,400 instructions of the ledger process's a value, even with
        # process.bind_as_is); the pickle carries either as it is
        response = (r.terminal_id, r.batch, r.stan, bytearray(r.request_digest), bytearray(r.response))
    entries = []
    for e in unit.entries:
        rec = e.record
        if e.event not in PLAIN_EVENTS or rec is None or e.txn_id != rec.txn_id or e.amount != rec.amount:
            return unit  # refused (or applied) only by the rules, one unit at a time
        # `_value_`, not `value`: an enum's `value` is a property looked up through its class
        entries.append((e.event._value_, e.txn_id, e.amount, rec.terminal_id, rec.merchant_id, rec.batch, rec.stan,
                        rec.kind._value_, rec.channel._value_, rec.currency, rec.rrn, rec.auth_code,
                        rec.response_code, rec.masked_pan, rec.pan_token, rec.original_txn_id,
                        dict(rec.extra) if rec.extra else None))
    return response, tuple(entries)


def to_unit(item: Any) -> CommitUnit:
    """The `CommitUnit` a plain unit's rows came from (any other item is one already)."""
    if isinstance(item, CommitUnit):
        return item
    response, entries = item
    stored = None if response is None else StoredResponse(*response)
    return CommitUnit(tuple(JournalEntry(_EVENT[ev], txn_id, amount, TxnRecord(
        tid, mid, batch, stan, kind, channel, amount, currency, rrn, auth, code, masked, token, orig, extra or {}))
        for ev, txn_id, amount, tid, mid, batch, stan, kind, channel, currency, rrn, auth, code, masked, token, orig,
        extra in entries), stored)


def entry_details(row: tuple) -> str:
    """The journal's details text of an entry row: `TxnRecord.details_json` of its record."""
    (_, _, _, tid, mid, batch, stan, kind, channel, currency, rrn, auth, code, masked, token, orig, extra) = row
    return details_json_of(tid, mid, batch, stan, kind, channel, currency, rrn, auth, code, masked, token, orig,
                           extra or {})


def receipts(results: list) -> list:
    """The ledger process's answers as the callers get them: a plain unit's receipt crosses
    the pipe as its tuple of journal sequence numbers (`Receipt.seqs`)."""
    of_seqs = Receipt.of_seqs
    return [of_seqs(r) if type(r) is tuple else r for r in results]
