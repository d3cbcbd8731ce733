"""The host ledger: an append-only journal of every state change, the transactions
projected from it, de-duplicated responses, batches and settlement.

    store = SQLiteLedger("ledger.db")         # the storage interface is LedgerStore
    writer = LedgerWriter(store)              # group commit: many units, one fsync
    receipt = await writer.commit(unit)       # durable when it returns; then send the response

Layout: `model` (entries, transactions, the commit unit), `errors`, `store` (the
interface), `schema` + `sqlite` + `apply` + `projection` (SQLite), `writer` (group
commit), `settlement` (totals, batch upload, merchant fees).
"""
from .errors import (AlreadyAnswered, BatchNotOpen, DedupConflict, DuplicateTransaction, InvalidEntry, LedgerClosed,
                     LedgerError, LedgerUnavailable, OriginalNotFound, RefundExceedsRemaining, RefundNotAllowed,
                     Rejected, ReversedBeforeArrival, UnknownBatch, UnknownTransaction, VoidNotAllowed)
from .model import (SALE_KINDS, Channel, CommitUnit, Event, JournalEntry, JournalRecord, Receipt, ReversalOutcome,
                    Status, StoredResponse, Transaction, TxnKind, TxnRecord, request_digest, reversal_outcome,
                    txn_id_for)
from .settlement import (BatchClose, BatchItem, BatchRecord, BatchUpload, ChannelTotals, MerchantRate, MerchantReport,
                         MerchantReportRow, SettlementResult, Totals, TotalsDifference, UploadDifference,
                         UploadProblem)
from .sqlite import SQLiteLedger
from .store import BUSINESS_TZ, LedgerStore
from .writer import LedgerWriter

__all__ = [
    "AlreadyAnswered", "BatchNotOpen", "DedupConflict", "DuplicateTransaction", "InvalidEntry", "LedgerClosed",
    "LedgerError", "LedgerUnavailable", "OriginalNotFound", "RefundExceedsRemaining", "RefundNotAllowed", "Rejected",
    "ReversedBeforeArrival", "UnknownBatch", "UnknownTransaction", "VoidNotAllowed",
    "SALE_KINDS", "Channel", "CommitUnit", "Event", "JournalEntry", "JournalRecord", "Receipt", "ReversalOutcome",
    "Status", "StoredResponse", "Transaction", "TxnKind", "TxnRecord", "request_digest", "reversal_outcome",
    "txn_id_for",
    "BatchClose", "BatchItem", "BatchRecord", "BatchUpload", "ChannelTotals", "MerchantRate", "MerchantReport",
    "MerchantReportRow", "SettlementResult", "Totals", "TotalsDifference", "UploadDifference", "UploadProblem",
    "SQLiteLedger", "BUSINESS_TZ", "LedgerStore", "LedgerWriter",
]
