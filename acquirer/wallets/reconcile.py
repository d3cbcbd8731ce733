"""Channel reconciliation: each wallet's daily bill against the host's own records.

The host passes its ledger rows as `HostRecord`s: an order id, an amount in fen and a
status (`SUCCESS` for a paid sale; `REFUND` with a refund id for a refund; anything
else, such as `REVERSED`, `CLOSED`, `FAILED`, for an order that moved no money). Sales
are compared by order id on their net amount (paid less reversed), refunds by refund
id. What differs is listed:

- missing: the host has money the bill does not show (the wallet does not know it);
- extra: the bill shows money the host has no record of (charged, never booked);
- mismatch: both know it, the amounts differ (a reversal the wallet did not do, say).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .adapter import BillRow


@dataclass(frozen=True)
class HostRecord:
    order_id: str
    amount: int
    status: str
    refund_id: str = ""


@dataclass(frozen=True)
class Difference:
    kind: str  # missing, extra or mismatch
    order_id: str
    host_amount: int | None
    bill_amount: int | None
    provider: str = ""
    refund_id: str = ""
    note: str = ""


@dataclass
class ReconReport:
    date: str
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # provider -> why its bill could not be had

    @property
    def clean(self) -> bool:
        return not self.differences and not self.unavailable

    def of_kind(self, kind: str) -> list[Difference]:
        return [d for d in self.differences if d.kind == kind]

    def describe(self) -> str:
        lines = [f"reconciliation {self.date}: {self.matched} matched, {len(self.differences)} differences"]
        for d in self.differences:
            ref = f" refund {d.refund_id}" if d.refund_id else ""
            lines.append(f"  {d.kind:8s} {d.order_id}{ref} host={d.host_amount} bill={d.bill_amount} "
                         f"{d.provider} {d.note}".rstrip())
        for provider, why in sorted(self.unavailable.items()):
            lines.append(f"  no bill  {provider}: {why}")
        return "\n".join(lines)


def reconcile(bill: Iterable["BillRow"], records: Iterable[HostRecord], date: str = "") -> ReconReport:
    report = ReconReport(date)
    host_sales: dict[str, int] = {}
    host_refunds: dict[str, tuple[str, int]] = {}
    for r in records:
        if r.status == "REFUND":
            host_refunds[r.refund_id] = (r.order_id, r.amount)
        else:
            host_sales[r.order_id] = r.amount if r.status == "SUCCESS" else 0
    bill_sales: dict[str, int] = defaultdict(int)
    bill_refunds: dict[str, tuple[str, int]] = {}
    providers: dict[str, str] = {}
    for row in bill:
        providers[row.order_id] = row.provider
        if row.kind == "PAY":
            bill_sales[row.order_id] += row.amount
        elif row.kind == "REVERSAL":
            bill_sales[row.order_id] -= row.amount
        else:
            order, amount = bill_refunds.get(row.refund_id, (row.order_id, 0))
            bill_refunds[row.refund_id] = (order, amount + row.amount)

    for order_id in sorted(set(host_sales) | set(bill_sales)):
        host, billed = host_sales.get(order_id), bill_sales.get(order_id)
        provider = providers.get(order_id, "")
        if billed is None and host:
            report.differences.append(Difference("missing", order_id, host, None, provider,
                                                 note="host booked a payment the bill does not show"))
        elif host is None and billed:
            report.differences.append(Difference("extra", order_id, None, billed, provider,
                                                 note="bill shows money the host has no record of"))
        elif host is not None and billed is not None and host != billed:
            report.differences.append(Difference("mismatch", order_id, host, billed, provider,
                                                 note="net amounts differ"))
        else:
            report.matched += 1
    for refund_id in sorted(set(host_refunds) | set(bill_refunds)):
        host_order, host = host_refunds.get(refund_id, ("", None))
        bill_order, billed = bill_refunds.get(refund_id, ("", None))
        order_id = host_order or bill_order
        if billed is None:
            report.differences.append(Difference("missing", order_id, host, None, providers.get(order_id, ""),
                                                 refund_id, "host booked a refund the bill does not show"))
        elif host is None:
            report.differences.append(Difference("extra", order_id, None, billed, providers.get(order_id, ""),
                                                 refund_id, "bill shows a refund the host has no record of"))
        elif host != billed or host_order != bill_order:
            report.differences.append(Difference("mismatch", order_id, host, billed, providers.get(order_id, ""),
                                                 refund_id, "refund amounts or orders differ"))
        else:
            report.matched += 1
    return report
