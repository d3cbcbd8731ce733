"""Face sales at the host (0200, 60.1 = 33): identify 1:N, step up to the passcode, then pay
from the customer's linked wallet account.

Stateless, as docs/face.md proposes: the first request carries the sealed template
(59/DF02) and gets `1A` with 59/DF13 = PASSCODE; the second, under a new STAN, carries
DF02 again and the passcode block (DF0C). The host identifies again (milliseconds), so no
candidate is kept between the two and a host restart in between changes nothing.

Money: the face customer is linked to `<wallet>:<account>`; the customer has a face-pay
agreement with that wallet, so the host asks it for a confirmed single-use payment code
(acquirer/wallets/agreement.py) and pays it through the QR channel with source "face".
Void, refund, reversal and query are then the wallet flows' own (same order ids).
"""
from __future__ import annotations

import asyncio
import logging

from acquirer.card_flows import screened_out
from acquirer.face import FaceDecline, FacePay, FaceWireError, passcode_pan
from acquirer.face.passcode import PEPPER_KEY
from acquirer.ledger import Channel, TxnKind
from acquirer.pipeline import Context
from acquirer.protocol import MTI, PrivateTag, ResponseCode, TxnType, private_fields
from acquirer.wallet_flows import WalletFlows
from acquirer.wallets.adapter import WalletCallError, WalletUnreachable
from acquirer.wallets.agreement import AgreementRefused, agreement_code
from acquirer.wallets.codes import Wallet
from keys.errors import CryptoError
from keys.hsm import HSM, terminal_key_name

log = logging.getLogger("acquirer.face_flows")


def linked_account(wallet_account: str) -> tuple[Wallet, str]:
    """`alipay:alice` -> (Wallet.ALIPAY, "alice"); ValueError for any other form."""
    name, sep, account = wallet_account.partition(":")
    if not sep or not account:
        raise ValueError("wallet account must be <wallet>:<account>")
    return Wallet(name), account


class FaceFlows:
    def __init__(self, hsm: HSM, face: FacePay, wallets: WalletFlows):
        self.hsm = hsm
        self.face = face
        self.wallets = wallets

    async def handle(self, ctx: Context) -> None:
        if ctx.mti is not MTI.FINANCIAL_REQUEST or not ctx.f60 or ctx.f60.type_code != TxnType.FACE_SALE.value:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, "face flows take face sales only")
            return
        if self.wallets.batch_open(ctx):
            await self.sale(ctx)

    async def sale(self, ctx: Context) -> None:
        amount = self.wallets.amount(ctx)
        if amount is None:
            return
        sealed = ctx.private.get(PrivateTag.FACE_TEMPLATE)
        if not sealed:
            ctx.decide(ResponseCode.FORMAT_ERROR, "59/DF02: face template missing")
            return
        tdk = terminal_key_name(ctx.terminal_id, "TDK")
        try:  # off the event loop: SQLite reads now, scrypt (~50 ms) below
            candidate = await asyncio.to_thread(self.face.identify, sealed, lambda b: self.hsm.open_data(tdk, b))
        except FaceDecline as d:
            return self._declined(ctx, amount, d)
        block = ctx.private.get(PrivateTag.PASSCODE_BLOCK)
        if block is None:
            # nothing is journaled: a step-up moves no money; the response is kept for de-duplication
            ctx.reply_fields["59"] = private_fields({PrivateTag.STEP_UP: candidate.step_up.encode()})
            ctx.decide(ResponseCode.STEP_UP_REQUIRED, "face recognised: enter the payment passcode")
            return
        try:  # the passcode is clear only inside the HSM; a block that does not open is not a wrong passcode
            token = self.hsm.passcode_token(block, passcode_pan(ctx.stan), terminal_key_name(ctx.terminal_id, "TPK"),
                                            PEPPER_KEY)
        except (CryptoError, FaceWireError):
            ctx.decide(ResponseCode.FORMAT_ERROR, "59/DF0C: passcode block does not open for this request")
            return
        try:
            payment = await asyncio.to_thread(self.face.confirm_passcode_token, candidate, token)
        except FaceDecline as d:
            return self._declined(ctx, amount, d, candidate.customer_id)
        if screened_out(self.wallets.risk, ctx):  # the request that moves money, after the passcode
            return
        await self._debit(ctx, amount, payment.customer_id, payment.wallet_account)

    async def _debit(self, ctx: Context, amount: int, customer_id: str, wallet_account: str) -> None:
        extra = {"customer": customer_id}
        try:
            wallet, account = linked_account(wallet_account)
        except ValueError:
            log.error("face customer %s: linked account is not <wallet>:<account>", customer_id)
            return self.wallets.decline(ctx, TxnKind.FACE, Channel.FACE, amount, ResponseCode.SYSTEM_ERROR,
                                        "face customer has no wallet account the host can debit", extra)
        code = None
        for adapter in self.wallets.adapters_of(wallet):
            try:
                code = await agreement_code(adapter, account)
                break
            except AgreementRefused as exc:
                log.info("face customer %s: %s refused the agreement code: %s", customer_id, adapter.name, exc.reason)
                return self.wallets.decline(ctx, TxnKind.FACE, Channel.FACE, amount,
                                            ResponseCode.NOT_PERMITTED_CARDHOLDER,
                                            "no face-pay agreement with the wallet: pay another way", extra)
            except WalletUnreachable as exc:  # never delivered: another route to the same wallet may do
                log.warning("face customer %s: %s", customer_id, exc)
            except WalletCallError as exc:  # a code is only a permission: nothing moved, nothing to undo
                log.warning("face customer %s: %s", customer_id, exc)
                return self.wallets.decline(ctx, TxnKind.FACE, Channel.FACE, amount, ResponseCode.ISSUER_TIMEOUT,
                                            "wallet did not answer in time", extra)
        if code is None:
            return self.wallets.decline(ctx, TxnKind.FACE, Channel.FACE, amount, ResponseCode.SYSTEM_ERROR,
                                        f"no route to the {wallet.value} wallet", extra)
        await self.wallets.pay(ctx, code, amount, TxnKind.FACE, Channel.FACE, source="face", extra=extra)

    def _declined(self, ctx: Context, amount: int, decline: FaceDecline, customer_id: str = "") -> None:
        if decline.code is ResponseCode.FORMAT_ERROR:  # unreadable, like any malformed request: not journaled
            ctx.decide(decline.code, decline.reason)
            return
        self.wallets.decline(ctx, TxnKind.FACE, Channel.FACE, amount, decline.code, decline.reason,
                             {"customer": customer_id} if customer_id else None)
