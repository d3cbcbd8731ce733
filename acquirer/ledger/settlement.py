"""Batch settlement and merchant fees: pure rules over transactions, shared by every store.

A batch's totals count, per channel, the approved or settled sales and refunds of
that batch; voided sales, the voids themselves, reversed and declined transactions
are left out. The terminal's totals either match (balanced) or the terminal uploads
its transactions and each difference is named: missing at the host, missing at the
terminal, amount or kind differs.

Fees: a sale costs the merchant `basis_points` of its amount (rounded half up to the
fen) plus `fixed_fen`; a refund gives back the percentage part of its own amount,
never the fixed part.
"""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from .errors import InvalidEntry
from .model import Channel, Status, Transaction, TxnKind

COUNTED = (Status.APPROVED, Status.SETTLED)
_FIELDS = ("sale_count", "sale_amount", "refund_count", "refund_amount")


@dataclass(frozen=True)
class ChannelTotals:
    sale_count: int = 0
    sale_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidEntry(name, f"must be a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class Totals:
    """A batch's totals for each channel (field 48 of the 0500 carries the terminal's)."""

    card: ChannelTotals = ChannelTotals()
    qr: ChannelTotals = ChannelTotals()
    face: ChannelTotals = ChannelTotals()

    _ATTR = {Channel.CARD: "card", Channel.QR: "qr", Channel.FACE: "face"}

    def __getitem__(self, channel: Channel) -> ChannelTotals:
        return getattr(self, self._ATTR[Channel(channel)])

    def items(self) -> list[tuple[Channel, ChannelTotals]]:
        return [(c, self[c]) for c in Channel]

    @classmethod
    def of(cls, by_channel: Mapping[Channel | str, ChannelTotals]) -> "Totals":
        return cls(**{cls._ATTR[Channel(c)]: t for c, t in by_channel.items()})

    def to_json(self) -> dict[str, Any]:
        return {c.value: asdict(t) for c, t in self.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Totals":
        return cls.of({Channel(c): ChannelTotals(**t) for c, t in data.items()})


@dataclass(frozen=True)
class TotalsDifference:
    channel: Channel
    field: str  # sale_count | sale_amount | refund_count | refund_amount
    host: int
    terminal: int


@dataclass(frozen=True)
class SettlementResult:
    balanced: bool
    differences: tuple[TotalsDifference, ...]
    host: Totals
    terminal: Totals


class UploadProblem(str, enum.Enum):
    MISSING_AT_HOST = "missing at host"
    MISSING_AT_TERMINAL = "missing at terminal"
    AMOUNT_DIFFERS = "amount differs"
    KIND_DIFFERS = "kind or channel differs"


@dataclass(frozen=True)
class BatchItem:
    """One transaction as a batch upload (0320) lists it, or as the host has it."""

    stan: str
    kind: TxnKind
    channel: Channel
    amount: int
    rrn: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TxnKind(self.kind))
        object.__setattr__(self, "channel", Channel(self.channel))
        if not (len(self.stan) == 6 and self.stan.isdigit()):
            raise InvalidEntry("stan", f"must be 6 digits, got {self.stan!r}")
        if not isinstance(self.amount, int) or self.amount < 0:
            raise InvalidEntry("amount", f"must be a whole number of fen >= 0, got {self.amount!r}")


@dataclass(frozen=True)
class UploadDifference:
    stan: str
    problem: UploadProblem
    host: BatchItem | None
    terminal: BatchItem | None


@dataclass(frozen=True)
class BatchUpload:
    """Part of a terminal's batch upload; stored so that later messages are compared with all of it."""

    terminal_id: str
    batch: str
    items: tuple[BatchItem, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))


@dataclass(frozen=True)
class BatchClose:
    """Close a terminal's batch (every approved transaction in it becomes SETTLED) and open the next."""

    terminal_id: str
    batch: str
    terminal_totals: Totals | None = None
    differences: tuple[UploadDifference, ...] = ()  # what the batch upload found, kept with the batch


@dataclass(frozen=True)
class BatchRecord:
    terminal_id: str
    batch: str
    opened_at: float
    closed_at: float | None
    host_totals: Totals | None
    terminal_totals: Totals | None
    balanced: bool | None
    differences: tuple[Mapping[str, Any], ...] = ()

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class MerchantRate:
    basis_points: int  # 38 = 0.38 %
    fixed_fen: int = 0  # per sale

    def __post_init__(self) -> None:
        if not (isinstance(self.basis_points, int) and 0 <= self.basis_points <= 10_000):
            raise InvalidEntry("basis_points", "must be a whole number from 0 to 10000")
        if not (isinstance(self.fixed_fen, int) and self.fixed_fen >= 0):
            raise InvalidEntry("fixed_fen", "must be a whole number >= 0")

    def percentage_fee(self, amount: int) -> int:
        return (amount * self.basis_points + 5_000) // 10_000  # half up, to the fen

    def sale_fee(self, amount: int) -> int:
        return self.percentage_fee(amount) + self.fixed_fen


