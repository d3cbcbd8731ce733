"""The ledger's vocabulary: transactions, journal entries and the unit the pipeline commits.

A request that changes money becomes one `JournalEntry`; the entry names the
transaction it creates or changes. The `Transaction` rows are only a projection of
the journal (see `acquirer.ledger.schema`). Card data never gets further than a
masked PAN and a PAN token: records refuse anything that looks like a full PAN.
"""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_str  # json.dumps' own string encoder (ensure_ascii)
from typing import TYPE_CHECKING, Any, Mapping

from acquirer.frozen import made
from acquirer.protocol import ProtocolError, mac_input
from keys.hashes import sm3

from .errors import InvalidEntry

if TYPE_CHECKING:
    from .settlement import BatchClose, BatchUpload


class Event(str, enum.Enum):
    AUTHORISED = "AUTHORISED"  # creates an approved sale-like transaction
    DECLINED = "DECLINED"  # creates a declined transaction of any kind
    REFUNDED = "REFUNDED"  # creates an approved refund; the original's refunded amount grows
    VOIDED = "VOIDED"  # creates an approved void; the original becomes voided
    REVERSED = "REVERSED"  # the named transaction is undone (and its effect on an original)
    SETTLED = "SETTLED"  # the named transaction's batch closed


class TxnKind(str, enum.Enum):
    SALE = "sale"  # card sale
    QR = "qr"  # customer-presented code, scanned by the merchant
    QR_MERCHANT = "qr_merchant"  # merchant-displayed code, paid by the customer
    FACE = "face"
    REFUND = "refund"
    VOID = "void"

    @property
    def is_sale(self) -> bool:
        return self in SALE_KINDS


SALE_KINDS = frozenset({TxnKind.SALE, TxnKind.QR, TxnKind.QR_MERCHANT, TxnKind.FACE})


class Channel(str, enum.Enum):
    """The settlement channel; the value is the code used in field 48 totals."""

    CARD = "CD"
    QR = "QR"
    FACE = "FC"


