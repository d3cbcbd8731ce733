"""Wallet transactions at the host: QR sales both ways, and the void, refund, reversal and
query of every sale whose money moved at a wallet (QR and face).

Handlers in the style of `CardFlows`: read the request from the context, ask the QR
channel, leave the ledger unit, the reply fields and the decision in the context. The
wallet order id is the request's de-duplication key (`order_id_for`), so a retried
request is the same order at the wallet and never a second payment. Messages and
codes: docs/protocol.md, "QR and face".
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from acquirer.card_flows import CURRENCY, request_amount, screened_out, settlement_date
from acquirer.channels.qr import QRChannel, QRResult
from acquirer.ledger import (Channel, JournalEntry, Status, Transaction, TxnKind, TxnRecord, reversal_outcome,
                             txn_id_for)
from acquirer.ledger.model import ReversalOutcome
from acquirer.pipeline import Context
from acquirer.protocol import MTI, Original, PrivateTag, ProtocolError, ResponseCode, TxnType, private_fields
from acquirer.wallets.adapter import WalletAdapter
from acquirer.wallets.codes import Wallet
from acquirer.wallets.orders import OrderState
from acquirer.wallets.outcomes import result_of
from acquirer.wallets.reconcile import HostRecord

log = logging.getLogger("acquirer.wallet")

WALLET_KINDS = frozenset({TxnKind.QR, TxnKind.QR_MERCHANT, TxnKind.FACE})
_NOTIFY_LOOK = 0.1  # how often a merchant-QR wait looks at the order book, which a notify updates


def order_id_for(terminal_id: str, batch: str, stan: str) -> str:
    """The wallet's out_trade_no for a request: terminal id + batch + STAN (<= 32 characters)."""
    return f"{terminal_id}-{batch}-{stan}"


def host_records(transactions: Iterable[Transaction]) -> list[HostRecord]:
    """The ledger's wallet sales and refunds as channel reconciliation compares them with the
    wallets' bills: the order id is the sale's terminal-batch-STAN, a refund's id its own."""
    out = []
    for t in transactions:
        if t.channel is Channel.CARD:
            continue
        if t.kind.is_sale:
            paid = t.status in (Status.APPROVED, Status.SETTLED, Status.VOIDED)  # a void is a refund at the wallet
            status = "SUCCESS" if paid else ("REVERSED" if t.status is Status.REVERSED else "FAILED")
            out.append(HostRecord(order_id_for(t.terminal_id, t.batch, t.stan), t.amount, status))
        elif t.original_txn_id and t.status in (Status.APPROVED, Status.SETTLED):
            out.append(HostRecord(order_id_for(*t.original_txn_id.split(":")), t.amount, "REFUND",
                                  order_id_for(t.terminal_id, t.batch, t.stan)))
    return out


@dataclass(frozen=True)
class WalletUndo:
    """What the host gives back at the wallet when the ledger refuses a paid sale."""

    flows: "WalletFlows"
    order_id: str
    txn_id: str

    async def give_back(self) -> None:
        txn = self.flows.ledger.get(self.txn_id)
        if txn is not None and txn.status in (Status.APPROVED, Status.SETTLED):
            return  # a concurrent request booked the same order: the money is accounted for
        result = await self.flows.channel.reverse(self.order_id)
        log.warning("order %s given back after the ledger refused it: %s", self.order_id, result.state)


