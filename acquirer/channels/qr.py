"""The QR channel: what the pipeline calls for customer codes and merchant QR codes.

One facade over every wallet and provider route: it detects the wallet from the code,
asks the router for a provider, writes the order (with its route) before calling, and
turns whatever happens into one `ResponseCode`. Its promises:

- an order id is idempotent end to end: a retry returns the first outcome or resumes
  the unfinished one on the same provider, and never pays twice;
- a wallet answer whose signature fails is never a payment: the order is reversed;
- "user paying" is polled with back-off up to `PollPolicy.total`, then reversed;
- no answer at all (timeout) is reversed at once: reversal done, `ISSUER_TIMEOUT`;
- only a request that provably never reached a provider is tried on another one.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable

from acquirer.protocol import ResponseCode
from acquirer.wallets.adapter import (Decline, NotifyAck, Outcome, WalletAdapter, WalletAnswer, WalletCallError,
                                      WalletProtocolError, WalletSignatureError, WalletTimeout, WalletUnreachable)
from acquirer.wallets.codes import Wallet, mask_code, wallet_of_code
from acquirer.wallets.orders import OrderGate, OrderState, QROrder, QROrderBook, QRRefund
from acquirer.wallets.outcomes import DECLINE_CODES, PollPolicy, QRResult, about, bad_id, not_found
from acquirer.wallets.outcomes import result_of as _result
from acquirer.wallets.reconcile import HostRecord, ReconReport, reconcile
from acquirer.wallets.routing import RouteRequest, Router
from acquirer.wallets.scoring import CallResult
from keys.hashes import sm3

__all__ = ["QRChannel", "QRResult", "PollPolicy"]

log = logging.getLogger("acquirer.channels.qr")


class QRChannel:
    name = "qr"

    def __init__(self, adapters: Iterable[WalletAdapter], router: Router, orders: QROrderBook | None = None, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 poll: PollPolicy = PollPolicy(), notify_base_url: str = ""):
        self.adapters = {a.name: a for a in adapters}
        self.router, self.clock, self.sleep, self.poll = router, clock, sleep, poll
        self.orders = orders or QROrderBook(clock=clock)
        self.notify_base_url = notify_base_url.rstrip("/")
        self._gate = OrderGate()

    # --- customer-presented code ----------------------------------------------------------
    async def pay_customer_code(self, order_id: str, code: str, amount: int, merchant_id: str, terminal_id: str, *,
                                source: str = "pos", designated: str | None = None,
                                description: str = "") -> QRResult:
        if bad := bad_id(order_id):
            return bad
        async with self._gate.lock(order_id):
            digest = sm3(code.strip().encode()).hex()
            order = self.orders.get(order_id)
            if order is not None:
                if order.kind != "micropay" or order.amount != amount or order.code_digest != digest:
                    return QRResult(ResponseCode.DUPLICATE, text="order id already used for another payment",
                                    order_id=order_id)
                if order.state.final:
                    return _result(order)
                if order.state is OrderState.REVERSAL_PENDING:
                    return await self._cancel(order, ResponseCode(order.response_code),
                                              order.text.removesuffix("; reversal pending"))
                return await self._resolve(order, ResponseCode.ISSUER_TIMEOUT)
            wallet = wallet_of_code(code)
            if amount <= 0:
                return QRResult(ResponseCode.INVALID_AMOUNT, text="amount must be more than zero", order_id=order_id)
            if wallet is None:
                log.info("order %s: %s is not a payment code of a supported wallet", order_id, mask_code(code))
                return QRResult(ResponseCode.INVALID_CARD, text="not a payment code of a supported wallet",
                                order_id=order_id)
            order = QROrder(order_id, "micropay", wallet.value, "", amount, merchant_id, terminal_id, digest)
            tried: set[str] = set()
            while True:
                adapter = self._route(order, wallet, "micropay", source, designated, tried)
                if adapter is None:
                    return _result(order)
                try:
                    answer = await adapter.pay(order_id, code.strip(), amount, description)
                except WalletUnreachable as exc:  # never delivered: nothing to undo, another route may do
                    log.warning("order %s: %s", order_id, exc)
                    self.router.record(adapter.name, CallResult.FAILED)
                    tried.add(adapter.name)
                    continue
                except WalletTimeout as exc:
                    log.warning("order %s: %s; reversing", order_id, exc)
                    self.router.record(adapter.name, CallResult.TIMEOUT)
                    return await self._cancel(order, ResponseCode.ISSUER_TIMEOUT, "wallet did not answer in time")
                except (WalletSignatureError, WalletProtocolError) as exc:
                    log.error("order %s: %s; reversing", order_id, exc)
                    self.router.record(adapter.name, CallResult.FAILED)
                    return await self._cancel(order, ResponseCode.SYSTEM_ERROR,
                                              "wallet answer failed its signature check")
                except WalletCallError as exc:  # a 5xx page: it may have gone through, find out
                    log.warning("order %s: %s; querying", order_id, exc)
                    self.router.record(adapter.name, CallResult.FAILED)
                    return await self._resolve(order, ResponseCode.SYSTEM_ERROR)
                return await self._after_pay(order, answer)

    async def _after_pay(self, order: QROrder, answer: WalletAnswer) -> QRResult:
        if answer.outcome is Outcome.SUCCESS:
            self.router.record(order.provider, CallResult.OK)
            return self._paid(order, answer.wallet_txn_id)
        if answer.outcome is Outcome.FAILED:
            self.router.record(order.provider, CallResult.OK)  # a decline: the channel itself worked
            code, text = DECLINE_CODES.get(answer.decline, (ResponseCode.DO_NOT_HONOR, "declined by the wallet"))
            return self._finish(order, OrderState.FAILED, code, f"{text} ({answer.wallet_code})")
        if answer.outcome is Outcome.USER_PAYING:
            self.router.record(order.provider, CallResult.OK)
            order.state, order.wallet_txn_id = OrderState.USER_PAYING, answer.wallet_txn_id
            self.orders.put(order)
            return await self._resolve(order, ResponseCode.ISSUER_TIMEOUT)
        self.router.record(order.provider, CallResult.FAILED)  # system error: the outcome is unknown
        return await self._resolve(order, ResponseCode.SYSTEM_ERROR)

    async def _resolve(self, order: QROrder, on_timeout: ResponseCode) -> QRResult:
        """Query with back-off until the order is final or the time is up, then reverse it."""
        adapter = self.adapters[order.provider]
        deadline, interval = self.clock() + self.poll.total, self.poll.first
        while True:
            await self._gate.nap(order.order_id, interval, self.sleep)
            current = self.orders.get(order.order_id)
            if current is not None and current.state.final:  # a notify settled it meanwhile
                return _result(current)
            try:  # follow-up calls do not feed the channel's success rate: the payment call did
                answer = await adapter.query(order.order_id)
            except WalletCallError as exc:  # an unanswered or untrusted query proves nothing: ask again
                log.warning("order %s: query: %s", order.order_id, exc)
                answer = None
            if answer is not None:
                if answer.outcome is Outcome.SUCCESS:
                    return self._paid(order, answer.wallet_txn_id)
                if answer.outcome in (Outcome.CLOSED, Outcome.REVERSED):
                    return self._finish(order, OrderState.CLOSED, ResponseCode.DO_NOT_HONOR,
                                        "the customer cancelled or could not confirm")
                if answer.outcome is Outcome.NOT_FOUND:  # never created: bury the id so it cannot be later
                    return await self._cancel(order, on_timeout, "wallet did not take the payment")
            if self.clock() >= deadline:
                text = ("customer did not confirm in time" if order.state is OrderState.USER_PAYING
                        else "wallet gave no final answer in time")
                return await self._cancel(order, on_timeout, text)
            interval = min(interval * self.poll.factor, self.poll.max_interval)

    async def _cancel(self, order: QROrder, code: ResponseCode, text: str) -> QRResult:
        """Reverse at the wallet (refunds it if it was paid, closes it if not), retrying a few times."""
        order.state, order.response_code, order.text = OrderState.REVERSAL_PENDING, code.value, text
        self.orders.put(order)
        adapter = self.adapters[order.provider]
        for attempt in range(self.poll.reverse_attempts):
            if attempt:
                await self.sleep(self.poll.first * attempt)
            try:
                answer = await adapter.reverse(order.order_id)
            except WalletCallError as exc:
                log.warning("order %s: reversal attempt %d: %s", order.order_id, attempt + 1, exc)
                continue
            if answer.outcome in (Outcome.REVERSED, Outcome.CLOSED):
                return self._finish(order, OrderState.REVERSED, code, text + "; order reversed")
            log.warning("order %s: reversal attempt %d answered %s", order.order_id, attempt + 1, answer.wallet_code)
        log.error("order %s: reversal not confirmed; it stays pending", order.order_id)
        order.text = text + "; reversal pending"
        self.orders.put(order)
        return _result(order)

    async def retry_reversals(self) -> list[QRResult]:
        """Send again every reversal the wallets have not confirmed (call it periodically)."""
        results = []
        for order in self.orders.in_state(OrderState.REVERSAL_PENDING):
            async with self._gate.lock(order.order_id):
                results.append(await self._cancel(order, ResponseCode(order.response_code),
                                                  order.text.removesuffix("; reversal pending")))
        return results

    # --- merchant-displayed code ----------------------------------------------------------
    async def precreate(self, order_id: str, amount: int, merchant_id: str, terminal_id: str,
                        wallet: Wallet | str, *, source: str = "pos", designated: str | None = None,
                        description: str = "") -> QRResult:
        wallet = Wallet(wallet)
        if bad := bad_id(order_id):
            return bad
        async with self._gate.lock(order_id):
            order = self.orders.get(order_id)
            if order is not None:
                if order.kind != "precreate" or order.amount != amount or order.wallet != wallet.value:
                    return QRResult(ResponseCode.DUPLICATE, text="order id already used for another order",
                                    order_id=order_id)
                return _result(order)
            if amount <= 0:
                return QRResult(ResponseCode.INVALID_AMOUNT, text="amount must be more than zero", order_id=order_id)
            order = QROrder(order_id, "precreate", wallet.value, "", amount, merchant_id, terminal_id)
            tried: set[str] = set()
            while True:
                adapter = self._route(order, wallet, "precreate", source, designated, tried)
                if adapter is None:
                    return _result(order)
                notify = f"{self.notify_base_url}/notify/{adapter.name}" if self.notify_base_url else ""
                try:
                    answer = await adapter.precreate(order_id, amount, description, notify)
                except WalletUnreachable:
                    self.router.record(adapter.name, CallResult.FAILED)
                    tried.add(adapter.name)
                    continue
                except WalletCallError as exc:  # no QR was shown to anyone: reversing it closes it
                    log.warning("order %s: precreate: %s; closing", order_id, exc)
                    self.router.record(adapter.name, CallResult.TIMEOUT if isinstance(exc, WalletTimeout)
                                       else CallResult.FAILED)
                    return await self._cancel(order, ResponseCode.ISSUER_TIMEOUT if isinstance(exc, WalletTimeout)
                                              else ResponseCode.SYSTEM_ERROR, "wallet could not create the QR")
                self.router.record(adapter.name, CallResult.OK if answer.outcome is not Outcome.SYSTEM_ERROR
                                   else CallResult.FAILED)
                if answer.outcome is Outcome.OK and answer.code_url:
                    order.code_url = answer.code_url
                    return self._finish(order, OrderState.WAITING, ResponseCode.APPROVED, "show the QR to the customer")
                code, text = DECLINE_CODES.get(answer.decline, (ResponseCode.SYSTEM_ERROR, "wallet refused the QR"))
                return self._finish(order, OrderState.FAILED, code, f"{text} ({answer.wallet_code})")

    async def wait_paid(self, order_id: str, timeout: float | None = None) -> QRResult:
        """Wait for the notify (or find out by query) that a merchant QR was paid; close it at timeout."""
        order = self.orders.get(order_id)
        if order is None:
            return not_found(order_id)
        deadline, interval = self.clock() + (self.poll.total if timeout is None else timeout), self.poll.first
        while not order.state.final:
            result = await self.query(order_id)
            if result.state and OrderState(result.state).final:
                return result
            if self.clock() >= deadline:
                return await self.close(order_id)
            await self._gate.nap(order_id, interval, self.sleep)
            interval = min(interval * self.poll.factor, self.poll.max_interval)
            order = self.orders.get(order_id)
        return _result(order)

    async def query(self, order_id: str) -> QRResult:
        order = self.orders.get(order_id)
        if order is None:
            return not_found(order_id)
        if order.state.final or not order.provider:
            return _result(order)
        try:
            answer = await self.adapters[order.provider].query(order_id)
        except WalletCallError as exc:
            return about(order, ResponseCode.ISSUER_TIMEOUT, f"query failed: {exc}")
        if answer.outcome is Outcome.SUCCESS:
            return self._paid(order, answer.wallet_txn_id)
        if answer.outcome in (Outcome.CLOSED, Outcome.REVERSED):
            return self._finish(order, OrderState.CLOSED, ResponseCode.DO_NOT_HONOR, "order closed at the wallet")
        return about(order, ResponseCode.USER_PAYING, "not paid yet")

    async def close(self, order_id: str) -> QRResult:
        async with self._gate.lock(order_id):
            order = self.orders.get(order_id)
            if order is None:
                return not_found(order_id)
            if order.state.final:
                return _result(order)
            try:
                answer = await self.adapters[order.provider].close(order_id)
            except WalletCallError as exc:
                return about(order, ResponseCode.ISSUER_TIMEOUT, f"close failed: {exc}")
            if answer.outcome is Outcome.FAILED and answer.decline is Decline.ORDER_PAID:
                return self._paid(order, answer.wallet_txn_id)  # paid just before the close
            if answer.outcome in (Outcome.CLOSED, Outcome.REVERSED, Outcome.NOT_FOUND):
                return self._finish(order, OrderState.CLOSED, ResponseCode.ISSUER_TIMEOUT,
                                    "customer did not pay in time; QR closed")
            return about(order, ResponseCode.SYSTEM_ERROR, f"close refused ({answer.wallet_code})")

    async def reverse(self, order_id: str) -> QRResult:
        """Undo an order whatever its state (the pipeline's give-back when the ledger refuses)."""
        async with self._gate.lock(order_id):
            order = self.orders.get(order_id)
            if order is None:
                return not_found(order_id)
            if order.state in (OrderState.REVERSED, OrderState.CLOSED, OrderState.FAILED) or not order.provider:
                return _result(order)
            return await self._cancel(order, ResponseCode.DO_NOT_HONOR, "reversed by the acquirer")

    # --- refunds ----------------------------------------------------------------------------
    async def refund(self, order_id: str, refund_id: str, amount: int) -> QRResult:
        if bad := bad_id(refund_id):
            return bad
        async with self._gate.lock(order_id):
            order = self.orders.get(order_id)
            if order is None:
                return not_found(order_id)
            done = self.orders.get_refund(refund_id)
            if done is not None and (done.order_id != order_id or done.amount != amount):
                return QRResult(ResponseCode.DUPLICATE, text="refund id already used for another refund",
                                order_id=order_id)
            if done is not None and done.state != "SENT":
                return about(order, ResponseCode(done.response_code), done.text, txn=done.wallet_refund_id,
                             amount=amount, state=done.state)
            if order.state is not OrderState.SUCCESS:
                return QRResult(ResponseCode.INVALID_TRANSACTION, text=f"order is {order.state.value}, not paid",
                                order_id=order_id)
            if done is None and (amount <= 0 or self.orders.refunded(order_id) + amount > order.amount):
                return QRResult(ResponseCode.ORIGINAL_AMOUNT_INCORRECT, text="refund exceeds what remains",
                                order_id=order_id)
            refund = done or self.orders.put_refund(QRRefund(refund_id, order_id, amount))
            try:  # always the order's own provider: the money sits with that merchant account
                answer = await self.adapters[order.provider].refund(order_id, refund_id, amount, order.amount)
            except WalletCallError as exc:  # the wallet keys refunds by refund id: a retry is safe
                return about(order, ResponseCode.ISSUER_TIMEOUT,
                             f"refund outcome unknown ({exc}); retry with the same refund id", amount=amount, state="SENT")
            if answer.outcome is Outcome.OK:
                refund.state, refund.response_code, refund.text = "SUCCESS", ResponseCode.APPROVED.value, "refunded"
                refund.wallet_refund_id = answer.wallet_txn_id
            elif answer.outcome is Outcome.SYSTEM_ERROR:
                return about(order, ResponseCode.ISSUER_TIMEOUT, "wallet busy; retry with the same refund id",
                             amount=amount, state="SENT")
            else:
                code, text = DECLINE_CODES.get(answer.decline, (ResponseCode.DO_NOT_HONOR, "refund refused"))
                refund.state, refund.response_code, refund.text = "FAILED", code.value, f"{text} ({answer.wallet_code})"
            self.orders.put_refund(refund)
            return about(order, ResponseCode(refund.response_code), refund.text, txn=refund.wallet_refund_id,
                         amount=amount, state=refund.state)

    # --- notify and reconciliation ----------------------------------------------------------
    async def handle_notify(self, provider: str, headers: dict[str, str], body: bytes) -> NotifyAck:
        adapter = self.adapters.get(provider)
        if adapter is None:
            return NotifyAck(404, b"unknown provider")
        try:
            event = adapter.parse_notify(headers, body)
        except WalletCallError as exc:  # forged or unreadable: not acknowledged, never a payment
            log.error("notify from %s refused: %s", provider, exc)
            return adapter.ack(False, "signature or format check failed")
        # no order lock: a payment being polled holds it, and updating the book is one step anyway
        order = self.orders.get(event.order_id)
        if order is None or order.provider != provider or order.amount != event.amount:
            log.error("notify from %s for order %s does not match our order", provider, event.order_id)
            return adapter.ack(False, "no matching order")
        if event.paid and order.state in (OrderState.CLOSED, OrderState.REVERSED, OrderState.FAILED):
            log.error("order %s: paid after we gave it up; reconciliation will show it", order.order_id)
        elif event.paid:
            self._paid(order, event.wallet_txn_id)
        return adapter.ack(True)

    async def reconcile(self, date: str, records: Iterable[HostRecord]) -> ReconReport:
        """Fetch every provider's bill for `date` (YYYY-MM-DD) and match it against `records`."""
        rows, unavailable = [], {}
        for name, adapter in sorted(self.adapters.items()):
            try:
                rows += await adapter.bill(date)
            except WalletCallError as exc:
                unavailable[name] = str(exc)
        report = reconcile(rows, records, date)
        report.unavailable = unavailable
        return report

    # --- inside -----------------------------------------------------------------------------
    def _route(self, order: QROrder, wallet: Wallet, product: str, source: str, designated: str | None,
               tried: set[str]) -> WalletAdapter | None:
        decision = self.router.choose(RouteRequest(order.order_id, wallet, order.amount, order.merchant_id, product,
                                                   source, designated, frozenset(tried)))
        if decision.chosen is None or decision.chosen not in self.adapters:
            code = (ResponseCode.EXCEEDS_LIMIT if decision.outcome == "over_limit" else ResponseCode.SYSTEM_ERROR)
            self._finish(order, OrderState.FAILED, code, "no payment route available: " + decision.outcome)
            return None
        order.provider, order.state = decision.chosen, OrderState.SENT
        self.orders.put(order)  # durable before the call: a retry must find this route
        return self.adapters[decision.chosen]

    def _paid(self, order: QROrder, wallet_txn_id: str) -> QRResult:
        stored = self.orders.get(order.order_id)
        if stored is not None and stored.state is OrderState.SUCCESS:  # a notify and a query both saw it
            return _result(stored)
        self.router.count_payment(order.provider, order.amount)
        order.wallet_txn_id = wallet_txn_id or order.wallet_txn_id
        return self._finish(order, OrderState.SUCCESS, ResponseCode.APPROVED, "paid")

    def _finish(self, order: QROrder, state: OrderState, code: ResponseCode, text: str) -> QRResult:
        order.state, order.response_code, order.text = state, code.value, text
        self.orders.put(order)
        if state.final:
            self._gate.settle(order.order_id)
        log.info("order %s %s via %s: %s %s", order.order_id, state.value, order.provider or "-", code.value, text)
        return _result(order)
