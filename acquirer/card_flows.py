"""Card transactions at the host: sale, void, refund, reversal, query, settlement.

Each handler reads the request in the context, asks the channel, and leaves in the
context the decision, the reply fields and the ledger unit. `commit` makes the unit
and the exact response durable (group commit) before the response may leave; if the
ledger refuses the unit, the decision changes to the ledger's code and money the
channel already moved is given back.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging

from acquirer.channels.base import CardAuthorisation, CardChannel, CardResult, Operation
from acquirer.ledger import (AlreadyAnswered, BatchClose, BatchItem, BatchUpload, Channel, ChannelTotals, CommitUnit,
                             JournalEntry, LedgerError, LedgerWriter, Rejected, Status, StoredResponse, Totals,
                             TxnKind, TxnRecord, reversal_outcome, txn_id_for)
from acquirer.ledger.model import ReversalOutcome
from acquirer.pipeline import Context, dedup_key
from acquirer.protocol import MTI, Field60, Original, PrivateTag, ProtocolError, ResponseCode, TxnType, private_fields
from acquirer.protocol.settlement import decode_items, decode_totals
from acquirer.vault import CardVault
from keys.errors import CryptoError
from keys.hsm import HSM, terminal_key_name
from keys.tlv import TLVError, flatten, mask_pan, tlv

log = logging.getLogger("acquirer.card")


def request_amount(ctx: Context) -> int | None:
    """Field 4 as fen, or None after deciding why it is refused (every flow checks it so)."""
    value = ctx.doc.get("4", "")
    if not value.isdigit() or int(value) <= 0:
        ctx.decide(ResponseCode.INVALID_AMOUNT, "amount must be more than zero")
        return None
    if ctx.doc.get("49", CURRENCY) != CURRENCY:
        ctx.decide(ResponseCode.INVALID_TRANSACTION, "only CNY (156) is accepted")
        return None
    return int(value)


def screened_out(risk, ctx: Context) -> bool:
    """The risk step of every money-moving request: True when the engine decided (declined,
    asked for a step-up); the flow then stops and the pipeline answers that decision."""
    if risk is None:
        return False
    risk.assess(ctx)
    return ctx.done


def next_batch(batch: str) -> str:
    """The batch a settlement opens (the ledger numbers them one up, wrapping at 999999)."""
    return f"{int(batch) % 999_999 + 1:06d}"
CURRENCY = "156"
_UPLOAD_LAST = "202"
_today: list = [None, ""]  # (date, its MMDD): field 15 of every response, formatted once a day


def settlement_date() -> str:
    """Field 15 (MMDD) of an answer: today's date, formatted once a day."""
    today = dt.date.today()
    if today != _today[0]:
        _today[:] = [today, today.strftime("%m%d")]
    return _today[1]


