"""What every simulated wallet gateway shares: merchant contracts, faults, notify, serving.

A `Gateway` is one provider's front door to a wallet, in that wallet's API style
(subclasses in sim_alipay, sim_wechat, sim_unionpay). The customer app API of a wallet
(`customer_app`) is separate: it is how the customer CLI stands in for the phone app.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from .agreement import MAX_SKEW_S, PATH as AGREEMENT_PATH, SIGNATURE_HEADER
from .book import Order, Refusal, WalletBook, WalletRefusal
from .codes import mask_code
from .faults import FaultPlan
from .notifier import Notifier
from .signing import Verifier, verify_b64

log = logging.getLogger("acquirer.wallets.sim")


@dataclass
class MerchantContract:
    """A merchant's account with the wallet through one provider, and how it signs."""

    merchant: str  # app_id / mchid / merId: the merchant's id in the wallet's books
    verifier: Verifier  # the public key the merchant registered
    serial: str = ""  # that key's serial / certId
    apiv3_key: bytes = b""  # WeChat style: the SM4 key notify resources are encrypted under
    sign_type: str = "SM2"


Process = Callable[[bool], web.Response]  # forge -> the answer


class Gateway:
    style = ""

    def __init__(self, name: str, book: WalletBook, contracts: list[MerchantContract], *,
                 faults: FaultPlan | None = None, notifier: Notifier | None = None):
        self.name, self.book = name, book
        self.contracts = {c.merchant: c for c in contracts}
        self.faults = faults or FaultPlan()
        self.notifier = notifier or Notifier()
        self.base_url = ""  # set once the site is bound; bill download links need it
        self._bills: dict[str, bytes] = {}
        self._agreement_nonces: dict[str, float] = {}  # seen nonces, kept as long as their timestamp is fresh
        book.paid_listeners.append(self._on_paid)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/bills/{token}", self._download_bill)
        app.router.add_post(AGREEMENT_PATH, self._agreement_code)
        self.add_routes(app)
        return app

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # --- faults ----------------------------------------------------------------------
    async def guarded(self, operation: str, process: Process, system_error: Callable[[], web.Response]):
        """Run `process(forge)` under the fault plan for `operation`."""
        fault = self.faults.take(operation)
        await self.faults.delay()
        if fault == "timeout":
            await self.faults.hang()
            return web.Response(status=504)
        if fault == "http_500":
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault == "system_error":
            return system_error()
        response = process(fault == "bad_signature")
        if fault == "timeout_after":
            await self.faults.hang()
        return response

    # --- notify ----------------------------------------------------------------------
    def _on_paid(self, order: Order) -> None:
        contract = self.contracts.get(order.merchant)
        if contract is None or not order.notify_url:
            return  # another provider's merchant, or nobody to tell
        self.notifier.send(order.notify_url, order.out_trade_no, lambda: self.notify_message(contract, order),
                           self.acknowledged)

    def notify_message(self, contract: MerchantContract, order: Order) -> tuple[dict[str, str], bytes]:
        raise NotImplementedError

    @staticmethod
    def acknowledged(status: int, body: bytes) -> bool:
        return status in (200, 204)

    # --- bills -----------------------------------------------------------------------
    def publish_bill(self, content: bytes) -> str:
        token = secrets.token_urlsafe(16)
        self._bills[token] = content
        return f"{self.base_url}/bills/{token}"

    async def _download_bill(self, request: web.Request) -> web.Response:
        content = self._bills.get(request.match_info["token"])
        if content is None:
            return web.Response(status=404, text="bill link unknown or expired")
        return web.Response(body=content, content_type="text/csv", charset="utf-8")


    # --- face pay: a code under the customer's agreement (acquirer/wallets/agreement.py) ----
    async def _agreement_code(self, request: web.Request) -> web.Response:
        def refuse(status: int, error: str, message: str) -> web.Response:
            return web.json_response({"error": error, "message": message}, status=status)

        body = (await request.read()).decode("utf-8", "replace")
        try:
            data = json.loads(body)
            merchant, account = str(data["merchant"]), str(data["account"])
            timestamp, nonce = float(data["timestamp"]), str(data["nonce"])
        except (ValueError, KeyError, TypeError):
            return refuse(400, "format", "JSON body with merchant, account, timestamp and nonce expected")
        contract = self.contracts.get(merchant)
        if contract is None:
            return refuse(403, "merchant_unknown", "no such merchant contract")
        if not verify_b64(contract.verifier, request.headers.get(SIGNATURE_HEADER, ""), body):
            return refuse(401, "sign_error", "signature does not verify")
        now = self.book.clock()
        self._agreement_nonces = {n: t for n, t in self._agreement_nonces.items() if abs(now - t) <= MAX_SKEW_S}
        if abs(now - timestamp) > MAX_SKEW_S or nonce in self._agreement_nonces:
            return refuse(401, "sign_error", "stale or replayed request")
        self._agreement_nonces[nonce] = timestamp
        try:
            code = self.book.agreement_code(account)
        except WalletRefusal as exc:
            log_refusal(self.name, "agreement_code", exc)
            return refuse(403, exc.reason.value, exc.message)
        return web.json_response({"code": code, "expires_in": int(self.book.code_ttl)})


