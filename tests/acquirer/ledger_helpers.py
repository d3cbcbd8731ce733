"""Small builders for ledger tests: records, units and a settable clock."""
from __future__ import annotations

import datetime as dt

from acquirer.ledger import (BUSINESS_TZ, Channel, CommitUnit, JournalEntry, StoredResponse, TxnKind, TxnRecord,
                             request_digest, txn_id_for)

TID = "T0000001"
MID = "898440358120001"
DAY = dt.date(2025, 11, 24)
KIND_OF = {Channel.CARD: TxnKind.SALE, Channel.QR: TxnKind.QR, Channel.FACE: TxnKind.FACE}


class Clock:
    """A host clock the test moves by hand; starts at 10:00 business time on DAY."""

    def __init__(self, day: dt.date = DAY, hour: int = 10):
        self.now = dt.datetime.combine(day, dt.time(hour), BUSINESS_TZ).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def record(store, stan: int, amount: int, *, channel: Channel = Channel.CARD, kind: TxnKind | None = None,
           tid: str = TID, mid: str = MID, batch: str | None = None, original: str | None = None,
           response_code: str = "00") -> TxnRecord:
    batch = batch or store.current_batch(tid)
    kind = kind or KIND_OF[channel]
    return TxnRecord(tid, mid, batch, f"{stan:06d}", kind, channel, amount, rrn=store.next_rrn(),
                     auth_code="A1B2C3" if response_code == "00" else "", response_code=response_code,
                     masked_pan="621234******1234" if channel is Channel.CARD else "",
                     pan_token="6299000000001234" if channel is Channel.CARD else "", original_txn_id=original)


def response_for(rec: TxnRecord, *, request: bytes | None = None, reversal: bool = False) -> StoredResponse:
    request = request if request is not None else f"{'0400' if reversal else '0200'}|{rec.stan}|{rec.amount}".encode()
    reply = f"reply {'reversal ' if reversal else ''}{rec.stan} {rec.rrn} {rec.response_code}".encode()
    return StoredResponse(rec.terminal_id, rec.batch, rec.stan, request_digest(request), reply, reversal)


def sale_unit(store, stan: int, amount: int, **kw) -> CommitUnit:
    rec = record(store, stan, amount, **kw)
    return CommitUnit((JournalEntry.authorised(rec),), response_for(rec))


def refund_unit(store, stan: int, amount: int, original: str, **kw) -> CommitUnit:
    rec = record(store, stan, amount, kind=TxnKind.REFUND, original=original, **kw)
    return CommitUnit((JournalEntry.refunded(rec),), response_for(rec))


def void_unit(store, stan: int, original: str, **kw) -> CommitUnit:
    orig = store.get(original)
    rec = record(store, stan, orig.amount, kind=TxnKind.VOID, original=original, channel=orig.channel, **kw)
    return CommitUnit((JournalEntry.voided(rec),), response_for(rec))


def decline_unit(store, stan: int, amount: int, code: str = "51", **kw) -> CommitUnit:
    rec = record(store, stan, amount, response_code=code, **kw)
    return CommitUnit((JournalEntry.declined(rec),), response_for(rec))


def reversal_unit(txn_id: str, *, request: bytes | None = None) -> CommitUnit:
    tid, batch, stan = txn_id.split(":")
    digest = request_digest(request if request is not None else f"0400|{stan}".encode())
    return CommitUnit((JournalEntry.reversed(txn_id, "no response from host"),),
                      StoredResponse(tid, batch, stan, digest, f"reversal ack {stan}".encode(), reversal=True))


def txn(store, stan: int, tid: str = TID, batch: str | None = None) -> str:
    return txn_id_for(tid, batch or store.current_batch(tid), f"{stan:06d}")
