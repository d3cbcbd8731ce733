"""What the ledger refuses, and why, in terms the pipeline can answer with.

A `Rejected` unit was not stored at all (its journal entries, its response and its
batch changes are rolled back together); `response_code` is the answer the pipeline
should give. `AlreadyAnswered` is not a failure: the same request was committed
before, and `response` is the exact reply to send again.
"""
from __future__ import annotations

from acquirer.protocol import ResponseCode


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    def __reduce__(self):
        # pickled as they are (the ledger process answers with them), whatever their __init__ takes
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls, args, state):
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class LedgerUnavailable(LedgerError):
    """The store could not make the unit durable (I/O error, disk full, closed): answer 96."""

    response_code = ResponseCode.SYSTEM_ERROR


class LedgerClosed(LedgerUnavailable):
    """The writer or the store has been closed; nothing more is accepted."""


class InvalidEntry(LedgerError, ValueError):
    """A record handed to the ledger is malformed; names the field and the reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownTransaction(LedgerError, LookupError):
    def __init__(self, txn_id: str):
        super().__init__(f"no transaction {txn_id!r}")
        self.txn_id = txn_id


class UnknownBatch(LedgerError, LookupError):
    def __init__(self, terminal_id: str, batch: str):
        super().__init__(f"terminal {terminal_id} has no batch {batch}")
        self.terminal_id = terminal_id
        self.batch = batch


class AlreadyAnswered(LedgerError):
    """The same request (same key, same digest) was committed before: replay `response`."""

    def __init__(self, response: bytes):
        super().__init__("request already answered; replay the stored response")
        self.response = response


class Rejected(LedgerError):
    """The unit breaks a ledger rule; nothing of it was stored."""

    response_code: ResponseCode = ResponseCode.INVALID_TRANSACTION

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DedupConflict(Rejected):
    """The de-duplication key was used before by a request with different content."""

    response_code = ResponseCode.DUPLICATE


class DuplicateTransaction(Rejected):
    """A journal entry would create a transaction id that already exists."""

    response_code = ResponseCode.DUPLICATE


class OriginalNotFound(Rejected):
    response_code = ResponseCode.ORIGINAL_NOT_FOUND


class RefundExceedsRemaining(Rejected):
    response_code = ResponseCode.ORIGINAL_AMOUNT_INCORRECT

    def __init__(self, txn_id: str, requested: int, remaining: int):
        super().__init__(f"refund of {requested} exceeds the {remaining} that remains of {txn_id}")
        self.txn_id = txn_id
        self.requested = requested
        self.remaining = remaining


class RefundNotAllowed(Rejected):
    """The original is not a refundable sale (declined, voided, reversed, a refund, another merchant)."""


class VoidNotAllowed(Rejected):
    """Voids are for an approved, unrefunded sale of the same terminal in its open batch."""


class BatchNotOpen(Rejected):
    """The terminal's request names a batch the host has not open: it should sign on again."""

    response_code = ResponseCode.SIGN_ON_AGAIN


class ReversedBeforeArrival(Rejected):
    """A reversal for this (terminal, batch, STAN) arrived before the request itself."""