def log_refusal(gateway: str, operation: str, exc: WalletRefusal, code: str = "") -> None:
    log.info("%s %s refused: %s%s", gateway, operation, exc.reason.value, f" ({mask_code(code)})" if code else "")


# --- the customer app API --------------------------------------------------------------
_APP_STATUS = {Refusal.BAD_PASSWORD: 403, Refusal.ACCOUNT_UNKNOWN: 404, Refusal.INSUFFICIENT_FUNDS: 402}


def customer_app(book: WalletBook) -> web.Application:
    """JSON endpoints the customer CLI calls in place of the phone app.

    Every call that moves money or shows a code carries the account's password (the
    app's login and payment password in one, for a simulator); none of it is logged.
    """
    async def body(request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":"format","message":"JSON body expected"}',
                                     content_type="application/json")
        return data if isinstance(data, dict) else {}

    def refused(exc: WalletRefusal) -> web.Response:
        return web.json_response({"error": exc.reason.value, "message": exc.message},
                                 status=_APP_STATUS.get(exc.reason, 409))

    def view(order: Order) -> dict:
        return {"trade_no": order.trade_no, "amount": order.amount, "status": order.status.value,
                "merchant": order.merchant, "description": order.description}

    async def paycode(request):
        data = await body(request)
        try:
            code = book.issue_code(str(data.get("account", "")), str(data.get("password", "")))
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response({"code": code, "expires_in": int(book.code_ttl), "wallet": book.wallet.value})

    async def scan(request):
        data = await body(request)
        try:
            order = book.scan(str(data.get("account", "")), str(data.get("password", "")), str(data.get("qr", "")))
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response(view(order))

    async def pending(request):
        data = await body(request)
        try:
            book.authenticate(str(data.get("account", "")), str(data.get("password", "")))
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response({"pending": [view(o) for o in book.pending(str(data["account"]))]})

    async def confirm(request):
        data = await body(request)
        try:
            order = book.confirm(str(data.get("account", "")), str(data.get("password", "")),
                                 data.get("trade_no") or None)
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response(view(order))

    async def agree(request):
        data = await body(request)
        try:
            acct = book.agree(str(data.get("account", "")), str(data.get("password", "")))
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response({"account": acct.account_id, "agreement": "face_pay"})

    async def balance(request):
        data = await body(request)
        try:
            acct = book.authenticate(str(data.get("account", "")), str(data.get("password", "")))
        except WalletRefusal as exc:
            return refused(exc)
        return web.json_response({"account": acct.account_id, "balance": acct.balance})

    app = web.Application()
    for path, handler in (("paycode", paycode), ("scan", scan), ("pending", pending), ("confirm", confirm),
                          ("agree", agree), ("balance", balance)):
        app.router.add_post(f"/app/{path}", handler)
    return app