class Status(str, enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"
    VOIDED = "voided"
    REVERSED = "reversed"
    SETTLED = "settled"


class ReversalOutcome(str, enum.Enum):
    """What a reversal did; every case is acknowledged to the terminal, only REVERSED is journaled."""

    REVERSED = "reversed"
    ALREADY_REVERSED = "already reversed"
    NOT_FOUND = "original not found"
    ORIGINAL_DECLINED = "original was declined, nothing to undo"
    ORIGINAL_VOIDED = "original was voided, nothing to undo"
    ORIGINAL_REFUNDED = "original has refunds against it"
    SETTLED = "original is already settled"


_NO_EXTRA: Any = object()  # TxnRecord's extra not given: a new empty dict
_NEEDS_ORIGINAL = frozenset({TxnKind.REFUND, TxnKind.VOID})
_MASKED_PAN = re.compile(r"^\d{6}\*{3,9}\d{4}$")
_PAN_LIKE = re.compile(r"\d{13,19}")


def _require(cond: bool, name: str, reason: str) -> None:
    if not cond:
        raise InvalidEntry(name, reason)


def _digits(value: str, n: int, name: str) -> None:
    if not (isinstance(value, str) and len(value) == n and value.isdecimal()):
        raise InvalidEntry(name, f"must be {n} digits, got {value!r}")


def _no_card_data(value: Any, name: str) -> None:
    """Refuses a run of 13-19 digits anywhere in free-form data: it could be a PAN."""
    if isinstance(value, str):
        _require(not _PAN_LIKE.search(value), name, "looks like a full PAN; store only a masked PAN or a token")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _no_card_data(v, f"{name}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _no_card_data(v, f"{name}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        _no_card_data(str(value), name)


def details_dumps(value: Any) -> str:
    """The journal's JSON form of an entry's details (sorted keys, no spaces: one text per value)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def txn_id_for(terminal_id: str, batch: str, stan: str) -> str:
    """A transaction's id is its de-duplication key, so a retried request cannot make a second one."""
    return f"{terminal_id}:{batch}:{stan}"


def request_digest(message: bytes) -> bytes:
    """SM3 of an ISO8583 message (MTI onwards) without its MAC: what de-duplication compares."""
    try:
        body, _mac = mac_input(message)
    except ProtocolError:
        body = message
    return sm3(body)


@dataclass(frozen=True)
class TxnRecord:
    """The facts of a new transaction as the pipeline knows them when it answers."""

    terminal_id: str
    merchant_id: str
    batch: str
    stan: str
    kind: TxnKind
    channel: Channel
    amount: int  # fen
    currency: str = "156"
    rrn: str = ""
    auth_code: str = ""
    response_code: str = "00"
    masked_pan: str = ""
    pan_token: str = ""  # the token that stands for the PAN; may be PAN-shaped by design
    original_txn_id: str | None = None  # refunds and voids
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. wallet order id; never card data

    def __init__(self, terminal_id: str, merchant_id: str, batch: str, stan: str, kind: TxnKind, channel: Channel,
                 amount: int, currency: str = "156", rrn: str = "", auth_code: str = "", response_code: str = "00",
                 masked_pan: str = "", pan_token: str = "", original_txn_id: str | None = None,
                 extra: Mapping[str, Any] = _NO_EXTRA):  # type: ignore[assignment]
        # Written out, not the dataclass's (which sets each of the 15 fields through
        # object.__setattr__ and then calls __post_init__): the event loop builds a record
        # for every sale. The checks are one test that a well-formed record passes; one that
        # fails it goes through `_explain`, the checks one by one, which raises the first
        # that fails (or nothing: the one test is stricter, e.g. a str subclass).
        if type(kind) is not TxnKind:
            kind = TxnKind(kind)
        if type(channel) is not Channel:
            channel = Channel(channel)
        if extra is _NO_EXTRA:
            extra = {}
        object.__setattr__(self, "__dict__", {
            "terminal_id": terminal_id, "merchant_id": merchant_id, "batch": batch, "stan": stan, "kind": kind,
            "channel": channel, "amount": amount, "currency": currency, "rrn": rrn, "auth_code": auth_code,
            "response_code": response_code, "masked_pan": masked_pan, "pan_token": pan_token,
            "original_txn_id": original_txn_id, "extra": extra})
        if not (type(terminal_id) is str and 0 < len(terminal_id) <= 8 and ":" not in terminal_id
                and type(merchant_id) is str and 0 < len(merchant_id) <= 15
                and type(batch) is str and len(batch) == 6 and batch.isdecimal()
                and type(stan) is str and len(stan) == 6 and stan.isdecimal()
                and type(amount) is int and 0 <= amount < 1_000_000_000_000
                and type(currency) is str and len(currency) == 3 and currency.isdecimal()
                and type(rrn) is str and (rrn == "" or (len(rrn) == 12 and rrn.isascii()))
                and type(auth_code) is str and len(auth_code) <= 6
                and type(response_code) is str and len(response_code) == 2
                and type(masked_pan) is str and (masked_pan == "" or _MASKED_PAN.match(masked_pan) is not None)
                and type(pan_token) is str and len(pan_token) <= 64
                and (kind in _NEEDS_ORIGINAL) == (original_txn_id is not None)):
            self._explain()
        if type(extra) is not dict or extra:  # card sales carry none
            _no_card_data(dict(extra), "extra")
            try:
                json.dumps(dict(extra))
            except (TypeError, ValueError) as exc:
                raise InvalidEntry("extra", f"must be JSON-serialisable ({exc})") from None

    @property
    def txn_id(self) -> str:
        return txn_id_for(self.terminal_id, self.batch, self.stan)

    def _explain(self) -> None:
        """The record's checks one by one: raises `InvalidEntry` for the first that fails."""
        _require(isinstance(self.terminal_id, str) and 0 < len(self.terminal_id) <= 8 and ":" not in self.terminal_id,
                 "terminal_id", "must be 1-8 characters without ':'")
        _require(isinstance(self.merchant_id, str) and 0 < len(self.merchant_id) <= 15, "merchant_id",
                 "must be 1-15 characters")
        _digits(self.batch, 6, "batch")
        _digits(self.stan, 6, "stan")
        _require(isinstance(self.amount, int) and not isinstance(self.amount, bool) and 0 <= self.amount
                 < 10**12, "amount", "must be a whole number of fen from 0 to 999999999999")
        _digits(self.currency, 3, "currency")
        _require(self.rrn == "" or (len(self.rrn) == 12 and self.rrn.isascii()), "rrn", "must be 12 characters")
        _require(len(self.auth_code) <= 6, "auth_code", "at most 6 characters")
        _require(isinstance(self.response_code, str) and len(self.response_code) == 2, "response_code",
                 "must be 2 characters")
        _require(self.masked_pan == "" or bool(_MASKED_PAN.match(self.masked_pan)), "masked_pan",
                 "must show at most the first 6 and last 4 digits (e.g. 621234******1234)")
        _require(isinstance(self.pan_token, str) and len(self.pan_token) <= 64, "pan_token", "at most 64 characters")
        needs_original = self.kind in _NEEDS_ORIGINAL
        _require(needs_original == (self.original_txn_id is not None), "original_txn_id",
                 "required for refunds and voids, and only for them")

    def details(self) -> dict[str, Any]:
        """The journal's details for the entry that creates this transaction (amount is a column)."""
        return {"terminal_id": self.terminal_id, "merchant_id": self.merchant_id, "batch": self.batch,
                "stan": self.stan, "kind": self.kind.value, "channel": self.channel.value,
                "currency": self.currency, "rrn": self.rrn, "auth_code": self.auth_code,
                "response_code": self.response_code, "masked_pan": self.masked_pan, "pan_token": self.pan_token,
                "original_txn_id": self.original_txn_id, "extra": dict(self.extra)}

    def details_json(self) -> str:
        """`details()` as the journal stores it (`details_json_of`)."""
        return details_json_of(self.terminal_id, self.merchant_id, self.batch, self.stan, self.kind.value,
                               self.channel.value, self.currency, self.rrn, self.auth_code, self.response_code,
                               self.masked_pan, self.pan_token, self.original_txn_id, self.extra)


def details_json_of(terminal_id: str, merchant_id: str, batch: str, stan: str, kind: str, channel: str,
                    currency: str, rrn: str, auth_code: str, response_code: str, masked_pan: str, pan_token: str,
                    original_txn_id: str | None, extra: Mapping[str, Any]) -> str:
    """A record's `details()` as the journal stores it, `details_dumps`, the same text to the
    byte, written out directly: one entry per sale, and the generic encoder (a dict built,
    its keys sorted, each value's type looked up) was a good part of its cost. The fields
    come one by one so that a unit's rows (`rows.entry_details`) need no record built."""
    orig, auth = original_txn_id, auth_code
    if not (type(rrn) is str and type(auth) is str and (orig is None or type(orig) is str)):
        return details_dumps({"terminal_id": terminal_id, "merchant_id": merchant_id, "batch": batch, "stan": stan,
                              "kind": kind, "channel": channel, "currency": currency, "rrn": rrn,
                              "auth_code": auth, "response_code": response_code, "masked_pan": masked_pan,
                              "pan_token": pan_token, "original_txn_id": orig, "extra": dict(extra)})
    texts = (auth, batch, channel, currency, kind, masked_pan, merchant_id, orig or "", pan_token, response_code, rrn,
             stan, terminal_id)
    joined = "".join(texts)
    if not (joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined):
        # Printable ASCII with no quote or backslash is its own JSON text (what the encoder
        # leaves as it is): the common case goes into the template as it stands, with no
        # encoder call per field (the ledger process's largest piece of Python per sale).
        # Anything else passes through the encoder, less the quotes the template puts.
        texts = [_json_str(t)[1:-1] for t in texts]
    auth, batch, channel, currency, kind, masked_pan, merchant_id, orig_text, pan_token, response_code, rrn, stan, \
        terminal_id = texts
    # joined, not formatted: a str subclass gives its characters, as the encoder takes them
    return "".join((
        '{"auth_code":"', auth, '","batch":"', batch, '","channel":"', channel, '","currency":"', currency,
        '","extra":', details_dumps(dict(extra)) if extra else "{}", ',"kind":"', kind,
        '","masked_pan":"', masked_pan, '","merchant_id":"', merchant_id,
        '","original_txn_id":', "null" if orig is None else '"' + orig_text + '"',
        ',"pan_token":"', pan_token, '","response_code":"', response_code, '","rrn":"', rrn,
        '","stan":"', stan, '","terminal_id":"', terminal_id, '"}'))


@dataclass(frozen=True)
class JournalEntry:
    """One state change, as the pipeline asks for it. Build it with the class methods."""

    event: Event
    txn_id: str
    amount: int = 0
    record: TxnRecord | None = None  # the creating events carry the whole record
    details: Mapping[str, Any] = field(default_factory=dict)  # other events: a reason, a batch

    @classmethod
    def authorised(cls, record: TxnRecord) -> "JournalEntry":
        if record.kind not in SALE_KINDS:  # tested before the message is formatted: one entry per sale
            raise InvalidEntry("kind", f"{record.kind.value} cannot be AUTHORISED; use refunded/voided")
        if record.response_code != "00":
            raise InvalidEntry("response_code", "an authorised transaction answers 00")
        return made(cls, {"event": Event.AUTHORISED, "txn_id": record.txn_id, "amount": record.amount,
                           "record": record, "details": {}})

    @classmethod
    def declined(cls, record: TxnRecord) -> "JournalEntry":
        if record.response_code == "00":
            raise InvalidEntry("response_code", "a declined transaction cannot answer 00")
        return made(cls, {"event": Event.DECLINED, "txn_id": record.txn_id, "amount": record.amount,
                           "record": record, "details": {}})

    @classmethod
    def refunded(cls, record: TxnRecord) -> "JournalEntry":
        _require(record.kind is TxnKind.REFUND, "kind", "a refund entry needs kind=refund")
        _require(record.amount > 0, "amount", "a refund must be more than 0")
        return cls(Event.REFUNDED, record.txn_id, record.amount, record)

    @classmethod
    def voided(cls, record: TxnRecord) -> "JournalEntry":
        _require(record.kind is TxnKind.VOID, "kind", "a void entry needs kind=void")
        return cls(Event.VOIDED, record.txn_id, record.amount, record)

    @classmethod
    def reversed(cls, txn_id: str, reason: str = "") -> "JournalEntry":
        """The amount journaled is the reversed transaction's own, read when the unit is applied."""
        _no_card_data(reason, "reason")
        return cls(Event.REVERSED, txn_id, 0, None, {"reason": reason} if reason else {})

    def journal_details(self) -> dict[str, Any]:
        return self.record.details() if self.record is not None else dict(self.details)


@dataclass(frozen=True)
class JournalRecord:
    """A journal row as stored."""

    seq: int
    txn_id: str
    event: Event
    amount: int
    at: float
    details: Mapping[str, Any]


@dataclass(frozen=True)
class Transaction:
    """Current state of one transaction, as projected from the journal."""

    txn_id: str
    terminal_id: str
    merchant_id: str
    batch: str
    stan: str
    rrn: str
    auth_code: str
    kind: TxnKind
    channel: Channel
    amount: int
    currency: str
    status: Status
    refunded_amount: int
    original_txn_id: str | None
    response_code: str
    masked_pan: str
    pan_token: str
    created_at: float
    updated_at: float

    @property
    def refundable(self) -> int:
        """What a refund may still take: only from an approved or settled sale."""
        if not self.kind.is_sale or self.status not in (Status.APPROVED, Status.SETTLED):
            return 0
        return self.amount - self.refunded_amount


def reversal_outcome(txn: Transaction | None) -> ReversalOutcome:
    """What reversing `txn` would do; the ledger applies the same rule inside the commit."""
    if txn is None:
        return ReversalOutcome.NOT_FOUND
    if txn.status is Status.REVERSED:
        return ReversalOutcome.ALREADY_REVERSED
    if txn.status is Status.DECLINED:
        return ReversalOutcome.ORIGINAL_DECLINED
    if txn.status is Status.VOIDED:
        return ReversalOutcome.ORIGINAL_VOIDED
    if txn.status is Status.SETTLED:
        return ReversalOutcome.SETTLED
    if txn.refunded_amount:
        return ReversalOutcome.ORIGINAL_REFUNDED
    return ReversalOutcome.REVERSED


@dataclass(frozen=True)
class StoredResponse:
    """The exact reply to a request, kept for de-duplication under (terminal, batch, STAN).

    A reversal (0400) carries its original's STAN, so it is kept under the same key with
    `reversal=True`.
    """

    terminal_id: str
    batch: str
    stan: str
    request_digest: bytes  # request_digest(request)
    response: bytes
    reversal: bool = False

    def __init__(self, terminal_id: str, batch: str, stan: str, request_digest: bytes, response: bytes,
                 reversal: bool = False):
        # written out for the same reason as TxnRecord's: one per request, on the event loop
        object.__setattr__(self, "__dict__", {"terminal_id": terminal_id, "batch": batch, "stan": stan,
                                              "request_digest": request_digest, "response": response,
                                              "reversal": reversal})
        if not (type(batch) is str and len(batch) == 6 and batch.isdecimal() and type(stan) is str
                and len(stan) == 6 and stan.isdecimal() and len(request_digest) == 32
                and type(response) in (bytes, bytearray)):
            _digits(batch, 6, "batch")
            _digits(stan, 6, "stan")
            _require(len(request_digest) == 32, "request_digest", "must be a 32-byte SM3 digest")
            _require(isinstance(response, (bytes, bytearray)), "response", "must be bytes")


@dataclass(frozen=True)
class CommitUnit:
    """Everything one request changes, made durable in one go before its response leaves."""

    entries: tuple[JournalEntry, ...] = ()
    response: StoredResponse | None = None
    upload: BatchUpload | None = None  # items of a 0320 batch upload
    close: BatchClose | None = None  # settlement: close the batch, open the next

    def __init__(self, entries: tuple[JournalEntry, ...] = (), response: StoredResponse | None = None,
                 upload: BatchUpload | None = None, close: BatchClose | None = None):
        self.__dict__.update(entries=entries if type(entries) is tuple else tuple(entries), response=response,
                             upload=upload, close=close)


@dataclass(frozen=True)
class Receipt:
    """What a committed unit did."""

    seqs: tuple[int, ...] = ()  # journal sequence numbers written, in order
    reversals: Mapping[str, ReversalOutcome] = field(default_factory=dict)  # txn_id -> outcome
    next_batch: str | None = None  # set when the unit closed a batch

    @classmethod
    def of_seqs(cls, seqs: tuple[int, ...]) -> "Receipt":
        """A plain unit's receipt (`rows.receipts`): its seqs, nothing reversed, no batch."""
        return made(cls, {"seqs": seqs, "reversals": {}, "next_batch": None})

    @property
    def reversal(self) -> ReversalOutcome | None:
        """The outcome of the unit's one reversal, if it had one."""
        return next(iter(self.reversals.values()), None)

