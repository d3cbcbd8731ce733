"""The storage interface of the host ledger: what any backend (SQLite today, PostgreSQL
later) must provide, and the settlement operations built on top of it.

A backend implements the abstract methods; `commit_many` must apply its units in ONE
durable transaction (that is what group commit relies on), each unit all-or-nothing,
and return for each unit either its `Receipt` or the `LedgerError` that refused it.
"""
from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import Iterable, Mapping, Sequence

from .errors import LedgerError, UnknownBatch, UnknownTransaction
from .model import Channel, CommitUnit, JournalRecord, Receipt, Transaction
from .settlement import (BatchClose, BatchItem, BatchRecord, MerchantRate, MerchantReport, SettlementResult, Totals,
                         UploadDifference, compare_items, compare_totals, items_of, merchant_rows, totals_of)

BUSINESS_TZ = dt.timezone(dt.timedelta(hours=8), "CST")  # China Standard Time has no daylight saving


class LedgerStore(ABC):
    """The host ledger. Reads may be called from any thread; writes are serialised by the store."""

    business_tz: dt.tzinfo = BUSINESS_TZ

    # --- de-duplication ---------------------------------------------------------------
    @abstractmethod
    def lookup_response(self, terminal_id: str, batch: str, stan: str, *,
                        reversal: bool = False) -> tuple[bytes, bytes] | None:
        """(request digest, exact response bytes) stored under the key, or None."""

    # --- transactions -----------------------------------------------------------------
    @abstractmethod
    def get(self, txn_id: str) -> Transaction | None: ...

    @abstractmethod
    def find_original(self, terminal_id: str, batch: str | None = None, stan: str | None = None,
                      rrn: str | None = None) -> Transaction | None:
        """By (batch, STAN), by STAN alone (the latest), or by RRN, within one terminal."""

    @abstractmethod
    def transactions(self, terminal_id: str | None = None, batch: str | None = None) -> list[Transaction]:
        """The projection, ordered by txn_id."""

    @abstractmethod
    def merchant_transactions(self, merchant_id: str, start: float, end: float) -> list[Transaction]:
        """A merchant's transactions created in [start, end) (epoch seconds)."""

    @abstractmethod
    def journal(self, txn_id: str | None = None, after_seq: int = 0) -> list[JournalRecord]:
        """Journal rows in sequence order; with txn_id, that transaction's and those naming it as original."""

    def remaining_refundable(self, txn_id: str) -> int:
        txn = self.get(txn_id)
        if txn is None:
            raise UnknownTransaction(txn_id)
        return txn.refundable

    # --- writing ----------------------------------------------------------------------
    @abstractmethod
    def commit_many(self, units: Sequence[CommitUnit], at: float | None = None) -> list[Receipt | LedgerError]:
        """Apply all units in one durable transaction; one result per unit, in order. `at`
        dates the group's entries (default: the store's clock, now)."""

    def commit(self, unit: CommitUnit) -> Receipt:
        """One unit, one durable transaction. Raises what refused it."""
        result = self.commit_many([unit])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    # --- batches ----------------------------------------------------------------------
    @abstractmethod
    def open_batch(self, terminal_id: str) -> str:
        """The terminal's open batch, opening the next one (6 digits) if none is open."""

    @abstractmethod
    def current_batch(self, terminal_id: str) -> str | None: ...

    @abstractmethod
    def batch(self, terminal_id: str, batch: str) -> BatchRecord | None: ...

    @abstractmethod
    def uploaded_items(self, terminal_id: str, batch: str) -> list[BatchItem]:
        """What the terminal has uploaded of this batch so far (0320 messages already committed)."""

    def close_batch(self, terminal_id: str, batch: str, terminal_totals: Totals | None = None,
                    differences: Sequence[UploadDifference] = ()) -> str:
        """Close the batch and open the next; returns the new batch number. The pipeline
        should rather put the `BatchClose` in the unit that carries its 0510/0330 response."""
        receipt = self.commit(CommitUnit(close=BatchClose(terminal_id, batch, terminal_totals, tuple(differences))))
        assert receipt.next_batch is not None
        return receipt.next_batch

    # --- reference numbers ------------------------------------------------------------
    @abstractmethod
    def next_rrn(self) -> str:
        """A retrieval reference number: 12 digits, unique for this ledger."""

    # --- settlement -------------------------------------------------------------------
    def totals(self, terminal_id: str, batch: str) -> Totals:
        if self.batch(terminal_id, batch) is None:
            raise UnknownBatch(terminal_id, batch)
        return totals_of(self.transactions(terminal_id, batch))

    def settle(self, terminal_id: str, batch: str, terminal_totals: Totals) -> SettlementResult:
        """Compare the terminal's totals with the ledger's. Reads only: the close goes in the unit."""
        return compare_totals(self.totals(terminal_id, batch), terminal_totals)

    def batch_upload(self, terminal_id: str, batch: str,
                     items: Iterable[BatchItem] = ()) -> tuple[UploadDifference, ...]:
        """Compare, item by item, what the terminal uploaded (stored so far plus `items`) with the ledger."""
        if self.batch(terminal_id, batch) is None:
            raise UnknownBatch(terminal_id, batch)
        terminal = [*self.uploaded_items(terminal_id, batch), *items]
        return compare_items(items_of(self.transactions(terminal_id, batch)), terminal)

    def merchant_report(self, merchant_id: str, day: dt.date,
                        rate: MerchantRate | Mapping[Channel, MerchantRate]) -> MerchantReport:
        """Per channel: sales and refunds created on `day` (business time zone) and the fee at `rate`."""
        start = dt.datetime.combine(day, dt.time(), self.business_tz).timestamp()
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.business_tz).timestamp()
        return MerchantReport(merchant_id, day, merchant_rows(self.merchant_transactions(merchant_id, start, end),
                                                             rate))

    # --- projection -------------------------------------------------------------------
    @abstractmethod
    def project_journal(self) -> list[Transaction]:
        """The transactions as the journal alone says they are (ordered by txn_id)."""

    @abstractmethod
    def rebuild_projection(self) -> int:
        """Replace the live projection with one rebuilt from the journal; returns the row count."""

    # --- lifecycle --------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