class WalletFlows:
    def __init__(self, ledger, channel: QRChannel, *, wait_seconds: float = 8.0,
                 clock: Callable[[], float] = time.monotonic, sleep=asyncio.sleep, risk=None):
        self.ledger = ledger
        self.risk = risk  # the same RiskAssessor as the card flows: QR and face sales are screened too
        self.channel = channel
        self.wait_seconds = wait_seconds  # a merchant-QR wait is held this long; the terminal's timeout is longer
        self.clock, self.sleep = clock, sleep

    # --- dispatch ---------------------------------------------------------------------
    async def handle(self, ctx: Context) -> None:
        type_code = ctx.f60.type_code if ctx.f60 else ""
        if ctx.mti is MTI.REVERSAL_REQUEST:
            return await self.reversal(ctx)
        if ctx.mti is MTI.STATUS_REQUEST:
            return await self.query(ctx)
        route = {
            (MTI.FINANCIAL_REQUEST, TxnType.QR_SALE.value): self.qr_sale,
            (MTI.FINANCIAL_REQUEST, TxnType.QR_PRECREATE.value): self.merchant_qr,
            (MTI.FINANCIAL_REQUEST, TxnType.VOID.value): self.void,
            (MTI.ADVICE_REQUEST, TxnType.REFUND.value): self.refund,
        }.get((ctx.mti, type_code))
        if route is None:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"MTI {ctx.mti.value} with type {type_code!r} not supported")
            return
        if not self.batch_open(ctx):
            return
        await route(ctx)

    def batch_open(self, ctx: Context) -> bool:
        if self.ledger.current_batch(ctx.terminal_id) != ctx.batch:
            ctx.decide(ResponseCode.SIGN_ON_AGAIN, "batch number does not match the open batch: sign on")
            return False
        return True

    def owns_reversal(self, ctx: Context) -> bool:
        """A reversal of a request whose type was not a wallet one: a void of a wallet sale."""
        txn = self.ledger.get(txn_id_for(ctx.terminal_id, ctx.batch, ctx.stan))
        return txn is not None and txn.channel is not Channel.CARD

    def owns_original(self, ctx: Context) -> bool:
        """Whether a void, refund or query (field 61) names a wallet transaction or order."""
        try:
            o = Original.decode(ctx.doc.get("61", ""))
        except ProtocolError:
            return False  # the card flows answer the format error
        txn = self._find(ctx, o)
        if txn is not None:
            return txn.channel is not Channel.CARD
        return ctx.mti is MTI.STATUS_REQUEST and \
            self.channel.orders.get(order_id_for(ctx.terminal_id, o.batch, o.stan)) is not None

    # --- helpers ----------------------------------------------------------------------
    amount = staticmethod(request_amount)

    def _find(self, ctx: Context, o: Original) -> Transaction | None:
        return self.ledger.find_original(ctx.terminal_id, batch=o.batch, stan=o.stan) or (
            self.ledger.find_original(ctx.terminal_id, rrn=o.rrn) if o.rrn else None)

    def _original(self, ctx: Context) -> Transaction | None:
        try:
            o = Original.decode(ctx.doc.get("61", ""))
        except ProtocolError:
            ctx.decide(ResponseCode.FORMAT_ERROR, "original data (61) missing or malformed")
            return None
        txn = self._find(ctx, o)
        if txn is None:
            ctx.decide(ResponseCode.ORIGINAL_NOT_FOUND, "original transaction not found")
        return txn

    def adapters_of(self, wallet: Wallet) -> list[WalletAdapter]:
        return [a for _, a in sorted(self.channel.adapters.items()) if a.wallet is wallet]

    @staticmethod
    def _reply(ctx: Context, code: ResponseCode, text: str, rrn: str, auth: str, tags: dict) -> None:
        ctx.reply_fields.update({"37": rrn, "15": settlement_date()})
        if auth:
            ctx.reply_fields["38"] = auth
        ctx.reply_fields["59"] = private_fields(tags)
        ctx.decide(code, text or code.meaning)

    # --- sales ------------------------------------------------------------------------
    async def qr_sale(self, ctx: Context) -> None:
        amount = self.amount(ctx)
        if amount is None:
            return
        code = ctx.private.get(PrivateTag.QR_CODE, b"")
        if not code or not code.isascii():
            ctx.decide(ResponseCode.FORMAT_ERROR, "59/DF01: payment code missing or not ASCII")
            return
        if screened_out(self.risk, ctx):
            return
        await self.pay(ctx, code.decode("ascii"), amount, TxnKind.QR, Channel.QR, source="pos")

    async def pay(self, ctx: Context, code: str, amount: int, kind: TxnKind, channel: Channel, *, source: str,
                  extra: dict[str, Any] | None = None) -> None:
        """Pay a customer code (scanned, or a face-pay agreement code) and book the outcome."""
        order_id = order_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        result = await self.channel.pay_customer_code(order_id, code, amount, ctx.terminal.merchant_id,
                                                      ctx.terminal_id, source=source)
        self.book(ctx, result, kind, channel, amount, extra=extra)

    def book(self, ctx: Context, result: QRResult, kind: TxnKind, channel: Channel, amount: int, *,
             batch: str | None = None, stan: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """Journal a sale the wallet has answered (under its own batch and STAN) and reply."""
        batch, stan = batch or ctx.batch, stan or ctx.stan
        order_id = order_id_for(ctx.terminal_id, batch, stan)
        rrn = self.ledger.next_rrn()
        auth = result.wallet_txn_id[-6:] if result.code.approved else ""
        # wallet trade numbers are long digit runs, which the ledger refuses as PAN-like: the order book keeps them
        details = {"order_id": order_id, "wallet": result.wallet, "provider": result.provider, **(extra or {})}
        record = TxnRecord(ctx.terminal_id, ctx.terminal.merchant_id, batch, stan, kind, channel, amount, CURRENCY,
                           rrn, auth, result.code.value, extra=details)
        if result.code.approved:
            ctx.unit = (JournalEntry.authorised(record),)
            ctx.undo = WalletUndo(self, order_id, record.txn_id)
        else:
            ctx.unit = (JournalEntry.declined(record),)
        self._reply(ctx, result.code, result.text, rrn, auth,
                    {PrivateTag.ORDER_ID: order_id.encode(), PrivateTag.CHANNEL: result.wallet.encode()})

    def decline(self, ctx: Context, kind: TxnKind, channel: Channel, amount: int, code: ResponseCode, text: str,
                extra: dict[str, Any] | None = None) -> None:
        """Journal a sale refused before any wallet was asked (face not matched, wrong passcode)."""
        rrn = self.ledger.next_rrn()
        record = TxnRecord(ctx.terminal_id, ctx.terminal.merchant_id, ctx.batch, ctx.stan, kind, channel, amount,
                           CURRENCY, rrn, "", code.value, extra=extra or {})
        ctx.unit = (JournalEntry.declined(record),)
        ctx.reply_fields["37"] = rrn
        ctx.decide(code, text)

    # --- merchant-displayed QR ----------------------------------------------------------
    async def merchant_qr(self, ctx: Context) -> None:
        """0200 type 32 without field 61: precreate; with field 61: wait for that QR's payment."""
        if "61" in ctx.doc:
            return await self.wait(ctx)
        amount = self.amount(ctx)
        if amount is None:
            return
        name = ctx.private.get(PrivateTag.CHANNEL, b"").decode("ascii", "replace")
        try:
            wallet = Wallet(name)
        except ValueError:
            ctx.decide(ResponseCode.FORMAT_ERROR, "59/DF09: wallet must be " + ", ".join(w.value for w in Wallet))
            return
        if screened_out(self.risk, ctx):
            return
        order_id = order_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        result = await self.channel.precreate(order_id, amount, ctx.terminal.merchant_id, ctx.terminal_id, wallet,
                                              source="pos")
        if not result.code.approved:
            self.book(ctx, result, TxnKind.QR_MERCHANT, Channel.QR, amount)
            return
        # an unpaid QR moves no money: the sale is journaled by the wait that learns it was paid
        ctx.reply_fields["59"] = private_fields({PrivateTag.ORDER_ID: order_id.encode(),
                                                 PrivateTag.CHANNEL: wallet.value.encode(),
                                                 PrivateTag.MERCHANT_QR: result.code_url.encode()})
        ctx.decide(ResponseCode.APPROVED, "show the QR to the customer")

    async def wait(self, ctx: Context) -> None:
        amount = self.amount(ctx)
        if amount is None:
            return
        try:
            o = Original.decode(ctx.doc["61"])
        except ProtocolError:
            ctx.decide(ResponseCode.FORMAT_ERROR, "original data (61) malformed")
            return
        order_id = order_id_for(ctx.terminal_id, o.batch, o.stan)
        order = self.channel.orders.get(order_id)
        if order is None or order.kind != "precreate" or order.terminal_id != ctx.terminal_id:
            ctx.decide(ResponseCode.ORIGINAL_NOT_FOUND, "no merchant QR of this terminal with that batch and STAN")
            return
        if order.amount != amount:
            ctx.decide(ResponseCode.ORIGINAL_AMOUNT_INCORRECT, f"the QR is for {order.amount} fen")
            return
        tags = {PrivateTag.ORDER_ID: order_id.encode(), PrivateTag.CHANNEL: order.wallet.encode()}
        booked = self.ledger.get(txn_id_for(ctx.terminal_id, o.batch, o.stan))
        if booked is not None:  # an earlier wait learnt the outcome: say it again
            standing = booked.status in (Status.APPROVED, Status.SETTLED, Status.DECLINED)  # not voided/reversed
            code = ResponseCode(booked.response_code) if standing else ResponseCode.INVALID_TRANSACTION
            self._reply(ctx, code, f"{booked.kind.value} {booked.status.value}".upper(), booked.rrn,
                        booked.auth_code, tags)
            return
        result = await self._until_final(order_id)
        if result is None:
            ctx.reply_fields["59"] = private_fields(tags)
            ctx.decide(ResponseCode.USER_PAYING, "customer has not paid yet: wait again or cancel")
            return
        self.book(ctx, result, TxnKind.QR_MERCHANT, Channel.QR, amount, batch=o.batch, stan=o.stan)

    async def _until_final(self, order_id: str) -> QRResult | None:
        """The order's final result, or None after `wait_seconds`. The notify usually settles
        the order book first; the wallet is queried with back-off in case it never comes."""
        deadline = self.clock() + self.wait_seconds
        query_at, interval = self.clock(), 1.0
        while True:
            order = self.channel.orders.get(order_id)
            if order.state.final:
                return result_of(order)
            now = self.clock()
            if now >= query_at:
                result = await self.channel.query(order_id)
                if result.state and OrderState(result.state).final:
                    return result
                query_at, interval = self.clock() + interval, min(interval * 2, 8.0)
            if self.clock() >= deadline:
                return None
            await self.sleep(_NOTIFY_LOOK)

    # --- void and refund --------------------------------------------------------------
    async def void(self, ctx: Context) -> None:
        amount = self.amount(ctx)
        original = self._original(ctx) if amount else None
        if original is None:
            return
        if original.kind not in WALLET_KINDS or original.status is not Status.APPROVED:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"original is {original.status.value}: cannot void")
        elif original.batch != ctx.batch:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, "only sales of the open batch can be voided; refund instead")
        elif original.amount != amount:
            ctx.decide(ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "a void cancels the whole sale")
        else:
            await self._refund_at_wallet(ctx, original, amount, TxnKind.VOID)

    async def refund(self, ctx: Context) -> None:
        amount = self.amount(ctx)
        original = self._original(ctx) if amount else None
        if original is None:
            return
        if original.kind not in WALLET_KINDS or original.status not in (Status.APPROVED, Status.SETTLED):
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"original is {original.status.value}: cannot refund")
        elif amount > original.refundable:
            ctx.decide(ResponseCode.ORIGINAL_AMOUNT_INCORRECT,
                       f"refund above what remains of the original ({original.refundable} fen)")
        else:
            await self._refund_at_wallet(ctx, original, amount, TxnKind.REFUND)

    async def _refund_at_wallet(self, ctx: Context, original: Transaction, amount: int, kind: TxnKind) -> None:
        # a void is a full refund at the wallet: it has no same-day cancel that every style shares
        order_id = order_id_for(original.terminal_id, original.batch, original.stan)
        refund_id = order_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        result = await self.channel.refund(order_id, refund_id, amount)
        if result.code is ResponseCode.ISSUER_TIMEOUT:
            # outcome unknown: nothing journaled or stored, so the same request (same refund id) may come again
            ctx.store_response = False
            ctx.decide(result.code, result.text)
            return
        rrn = self.ledger.next_rrn()
        record = TxnRecord(ctx.terminal_id, ctx.terminal.merchant_id, ctx.batch, ctx.stan, kind, original.channel,
                           amount, CURRENCY, rrn, "", result.code.value, original_txn_id=original.txn_id,
                           extra={"order_id": order_id, "refund_id": refund_id})
        if result.code.approved:
            ctx.unit = (JournalEntry.voided(record) if kind is TxnKind.VOID else JournalEntry.refunded(record),)
        else:
            ctx.unit = (JournalEntry.declined(record),)
        self._reply(ctx, result.code, result.text, rrn, "", {PrivateTag.ORDER_ID: order_id.encode()})

    # --- reversal and query -------------------------------------------------------------
    async def reversal(self, ctx: Context) -> None:
        txn_id = txn_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        txn = self.ledger.get(txn_id)
        if txn is not None and txn.kind in (TxnKind.VOID, TxnKind.REFUND):
            # the wallet refunded the customer; no wallet API takes a refund back
            ctx.decide(ResponseCode.APPROVED, "wallet refunds cannot be taken back: the void or refund stands")
            return
        outcome = reversal_outcome(txn)
        if outcome in (ReversalOutcome.REVERSED, ReversalOutcome.NOT_FOUND):
            # NOT_FOUND too: the order may exist without a sale (a merchant QR not paid, or still in flight)
            result = await self.channel.reverse(order_id_for(ctx.terminal_id, ctx.batch, ctx.stan))
            if result.state == OrderState.REVERSAL_PENDING.value:
                log.warning("order of %s: wallet has not confirmed the reversal; it is retried", txn_id)
        ctx.unit = (JournalEntry.reversed(txn_id, "no answer at the terminal"),)
        ctx.decide(ResponseCode.APPROVED, outcome.value)

    async def query(self, ctx: Context) -> None:
        try:
            o = Original.decode(ctx.doc.get("61", ""))
        except ProtocolError:
            ctx.decide(ResponseCode.FORMAT_ERROR, "original data (61) missing or malformed")
            return
        ctx.store_response = False  # a query changes nothing: answer afresh every time
        order_id = order_id_for(ctx.terminal_id, o.batch, o.stan)
        txn = self._find(ctx, o)
        if txn is None:
            if self.channel.orders.get(order_id) is None:
                ctx.decide(ResponseCode.ORIGINAL_NOT_FOUND, "original transaction not found")
                return
            result = await self.channel.query(order_id)  # a merchant QR not waited for yet
            ctx.reply_fields["59"] = private_fields({PrivateTag.ORDER_ID: order_id.encode()})
            ctx.decide(result.code, f"QR ORDER {result.state or 'UNKNOWN'}")
            return
        ctx.reply_fields.update({"4": f"{txn.amount:012d}", "37": txn.rrn})
        if txn.auth_code:
            ctx.reply_fields["38"] = txn.auth_code
        if txn.kind in WALLET_KINDS:
            ctx.reply_fields["59"] = private_fields({PrivateTag.ORDER_ID: order_id_for(
                txn.terminal_id, txn.batch, txn.stan).encode()})
        refunded = f", {txn.refunded_amount} refunded" if txn.refunded_amount else ""
        code = ResponseCode(txn.response_code) if txn.response_code in ResponseCode._value2member_map_ \
            else ResponseCode.DO_NOT_HONOR
        ctx.decide(code, f"{txn.kind.value} {txn.status.value}{refunded}".upper())