class CardFlows:
    def __init__(self, hsm: HSM, ledger, writer: LedgerWriter, vault: CardVault, issuer: CardChannel,
                 risk=None):
        self.hsm = hsm
        self.ledger = ledger
        self.writer = writer
        self.vault = vault
        self.issuer = issuer
        self.risk = risk  # a RiskAssessor (acquirer/risk): `assess(ctx)` may decide; None skips the step

    # --- dispatch ---------------------------------------------------------------
    _ROUTES = {
        (MTI.FINANCIAL_REQUEST, TxnType.SALE.value): "sale",
        (MTI.FINANCIAL_REQUEST, TxnType.VOID.value): "void",
        (MTI.ADVICE_REQUEST, TxnType.REFUND.value): "refund",
        (MTI.STATUS_REQUEST, TxnType.QUERY.value): "query",
        (MTI.SETTLEMENT_REQUEST, TxnType.SETTLEMENT.value): "settle",
        (MTI.BATCH_UPLOAD_REQUEST, TxnType.BATCH_UPLOAD.value): "batch_upload",
    }

    async def handle(self, ctx: Context) -> None:
        type_code = ctx.f60.type_code if ctx.f60 else ""
        name = "reversal" if ctx.mti is MTI.REVERSAL_REQUEST else self._ROUTES.get((ctx.mti, type_code))
        route = getattr(self, name) if name else None
        if route is None:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"MTI {ctx.mti.value} with type {type_code!r} not supported")
            return
        if route not in (self.reversal, self.query) and self.ledger.current_batch(ctx.terminal_id) != ctx.batch:
            ctx.decide(ResponseCode.SIGN_ON_AGAIN, "batch number does not match the open batch: sign on")
            return
        await route(ctx)

    # --- helpers ----------------------------------------------------------------

    def _card(self, ctx: Context) -> tuple[str, str] | None:
        """PAN and expiry from the sealed track 2 (field 35), opened inside the HSM."""
        if "35" not in ctx.doc:
            ctx.decide(ResponseCode.FORMAT_ERROR, "card data (35) missing")
            return None
        try:
            track2 = self.hsm.open_data(terminal_key_name(ctx.terminal_id, "TDK"), bytes.fromhex(ctx.doc["35"]))
            text = track2.decode("ascii").upper().rstrip("F")
            pan, rest = text.replace("=", "D").split("D", 1)
        except (CryptoError, ValueError, UnicodeDecodeError):
            ctx.decide(ResponseCode.FORMAT_ERROR, "card data does not decrypt under this terminal's key")
            return None
        if not (13 <= len(pan) <= 19 and pan.isdigit() and rest[:4].isdigit()):
            ctx.decide(ResponseCode.INVALID_CARD, "card data is not a track 2 equivalent")
            return None
        return pan, rest[:4]

    async def _ask(self, request: CardAuthorisation) -> CardResult:
        # A channel in another process (acquirer/channels/remote.py) is async. The in-process
        # issuer simulator answers in well under a millisecond (no fsync): a thread hop would
        # cost more than it saves.
        remote = getattr(self.issuer, "authorise_async", None)
        if remote is not None:
            return await remote(request)
        if getattr(self.issuer, "inline", False):
            return self.issuer.authorise(request)
        return await asyncio.to_thread(self.issuer.authorise, request)

    def _record(self, ctx: Context, kind: TxnKind, amount: int, code: str, rrn: str, auth: str = "",
                pan: str = "", original: str | None = None) -> TxnRecord:
        # a sale's card was masked and tokenised once, when it was opened (ctx); a void's or refund's
        # card comes from the vault
        return TxnRecord(ctx.terminal_id, ctx.terminal.merchant_id, ctx.batch, ctx.stan, kind, Channel.CARD, amount,
                         CURRENCY, rrn, auth, code, (ctx.masked_pan or mask_pan(pan)) if pan else "",
                         (ctx.pan_token or self.vault.token(pan)) if pan else "", original)

    def _reply(self, ctx: Context, result: CardResult, rrn: str) -> None:
        ctx.reply_fields["37"] = rrn
        if result.auth_code:
            ctx.reply_fields["38"] = result.auth_code
        if result.issuer_data:
            ctx.reply_fields["55"] = tlv(0x91, result.issuer_data).hex().upper()
        ctx.reply_fields["15"] = settlement_date()
        ctx.decide(result.code, result.text or result.code.meaning)

    def _original(self, ctx: Context) -> object | None:
        try:
            o = Original.decode(ctx.doc.get("61", ""))
        except ProtocolError:
            ctx.decide(ResponseCode.FORMAT_ERROR, "original data (61) missing or malformed")
            return None
        txn = self.ledger.find_original(ctx.terminal_id, batch=o.batch, stan=o.stan) or (
            self.ledger.find_original(ctx.terminal_id, rrn=o.rrn) if o.rrn else None)
        if txn is None:
            ctx.decide(ResponseCode.ORIGINAL_NOT_FOUND, "original transaction not found")
        return txn

    # --- sale -------------------------------------------------------------------
    async def sale(self, ctx: Context) -> None:
        amount = request_amount(ctx)
        card = self._card(ctx) if amount else None
        if card is None:
            return
        pan, expiry = card
        try:
            icc = flatten(bytes.fromhex(ctx.doc["55"])) if "55" in ctx.doc else {}
        except (TLVError, ValueError):
            ctx.decide(ResponseCode.FORMAT_ERROR, "ICC data (55) is not BER-TLV")
            return
        flags = tuple(f for f in ctx.private.get(PrivateTag.RISK_FLAGS, b"").decode("ascii", "replace").split(",") if f)
        ctx.pan_token, ctx.masked_pan, ctx.icc = self.vault.token(pan), mask_pan(pan), icc
        if screened_out(self.risk, ctx):
            return
        request = CardAuthorisation(
            Operation.SALE, pan, ctx.doc.get("23", "000")[-2:], expiry, amount, CURRENCY, ctx.terminal_id,
            ctx.terminal.merchant_id, ctx.stan, icc, bytes.fromhex(ctx.doc["52"]) if "52" in ctx.doc else None,
            terminal_key_name(ctx.terminal_id, "TPK") if "52" in ctx.doc else None, risk_flags=flags)
        result = await self._ask(request)
        rrn = self.ledger.next_rrn()
        record = self._record(ctx, TxnKind.SALE, amount, result.code.value, rrn, result.auth_code, pan)
        if result.code.approved:
            self.vault.keep(record.txn_id, pan, expiry, request.psn)
            ctx.unit = (JournalEntry.authorised(record),)
            ctx.undo = request  # given back at the issuer if the ledger refuses the unit
        else:
            ctx.unit = (JournalEntry.declined(record),)
        ctx.reply_fields["59"] = private_fields({PrivateTag.MASKED_PAN: ctx.masked_pan.encode()})
        self._reply(ctx, result, rrn)

    # --- void and refund ----------------------------------------------------------
    async def void(self, ctx: Context) -> None:
        amount = request_amount(ctx)
        original = self._original(ctx) if amount else None
        if original is None:
            return
        if original.kind is not TxnKind.SALE or original.status is not Status.APPROVED:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"original is {original.status.value}: cannot void")
            return
        if original.batch != ctx.batch:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, "only sales of the open batch can be voided; refund instead")
            return
        if original.amount != amount:
            ctx.decide(ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "a void cancels the whole sale")
            return
        await self._undo_at_issuer(ctx, Operation.VOID, original, amount, TxnKind.VOID)

    async def refund(self, ctx: Context) -> None:
        amount = request_amount(ctx)
        original = self._original(ctx) if amount else None
        if original is None:
            return
        if not original.kind.is_sale or original.status not in (Status.APPROVED, Status.SETTLED):
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"original is {original.status.value}: cannot refund")
            return
        if amount > original.refundable:
            ctx.decide(ResponseCode.ORIGINAL_AMOUNT_INCORRECT,
                       f"refund above what remains of the original ({original.refundable} fen)")
            return
        await self._undo_at_issuer(ctx, Operation.REFUND, original, amount, TxnKind.REFUND)

    async def _undo_at_issuer(self, ctx: Context, op: Operation, original, amount: int, kind: TxnKind) -> None:
        card = self.vault.card(original.txn_id)
        if card is None:
            ctx.decide(ResponseCode.ORIGINAL_NOT_FOUND, "no card on file for the original")
            return
        pan, expiry, psn = card
        request = CardAuthorisation(op, pan, psn, expiry, amount, CURRENCY, ctx.terminal_id,
                                    ctx.terminal.merchant_id, ctx.stan, original_amount=original.amount,
                                    original_stan=original.stan)
        result = await self._ask(request)
        rrn = self.ledger.next_rrn()
        record = self._record(ctx, kind, amount, result.code.value, rrn, result.auth_code, pan, original.txn_id)
        if result.code.approved:
            ctx.unit = (JournalEntry.voided(record) if kind is TxnKind.VOID else JournalEntry.refunded(record),)
            ctx.undo = request
        else:
            ctx.unit = (JournalEntry.declined(record),)
        self._reply(ctx, result, rrn)

    # --- reversal -----------------------------------------------------------------
    async def reversal(self, ctx: Context) -> None:
        txn_id = txn_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        txn = self.ledger.get(txn_id)
        outcome = reversal_outcome(txn)
        if outcome is ReversalOutcome.REVERSED:
            card = self.vault.card(txn_id)
            if card is not None:
                pan, expiry, psn = card
                await self._ask(CardAuthorisation(Operation.REVERSAL, pan, psn, expiry, txn.amount, CURRENCY,
                                                  ctx.terminal_id, ctx.terminal.merchant_id, txn.stan))
        # every outcome is acknowledged, so the terminal stops resending; only a real undo is journaled
        ctx.unit = (JournalEntry.reversed(txn_id, "no answer at the terminal"),)
        ctx.decide(ResponseCode.APPROVED, outcome.value)

    # --- query --------------------------------------------------------------------
    async def query(self, ctx: Context) -> None:
        original = self._original(ctx)
        if original is None:
            return
        ctx.store_response = False  # a query changes nothing: answer afresh every time
        ctx.reply_fields.update({"4": f"{original.amount:012d}", "37": original.rrn})
        if original.auth_code:
            ctx.reply_fields["38"] = original.auth_code
        refunded = f", {original.refunded_amount} refunded" if original.refunded_amount else ""
        code = ResponseCode(original.response_code) if original.response_code in ResponseCode._value2member_map_ \
            else ResponseCode.DO_NOT_HONOR
        ctx.decide(code, f"{original.kind.value} {original.status.value}{refunded}".upper())

    # --- settlement ---------------------------------------------------------------
    async def settle(self, ctx: Context) -> None:
        try:
            wire = decode_totals(ctx.doc.get("48", ""))
        except ProtocolError as exc:
            ctx.decide(ResponseCode.FORMAT_ERROR, str(exc)[:90])
            return
        totals = Totals.of({Channel(c): ChannelTotals(*v) for c, v in wire.items()})
        result = self.ledger.settle(ctx.terminal_id, ctx.batch, totals)
        if result.balanced:
            ctx.unit = BatchClose(ctx.terminal_id, ctx.batch, totals)
            self._announce_next_batch(ctx)
            ctx.decide(ResponseCode.APPROVED, "BALANCED")
        else:
            ctx.store_response = False  # the terminal uploads, then settles again
            ctx.decide(ResponseCode.APPROVED, "NOT BALANCED: upload the batch")

    async def batch_upload(self, ctx: Context) -> None:
        try:
            items = [BatchItem(stan, TxnKind(kind), Channel(channel), amount, rrn)
                     for stan, kind, channel, amount, rrn in decode_items(ctx.doc.get("48", ""))]
        except (ProtocolError, LedgerError) as exc:
            ctx.decide(ResponseCode.FORMAT_ERROR, str(exc)[:90])
            return
        upload = BatchUpload(ctx.terminal_id, ctx.batch, tuple(items))
        if ctx.f60.network != _UPLOAD_LAST:
            ctx.unit = upload
            ctx.decide(ResponseCode.APPROVED, f"{len(items)} items received")
            return
        differences = self.ledger.batch_upload(ctx.terminal_id, ctx.batch, items)
        ctx.unit = (upload, BatchClose(ctx.terminal_id, ctx.batch, None, tuple(differences)))
        self._announce_next_batch(ctx)
        ctx.decide(ResponseCode.APPROVED, f"{len(differences)} DIFFERENCES; batch closed")

    @staticmethod
    def _announce_next_batch(ctx: Context) -> None:
        # the response is stored before the commit that opens the next batch: announce its number
        ctx.reply_fields["60"] = Field60(ctx.f60.type_code, next_batch(ctx.batch), ctx.f60.network).encode()

    # --- the ledger -------------------------------------------------------------------
    async def commit(self, ctx: Context, response: bytes) -> bytes | None:
        """Make the unit and the response durable; returns the response to send instead, if any."""
        unit = ctx.unit
        entries, upload, close = (), None, None
        for part in unit if isinstance(unit, tuple) else (unit,) if unit is not None else ():
            if isinstance(part, JournalEntry):
                entries += (part,)
            elif isinstance(part, BatchUpload):
                upload = part
            elif isinstance(part, BatchClose):
                close = part
        tid, batch, stan = dedup_key(ctx)
        stored = None
        if ctx.store_response and ctx.maced:
            stored = StoredResponse(tid, batch, stan.lstrip("R"), ctx.digest, response,
                                    reversal=ctx.mti is MTI.REVERSAL_REQUEST)
        try:
            receipt = await self.writer.commit(CommitUnit(entries, stored, upload, close))
        except AlreadyAnswered as exc:
            await self._give_back(ctx)
            return exc.response
        except Rejected as exc:
            await self._give_back(ctx)
            ctx.unit = None
            ctx.reply_fields.clear()
            ctx.decide(ResponseCode(exc.response_code), str(exc)[:90])
            ctx.redecided = True
            return None
        except LedgerError as exc:
            log.error("ledger refused a unit for %s: %s", ctx.terminal_id, exc)
            await self._give_back(ctx)
            ctx.unit = None
            ctx.reply_fields.clear()
            ctx.decide(ResponseCode.SYSTEM_ERROR, "ledger unavailable")
            ctx.redecided = True
            ctx.store_response = False
            return None
        if close is not None and receipt.next_batch != next_batch(close.batch):
            log.warning("batch after %s is %s, not the announced %s", close.batch, receipt.next_batch,
                        next_batch(close.batch))
        return None

    async def _give_back(self, ctx: Context) -> None:
        request = getattr(ctx, "undo", None)
        if request is not None:
            await self._ask(CardAuthorisation(Operation.REVERSAL, request.pan, request.psn, request.expiry,
                                              request.amount, CURRENCY, request.terminal_id, request.merchant_id,
                                              request.stan))
            flush = getattr(self.issuer, "flush", None)
            if flush is not None:  # no ledger unit follows a give-back: commit it now, not at the next group
                flush()
