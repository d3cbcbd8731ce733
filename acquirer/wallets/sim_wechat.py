"""A WeChat-Pay-v3-style wallet gateway: REST and JSON, SM2-with-SM3 signatures in headers.

Every request carries `Authorization: WECHATPAY2-SM2-WITH-SM3 mchid=..,nonce_str=..,
signature=..,timestamp=..,serial_no=..`, the signature over `METHOD\\nURL\\nTS\\nNONCE\\n
BODY\\n`; a stale timestamp (over 5 minutes) or a nonce seen before is refused, so a
captured request cannot be replayed. Every answer, errors included, is signed with the
platform key in `Wechatpay-Signature` over `TS\\nNONCE\\nBODY\\n`. Errors are HTTP
statuses with `{"code", "message"}`; "user paying" is 202 `USERPAYING`. Notifies
carry the transaction SM4-GCM encrypted under the merchant's APIv3 key.
"""
from __future__ import annotations

import json
import secrets

from aiohttp import web

from keys.hashes import sm3

from .book import Order, Refusal, Status, WalletRefusal
from .clock import cst, yuan
from .faults import spoil
from .gateway import Gateway, MerchantContract, log_refusal
from .signing import (SM2, Signer, encrypt_resource, new_signer, nonce_str, parse_wechat_authorization, sign_b64,
                      verify_b64, wechat_answer_message, wechat_request_message)

ERRORS = {
    Refusal.CODE_INVALID: (400, "AUTH_CODE_INVALID"), Refusal.CODE_USED: (400, "AUTH_CODE_USED"),
    Refusal.CODE_EXPIRED: (400, "AUTHCODEEXPIRE"), Refusal.INSUFFICIENT_FUNDS: (403, "NOTENOUGH"),
    Refusal.AMOUNT_INVALID: (400, "PARAM_ERROR"), Refusal.ORDER_MISMATCH: (403, "OUT_TRADE_NO_USED"),
    Refusal.ORDER_CLOSED: (400, "ORDERCLOSED"), Refusal.ORDER_PAID: (400, "ORDERPAID"),
    Refusal.ORDER_NOT_FOUND: (404, "ORDER_NOT_EXIST"), Refusal.CANNOT_REVERSE: (400, "INVALID_REQUEST"),
    Refusal.REFUND_EXCEEDS: (400, "REFUND_FEE_EXCEED"), Refusal.REFUND_MISMATCH: (400, "INVALID_REQUEST"),
}
TRADE_STATE = {Status.WAIT_PAY: "NOTPAY", Status.USER_PAYING: "USERPAYING", Status.SUCCESS: "SUCCESS",
               Status.CLOSED: "CLOSED", Status.REVERSED: "REVOKED"}
FRESHNESS = 300  # seconds a request timestamp may be off


def _iso(ts: float) -> str:
    return cst(ts).isoformat(timespec="seconds")


