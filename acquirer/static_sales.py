"""Sales through a merchant's static aggregated code: the order at the wallet that scanned
it, and the sale in the ledger once that wallet says it is paid.

A wallet's in-app page (here: `wallet pay` of the customer CLI) posts the token, the
wallet, the amount the customer typed, an opaque buyer id and its own request id. The
host checks the token (`StaticCodes.resolve`), the merchant and its virtual terminal, the
amount; takes the next STAN of the virtual terminal's open batch for a new request id;
and precreates the order at THAT wallet through the QR channel (routing as for any QR
payment, business source `static`). The answer is the wallet's own order code, which the
wallet pays after the customer's password, as any merchant QR. The host learns the
payment by notify or query (`QRChannel.wait_paid`, one watcher per order) and books it:
kind `qr_merchant`, channel `QR`, under the virtual terminal's batch and STAN, so it is in
the settlement report and the channel reconciliation like any QR sale.

The order id is `<virtual terminal>-<batch>-<STAN>` (the same form as every QR order): a
repeated request id is the same order at the wallet, which never charges an order twice,
and the booking is keyed by the same triple, so it happens once.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from typing import Any, Callable

from acquirer.card_flows import CURRENCY
from acquirer.channels.qr import QRChannel
from acquirer.ledger import Channel, CommitUnit, JournalEntry, TxnKind, TxnRecord, txn_id_for
from acquirer.ledger.errors import DuplicateTransaction, Rejected
from acquirer.protocol import ResponseCode
from acquirer.registry import Registry, RegistryError
from acquirer.static_codes import PATH, StaticCode, StaticCodeError, StaticCodes, StaticRequest
from acquirer.wallets.codes import Wallet, wallet_of_user_agent
from acquirer.wallets.orders import OrderState

log = logging.getLogger("acquirer.static")

SOURCE = "static"  # the routing layer "channel" (business source) of static-code payments
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_BUYER = re.compile(r"[A-Za-z0-9_.@-]{0,64}")
_UNAVAILABLE = (ResponseCode.SYSTEM_ERROR, ResponseCode.ISSUER_TIMEOUT)

# the HTTP status of each refusal the page can get
HTTP_STATUS = {"format": 400, "wallet_unknown": 400, "amount_out_of_range": 400, "token_unknown": 404,
               "order_unknown": 404, "token_revoked": 410, "merchant_locked": 403, "terminal_locked": 403,
               "declined_by_risk": 403, "request_reused": 409, "order_closed": 409, "too_many_orders": 429,
               "wallet_refused": 502, "wallet_unavailable": 503, "no_base_url": 503}


class StaticSales:
    def __init__(self, codes: StaticCodes, registry: Registry, ledger, writer, channel: QRChannel, *,
                 pay_window: float = 120.0, risk=None, orders_per_minute: int = 60,
                 clock: Callable[[], float] = time.monotonic):
        self.codes, self.registry, self.ledger, self.writer, self.channel = codes, registry, ledger, writer, channel
        # a printed code is public: new orders per code are capped, so nobody can flood the
        # wallets with unpaid orders through it (a page retrying its own request is not new)
        self.orders_per_minute, self.clock = orders_per_minute, clock
        self._recent: dict[str, deque] = {}
        self.risk = risk  # the host's RiskAssessor: its engine screens every new order
        self.pay_window = pay_window  # the customer has this long to pay; then the order is closed
        self._watchers: dict[str, asyncio.Task] = {}
        self._booking = asyncio.Lock()

    # --- the page ---------------------------------------------------------------------
    def page(self, token: str) -> dict[str, Any]:
        """What the page shows before the customer types an amount."""
        code = self.codes.resolve(token)
        merchant = self._usable(code)
        return {"token": code.token, "merchant_id": code.merchant_id, "merchant_name": merchant.name, "min_amount": 1,
                "max_amount": code.max_amount, "wallets": [w.value for w in self.channel_wallets()],
                "order_url": f"{self.codes.base_url}{PATH}order"}

    def channel_wallets(self) -> list[Wallet]:
        return sorted({a.wallet for a in self.channel.adapters.values()}, key=lambda w: w.value)

    def _usable(self, code: StaticCode):
        merchant = self.registry.merchant(code.merchant_id)
        if merchant.status != "active":
            raise StaticCodeError("merchant_locked", "this merchant cannot take payments now")
        try:
            terminal = self.registry.terminal(code.terminal_id)
        except RegistryError:
            terminal = None
        if terminal is None or not terminal.usable:
            raise StaticCodeError("terminal_locked", "this merchant's static code is locked by the acquirer")
        return merchant

    # --- an order ---------------------------------------------------------------------
    async def create(self, token: str, wallet: str, amount: Any, buyer: str, request_id: str,
                     user_agent: str = "") -> dict[str, Any]:
        """The wallet's own order for a payment the customer typed at the page."""
        code = self.codes.resolve(token)
        merchant = self._usable(code)
        chosen = _wallet(wallet, user_agent)
        if chosen not in self.channel_wallets():
            raise StaticCodeError("wallet_unknown", f"{chosen.value} payments are not offered here")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= code.max_amount:
            raise StaticCodeError("amount_out_of_range",
                                  f"the amount must be 1 to {code.max_amount} fen (a whole number)")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise StaticCodeError("format", "request_id: 8 to 64 letters, digits, '-' or '_'")
        if not isinstance(buyer, str) or not _BUYER.fullmatch(buyer):
            raise StaticCodeError("format", "buyer: up to 64 letters, digits or . _ @ -")
        req = self.codes.request(code.merchant_id, request_id)
        if req is None:
            self._take_slot(code)
            req = self._new_request(code, request_id, chosen, amount, buyer)
            self._screen(req, merchant, chosen)
        if (req.wallet, req.amount, req.buyer) != (chosen.value, amount, buyer):
            raise StaticCodeError("request_reused", "request id already used for another payment")
        if req.outcome in ("closed", "given back"):
            raise StaticCodeError("order_closed", "this order is closed: open the code again to pay")
        result = await self.channel.precreate(req.order_id, amount, code.merchant_id, code.terminal_id, chosen,
                                              source=SOURCE, description=merchant.name)
        if not result.code.approved:
            if result.state and OrderState(result.state).final:
                self.codes.settle_request(req.order_id, "closed")
            reason = "wallet_unavailable" if result.code in _UNAVAILABLE else "wallet_refused"
            raise StaticCodeError(reason, f"{chosen.value}: {result.text or result.code.meaning}")
        await self._follow_up(req.order_id, result.state)
        return {"order_id": req.order_id, "wallet": chosen.value, "amount": amount, "code_url": result.code_url,
                "state": result.state, "merchant_id": code.merchant_id, "merchant_name": merchant.name,
                "status_url": f"{self.codes.base_url}{PATH}order/{req.order_id}"}

    def _take_slot(self, code: StaticCode) -> None:
        now = self.clock()
        recent = self._recent.setdefault(code.token, deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.orders_per_minute:
            raise StaticCodeError("too_many_orders", f"this code took {len(recent)} new orders in the last minute: "
                                  "try again shortly")
        recent.append(now)

    def _screen(self, req: StaticRequest, merchant, wallet: Wallet) -> None:
        """The risk engine's word on a new order, as on any QR sale: limits, bursts, a frozen
        merchant, and the per-card rules applied per buyer (`wallet:buyer` stands for the
        card). A decline closes the request before any wallet is asked. A step-up passes:
        the wallet's own password is this payment's verification."""
        if self.risk is None:
            return
        from acquirer.risk import Facts
        from acquirer.risk.rules import Action

        decision = self.risk.engine.decide(Facts(
            txn_id_for(req.terminal_id, req.batch, req.stan), req.terminal_id, merchant.merchant_id, req.amount,
            channel="qr", kind="sale", merchant_grade=merchant.risk_grade, merchant_mcc=merchant.mcc,
            merchant_mobile=bool(merchant.mobile), card_token=f"{wallet.value}:{req.buyer}" if req.buyer else "",
            entry_mode="static"))
        if decision.blocks and decision.action is not Action.STEP_UP:
            self.codes.settle_request(req.order_id, "closed")
            raise StaticCodeError("declined_by_risk", decision.text or "declined by the acquirer's risk control")

    def _new_request(self, code: StaticCode, request_id: str, wallet: Wallet, amount: int,
                     buyer: str) -> StaticRequest:
        batch = self.ledger.open_batch(code.terminal_id)
        req = self.codes.add_request(code, request_id, batch, wallet.value, amount, buyer)
        if req is None:  # a million orders in this batch: close it, go on in the next
            batch = self.ledger.close_batch(code.terminal_id, batch)
            req = self.codes.add_request(code, request_id, batch, wallet.value, amount, buyer)
        return req

    async def status(self, token: str, order_id: str) -> dict[str, Any]:
        """Where an order stands (the page polls this after the wallet paid); learning that it
        is paid books it."""
        code = self.codes.resolve(token, active=False)  # an order made before a revocation can still be looked at
        req = self.codes.request_of_order(order_id)
        order = self.channel.orders.get(order_id)
        if req is None or order is None or req.merchant_id != code.merchant_id:
            raise StaticCodeError("order_unknown", "no such order of this merchant")
        state = order.state.value
        if not order.state.final:
            state = (await self.channel.query(order_id)).state or state
        await self._follow_up(order_id, state)
        txn = self.ledger.get(txn_id_for(req.terminal_id, req.batch, req.stan))
        return {"order_id": order_id, "state": state, "amount": req.amount, "wallet": req.wallet,
                "booked": txn is not None, "rrn": txn.rrn if txn else ""}

    # --- learning the outcome and booking it ----------------------------------------------
    async def _follow_up(self, order_id: str, state: str) -> None:
        if state == OrderState.SUCCESS.value:
            await self._book(order_id)
        elif state and OrderState(state).final:
            self.codes.settle_request(order_id, "closed")
        elif order_id not in self._watchers:
            task = asyncio.create_task(self._watch(order_id))
            self._watchers[order_id] = task
            task.add_done_callback(lambda _t: self._watchers.pop(order_id, None))

    async def _watch(self, order_id: str) -> None:
        """Wait for the notify (or find out by query); close the order after `pay_window`."""
        try:
            result = await self.channel.wait_paid(order_id, timeout=self.pay_window)
            if result.state and OrderState(result.state).final:
                await self._follow_up(order_id, result.state)
        except asyncio.CancelledError:
            raise
        except Exception:  # a watcher must not die silently: the order is resumed at the next start
            log.exception("static order %s: following it failed", order_id)

    async def _book(self, order_id: str) -> None:
        async with self._booking:  # the watcher and a status look may both learn it
            req = self.codes.request_of_order(order_id)
            if req is None or req.outcome:
                return
            order = self.channel.orders.get(order_id)
            record = TxnRecord(req.terminal_id, req.merchant_id, req.batch, req.stan, TxnKind.QR_MERCHANT, Channel.QR,
                               req.amount, CURRENCY, self.ledger.next_rrn(), order.wallet_txn_id[-6:], "00",
                               extra={"order_id": order_id, "wallet": order.wallet, "provider": order.provider,
                                      "source": SOURCE})
            try:
                await self.writer.commit(CommitUnit((JournalEntry.authorised(record),)))
            except DuplicateTransaction:
                pass  # booked before a restart lost the mark
            except Rejected as exc:  # the virtual batch was closed under it, say: give the money back
                log.error("static order %s refused by the ledger (%s): reversing it at the wallet", order_id, exc)
                await self.channel.reverse(order_id)
                self.codes.settle_request(order_id, "given back")
                return
            self.codes.settle_request(order_id, "booked")
            log.info("static order %s booked: %s fen via %s", order_id, req.amount, order.provider)

    async def resume(self) -> int:
        """After a start: book what was paid meanwhile, follow what is still open."""
        pending = self.codes.open_requests()
        for req in pending:
            order = self.channel.orders.get(req.order_id)
            await self._follow_up(req.order_id, order.state.value if order else OrderState.CLOSED.value)
        return len(pending)

    async def aclose(self) -> None:
        tasks = list(self._watchers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _wallet(name: str, user_agent: str) -> Wallet:
    """The wallet named by the page, or by the in-app browser's User-Agent; both must agree."""
    by_agent = wallet_of_user_agent(user_agent or "")
    try:
        named = Wallet(name) if name else None
    except ValueError:
        raise StaticCodeError("wallet_unknown", f"unknown wallet {name!r}") from None
    if named and by_agent and named is not by_agent:
        raise StaticCodeError("wallet_unknown", f"opened in the {by_agent.value} app but asks to pay with "
                                                f"{named.value}")
    if not (named or by_agent):
        raise StaticCodeError("wallet_unknown", "open the code with a wallet app (alipay, wechat or unionpay)")
    return named or by_agent