@dataclass(frozen=True)
class MerchantReportRow:
    channel: Channel | None  # None on the report's total line
    sale_count: int = 0
    sale_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    fee: int = 0

    @property
    def count(self) -> int:
        return self.sale_count + self.refund_count

    @property
    def net(self) -> int:
        """What the merchant is paid: sales less refunds less fees."""
        return self.sale_amount - self.refund_amount - self.fee


@dataclass(frozen=True)
class MerchantReport:
    merchant_id: str
    day: dt.date
    rows: tuple[MerchantReportRow, ...] = field(default_factory=tuple)  # one per channel with activity

    @property
    def total(self) -> MerchantReportRow:
        sums = {name: sum(getattr(r, name) for r in self.rows) for name in (*_FIELDS, "fee")}
        return MerchantReportRow(None, **sums)


# --- rules ----------------------------------------------------------------------------
def counted(txn: Transaction) -> bool:
    return txn.status in COUNTED and (txn.kind.is_sale or txn.kind is TxnKind.REFUND)


def totals_of(transactions: Iterable[Transaction]) -> Totals:
    acc = {c: [0, 0, 0, 0] for c in Channel}
    for t in transactions:
        if not counted(t):
            continue
        row = acc[t.channel]
        i = 2 if t.kind is TxnKind.REFUND else 0
        row[i] += 1
        row[i + 1] += t.amount
    return Totals.of({c: ChannelTotals(*v) for c, v in acc.items()})


def compare_totals(host: Totals, terminal: Totals) -> SettlementResult:
    diffs = tuple(TotalsDifference(c, name, getattr(h, name), getattr(terminal[c], name))
                  for c, h in host.items() for name in _FIELDS if getattr(h, name) != getattr(terminal[c], name))
    return SettlementResult(not diffs, diffs, host, terminal)


def items_of(transactions: Iterable[Transaction]) -> list[BatchItem]:
    return [BatchItem(t.stan, t.kind, t.channel, t.amount, t.rrn) for t in transactions if counted(t)]


def compare_items(host: Iterable[BatchItem], terminal: Iterable[BatchItem]) -> tuple[UploadDifference, ...]:
    at_host = {i.stan: i for i in host}
    at_terminal = {i.stan: i for i in terminal}  # a re-sent item replaces the earlier one
    out = []
    for stan in sorted(at_host.keys() | at_terminal.keys()):
        h, t = at_host.get(stan), at_terminal.get(stan)
        if h is None:
            out.append(UploadDifference(stan, UploadProblem.MISSING_AT_HOST, None, t))
        elif t is None:
            out.append(UploadDifference(stan, UploadProblem.MISSING_AT_TERMINAL, h, None))
        elif (h.kind is TxnKind.REFUND) != (t.kind is TxnKind.REFUND) or h.channel is not t.channel:
            out.append(UploadDifference(stan, UploadProblem.KIND_DIFFERS, h, t))
        elif h.amount != t.amount:
            out.append(UploadDifference(stan, UploadProblem.AMOUNT_DIFFERS, h, t))
    return tuple(out)


def difference_json(d: UploadDifference) -> dict[str, Any]:
    def item(i: BatchItem | None) -> dict[str, Any] | None:
        return None if i is None else {"kind": i.kind.value, "channel": i.channel.value, "amount": i.amount,
                                       "rrn": i.rrn}
    return {"stan": d.stan, "problem": d.problem.value, "host": item(d.host), "terminal": item(d.terminal)}


def merchant_rows(transactions: Iterable[Transaction],
                  rate: MerchantRate | Mapping[Channel, MerchantRate]) -> tuple[MerchantReportRow, ...]:
    acc: dict[Channel, list[int]] = {}
    for t in transactions:
        if not counted(t):
            continue
        r = rate if isinstance(rate, MerchantRate) else rate.get(t.channel)
        if r is None:
            raise InvalidEntry("rate", f"no merchant rate for channel {t.channel.value}")
        row = acc.setdefault(t.channel, [0, 0, 0, 0, 0])
        if t.kind is TxnKind.REFUND:
            row[2] += 1
            row[3] += t.amount
            row[4] -= r.percentage_fee(t.amount)
        else:
            row[0] += 1
            row[1] += t.amount
            row[4] += r.sale_fee(t.amount)
    return tuple(MerchantReportRow(c, *acc[c]) for c in Channel if c in acc)