class WeChatGateway(Gateway):
    style = "wechat"

    def __init__(self, *args, platform: Signer | None = None, platform_serial: str = "", **kw):
        super().__init__(*args, **kw)
        self.platform = platform or new_signer(SM2)
        self.platform_serial = platform_serial or "PUB_KEY_ID_" + secrets.token_hex(8).upper()
        self._nonces: dict[tuple[str, str], float] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/pay/transactions/codepay", self._handler("pay"))
        app.router.add_post("/v3/pay/transactions/native", self._handler("precreate"))
        app.router.add_get("/v3/pay/transactions/out-trade-no/{no}", self._handler("query"))
        app.router.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self._handler("close"))
        app.router.add_post("/v3/pay/transactions/out-trade-no/{no}/reverse", self._handler("reverse"))
        app.router.add_post("/v3/refund/domestic/refunds", self._handler("refund"))
        app.router.add_get("/v3/bill/tradebill", self._handler("bill"))

    # --- signing -----------------------------------------------------------------------
    def signed_headers(self, body: str, forge: bool = False) -> dict[str, str]:
        ts, nonce = str(int(self.book.clock())), nonce_str()
        signature = sign_b64(self.platform, wechat_answer_message(ts, nonce, body))
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.platform_serial,
                "Wechatpay-Signature": spoil(signature) if forge else signature,
                "Request-ID": secrets.token_hex(12)}

    def _answer(self, status: int, payload: dict | None, forge: bool = False) -> web.Response:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return web.Response(status=status, text=body or None, headers=self.signed_headers(body, forge),
                            content_type="application/json" if body else None)

    def _error(self, status: int, code: str, message: str, forge: bool = False) -> web.Response:
        return self._answer(status, {"code": code, "message": message}, forge)

    def _authenticate(self, request: web.Request, body: str) -> MerchantContract | web.Response:
        try:
            auth = parse_wechat_authorization(request.headers.get("Authorization", ""))
        except ValueError as exc:
            return self._error(401, "SIGN_ERROR", str(exc))
        contract = self.contracts.get(auth["mchid"])
        if contract is None or auth["serial_no"] != contract.serial:
            return self._error(401, "SIGN_ERROR", "unknown merchant or key serial")
        now = self.book.clock()
        if not auth["timestamp"].isdigit() or abs(now - int(auth["timestamp"])) > FRESHNESS:
            return self._error(401, "SIGN_ERROR", "request timestamp is stale")
        message = wechat_request_message(request.method, request.raw_path, auth["timestamp"], auth["nonce_str"], body)
        if not verify_b64(contract.verifier, auth["signature"], message):
            return self._error(401, "SIGN_ERROR", "signature check failed")
        self._nonces = {k: t for k, t in self._nonces.items() if now - t <= FRESHNESS}
        if (contract.merchant, auth["nonce_str"]) in self._nonces:
            return self._error(401, "SIGN_ERROR", "nonce already used: replayed request")
        self._nonces[(contract.merchant, auth["nonce_str"])] = now
        return contract

    def _handler(self, operation: str):
        async def handle(request: web.Request) -> web.Response:
            raw = await request.text()
            contract = self._authenticate(request, raw)
            if isinstance(contract, web.Response):
                return contract
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                return self._error(400, "PARAM_ERROR", "body is not JSON")

            def process(forge: bool) -> web.Response:
                try:
                    status, payload = getattr(self, "_" + operation)(contract, request, data)
                except WalletRefusal as exc:
                    log_refusal(self.name, operation, exc, str((data.get("payer") or {}).get("auth_code", "")))
                    status, code = ERRORS.get(exc.reason, (500, "SYSTEM_ERROR"))
                    return self._error(status, code, exc.message, forge)
                except (KeyError, ValueError, TypeError, AttributeError) as exc:
                    return self._error(400, "PARAM_ERROR", f"missing or bad field: {exc}", forge)
                return self._answer(status, payload, forge)

            return await self.guarded(operation, process,
                                      lambda: self._error(500, "SYSTEM_ERROR", "system busy, query the order later"))
        return handle

    # --- operations --------------------------------------------------------------------
    def _transaction(self, contract: MerchantContract, order: Order) -> dict:
        state = TRADE_STATE[order.status]
        if order.status is Status.SUCCESS and order.refunded:
            state = "REFUND"
        view = {"mchid": contract.merchant, "out_trade_no": order.out_trade_no, "transaction_id": order.trade_no,
                "trade_type": "MICROPAY" if order.product == "MICROPAY" else "NATIVE", "trade_state": state,
                "amount": {"total": order.amount, "payer_total": order.amount if order.paid_at else 0,
                           "currency": "CNY"}}
        if order.paid_at:
            view["success_time"] = _iso(order.paid_at)
        return view

    def _pay(self, contract, request, data) -> tuple[int, dict]:
        order = self.book.micropay(contract.merchant, data["out_trade_no"], data["payer"]["auth_code"],
                                   int(data["amount"]["total"]), data.get("description", ""))
        if order.status is Status.USER_PAYING:
            return 202, {"code": "USERPAYING", "message": "waiting for the customer to enter the password"}
        if order.status is not Status.SUCCESS:
            raise WalletRefusal(Refusal.ORDER_CLOSED, f"order is {order.status.value.lower()}")
        return 200, self._transaction(contract, order)

    def _precreate(self, contract, request, data) -> tuple[int, dict]:
        order = self.book.precreate(contract.merchant, data["out_trade_no"], int(data["amount"]["total"]),
                                    data.get("description", ""), data.get("notify_url", ""))
        return 200, {"code_url": self.book.code_url(order)}

    def _query(self, contract, request, data) -> tuple[int, dict]:
        if request.query.get("mchid") != contract.merchant:
            raise ValueError("mchid in the query must be the signing merchant's")
        return 200, self._transaction(contract, self.book.query(contract.merchant, request.match_info["no"]))

    def _close(self, contract, request, data) -> tuple[int, dict | None]:
        self.book.close(contract.merchant, request.match_info["no"])
        return 204, None

    def _reverse(self, contract, request, data) -> tuple[int, dict]:
        order = self.book.reverse(contract.merchant, request.match_info["no"])
        return 200, {"mchid": contract.merchant, "out_trade_no": order.out_trade_no}

    def _refund(self, contract, request, data) -> tuple[int, dict]:
        refund = self.book.refund(contract.merchant, data["out_trade_no"], data["out_refund_no"],
                                  int(data["amount"]["refund"]))
        order = self.book.query(contract.merchant, data["out_trade_no"])
        return 200, {"refund_id": refund.refund_no, "out_refund_no": refund.out_refund_no,
                     "transaction_id": order.trade_no, "out_trade_no": order.out_trade_no, "channel": "ORIGINAL",
                     "status": "SUCCESS", "success_time": _iso(refund.at),
                     "amount": {"refund": refund.amount, "total": order.amount, "currency": "CNY"}}

    def _bill(self, contract, request, data) -> tuple[int, dict]:
        date = request.query["bill_date"]
        rows = ["交易时间,商户号,微信订单号,商户订单号,交易类型,交易状态,应结订单金额,商户退款单号,退款金额"]
        paid = refunded = 0
        for e in self.book.bill(contract.merchant, date):
            state = {"PAY": "SUCCESS", "REFUND": "REFUND", "REVERSAL": "REVOKED"}[e.kind]
            pay, back = (e.amount, 0) if e.kind == "PAY" else (0, e.amount)
            paid, refunded = paid + pay, refunded + back
            order = self.book.orders.get((e.merchant, e.out_trade_no))
            cells = [cst(e.at).strftime("%Y-%m-%d %H:%M:%S"), contract.merchant, e.trade_no, e.out_trade_no,
                     "NATIVE" if order and order.product == "NATIVE" else "MICROPAY", state, yuan(pay), e.out_refund_no,
                     yuan(back)]
            rows.append(",".join("`" + c for c in cells))  # WeChat quotes every cell with a backtick
        rows += ["总交易单数,应结订单总金额,退款总金额", f"`{len(rows) - 1},`{yuan(paid)},`{yuan(refunded)}"]
        content = ("\n".join(rows) + "\n").encode()
        return 200, {"hash_type": "SM3", "hash_value": sm3(content).hex(), "download_url": self.publish_bill(content)}

    # --- notify ------------------------------------------------------------------------
    def notify_message(self, contract: MerchantContract, order: Order) -> tuple[dict[str, str], bytes]:
        resource = encrypt_resource(contract.apiv3_key, json.dumps(self._transaction(contract, order)).encode(),
                                    "transaction")
        resource["original_type"] = "transaction"
        body = json.dumps({"id": sm3(order.trade_no.encode()).hex()[:32],  # the same id on every retry
                           "create_time": _iso(self.book.clock()), "resource_type": "encrypt-resource",
                           "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功", "resource": resource},
                          separators=(",", ":"))
        headers = self.signed_headers(body)
        headers["Content-Type"] = "application/json"
        return headers, body.encode()
