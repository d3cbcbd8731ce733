"""An Alipay-style wallet gateway: one `gateway.do`, form parameters, signed sorted strings.

Requests: form fields `app_id, method, charset, sign_type, timestamp, version,
notify_url, biz_content` (JSON) and `sign` over the sorted `k=v&...` of all non-empty
fields but `sign`, RSA2 or SM2 as `sign_type` says (each app registers one). Answers:
`{"<method>_response": {...}, "sign": "..."}`, the signature over the exact text of the
response node. Amounts are yuan strings. Notifies are form posts signed over every field
but `sign` and `sign_type`; the merchant acknowledges with the body `success`.
"""
from __future__ import annotations

import json
import secrets
import urllib.parse

from aiohttp import web

from .book import Order, Refusal, Status, WalletRefusal
from .clock import cst, fen, yuan
from .faults import spoil
from .gateway import Gateway, MerchantContract, log_refusal
from .signing import RSA2, SM2, Signer, new_signer, sign_b64, sorted_params, verify_b64

SUB_CODES = {
    Refusal.CODE_INVALID: "ACQ.PAYMENT_AUTH_CODE_INVALID",
    Refusal.CODE_USED: "ACQ.PAYMENT_AUTH_CODE_USED",
    Refusal.CODE_EXPIRED: "ACQ.PAYMENT_AUTH_CODE_EXPIRED",
    Refusal.INSUFFICIENT_FUNDS: "ACQ.BUYER_BALANCE_NOT_ENOUGH",
    Refusal.AMOUNT_INVALID: "ACQ.INVALID_PARAMETER",
    Refusal.ORDER_MISMATCH: "ACQ.CONTEXT_INCONSISTENT",
    Refusal.ORDER_CLOSED: "ACQ.TRADE_HAS_CLOSE",
    Refusal.ORDER_PAID: "ACQ.TRADE_HAS_SUCCESS",
    Refusal.ORDER_NOT_FOUND: "ACQ.TRADE_NOT_EXIST",
    Refusal.CANNOT_REVERSE: "ACQ.TRADE_STATUS_ERROR",
    Refusal.REFUND_EXCEEDS: "ACQ.REFUND_FEE_ERROR",
    Refusal.REFUND_MISMATCH: "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
}
METHODS = {
    "alipay.trade.pay": "pay", "alipay.trade.precreate": "precreate", "alipay.trade.query": "query",
    "alipay.trade.close": "close", "alipay.trade.cancel": "reverse", "alipay.trade.refund": "refund",
    "alipay.data.dataservice.bill.downloadurl.query": "bill",
}
TRADE_STATUS = {Status.WAIT_PAY: "WAIT_BUYER_PAY", Status.USER_PAYING: "WAIT_BUYER_PAY",
                Status.SUCCESS: "TRADE_SUCCESS", Status.CLOSED: "TRADE_CLOSED", Status.REVERSED: "TRADE_CLOSED"}


def _time(ts: float) -> str:
    return cst(ts).strftime("%Y-%m-%d %H:%M:%S")


class AlipayGateway(Gateway):
    style = "alipay"

    def __init__(self, *args, platform: dict[str, Signer] | None = None, **kw):
        super().__init__(*args, **kw)
        self.platform = platform or {RSA2: new_signer(RSA2), SM2: new_signer(SM2)}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/gateway.do", self._gateway)

    def _answer(self, method: str, payload: dict, sign_type: str, forge: bool = False) -> web.Response:
        node = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        signature = sign_b64(self.platform[sign_type], node)
        name = method.replace(".", "_") + "_response"
        text = f'{{"{name}":{node},"sign":"{spoil(signature) if forge else signature}"}}'
        return web.Response(text=text, content_type="application/json", charset="utf-8")

    async def _gateway(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        method, sign_type = params.get("method", ""), params.get("sign_type", "")
        contract = self.contracts.get(params.get("app_id", ""))
        answer_type = sign_type if sign_type in (RSA2, SM2) else SM2
        if contract is None:
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id",
                                         "sub_msg": "unknown app_id"}, answer_type)
        if sign_type != contract.sign_type or not verify_b64(contract.verifier, params.get("sign", ""),
                                                             sorted_params(params)):
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-signature", "sub_msg": "signature check failed"},
                                answer_type)
        operation = METHODS.get(method)
        if operation is None:
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method",
                                         "sub_msg": f"unknown method {method}"}, sign_type)
        try:
            biz = json.loads(params.get("biz_content", "{}"))
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-biz-content", "sub_msg": "biz_content is not JSON"},
                                sign_type)

        def system_error() -> web.Response:
            return self._answer(method, {"code": "20000", "msg": "Service Currently Unavailable",
                                         "sub_code": "isp.unknow-error", "sub_msg": "system busy"}, sign_type)

        def process(forge: bool) -> web.Response:
            try:
                payload = getattr(self, "_" + operation)(contract.merchant, biz, params)
            except WalletRefusal as exc:
                log_refusal(self.name, operation, exc, biz.get("auth_code", ""))
                payload = {"code": "40004", "msg": "Business Failed", "sub_code": SUB_CODES.get(exc.reason, "ACQ.SYSTEM_ERROR"),
                           "sub_msg": exc.message, "out_trade_no": biz.get("out_trade_no", "")}
            except (KeyError, ValueError, TypeError) as exc:
                payload = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.missing-parameter",
                           "sub_msg": f"biz_content: {exc}"}
            return self._answer(method, payload, sign_type, forge)

        return await self.guarded(operation, process, system_error)

    # --- methods -----------------------------------------------------------------------
    def _trade(self, order: Order) -> dict:
        view = {"code": "10000", "msg": "Success", "trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
                "total_amount": yuan(order.amount)}
        if order.account_id:
            view["buyer_logon_id"] = order.account_id[:3] + "***"
        if order.paid_at:
            view["gmt_payment"] = _time(order.paid_at)
        return view

    def _pay(self, merchant: str, biz: dict, params: dict) -> dict:
        order = self.book.micropay(merchant, biz["out_trade_no"], biz["auth_code"], fen(biz["total_amount"]),
                                   biz.get("subject", ""), params.get("notify_url", ""))
        view = self._trade(order)
        if order.status is Status.USER_PAYING:
            view.update(code="10003", msg="order success pay inprocess")
        elif order.status is not Status.SUCCESS:
            raise WalletRefusal(Refusal.ORDER_CLOSED, f"order is {order.status.value.lower()}")
        return view

    def _precreate(self, merchant: str, biz: dict, params: dict) -> dict:
        order = self.book.precreate(merchant, biz["out_trade_no"], fen(biz["total_amount"]), biz.get("subject", ""),
                                    params.get("notify_url", ""))
        return {"code": "10000", "msg": "Success", "out_trade_no": order.out_trade_no,
                "qr_code": self.book.code_url(order)}

    def _query(self, merchant: str, biz: dict, params: dict) -> dict:
        order = self.book.query(merchant, biz["out_trade_no"])
        view = self._trade(order)
        status = TRADE_STATUS[order.status]
        if order.status is Status.SUCCESS and order.refunded == order.amount:
            status = "TRADE_CLOSED"  # Alipay closes a trade once it is refunded in full
        view["trade_status"] = status
        return view

    def _close(self, merchant: str, biz: dict, params: dict) -> dict:
        order = self.book.close(merchant, biz["out_trade_no"])
        return {"code": "10000", "msg": "Success", "trade_no": order.trade_no, "out_trade_no": order.out_trade_no}

    def _reverse(self, merchant: str, biz: dict, params: dict) -> dict:
        before = self.book.orders.get((merchant, biz["out_trade_no"]))
        paid = before is not None and before.status is Status.SUCCESS
        order = self.book.reverse(merchant, biz["out_trade_no"])
        return {"code": "10000", "msg": "Success", "trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
                "retry_flag": "N", "action": "refund" if paid else "close"}

    def _refund(self, merchant: str, biz: dict, params: dict) -> dict:
        refund = self.book.refund(merchant, biz["out_trade_no"], biz["out_request_no"], fen(biz["refund_amount"]))
        order = self.book.query(merchant, biz["out_trade_no"])
        return {"code": "10000", "msg": "Success", "trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
                "out_request_no": refund.out_refund_no, "fund_change": "Y", "refund_fee": yuan(order.refunded),
                "send_back_fee": yuan(refund.amount), "refund_no": refund.refund_no}

    def _bill(self, merchant: str, biz: dict, params: dict) -> dict:
        date = biz["bill_date"]
        lines = ["#支付宝业务明细查询", f"#账号：[{merchant}]", f"#起始日期：[{date} 00:00:00]",
                 "#-----------------------------------------业务明细列表----------------------------------------",
                 "支付宝交易号,商户订单号,业务类型,完成时间,订单金额（元）,商家实收（元）,退款批次号/请求号"]
        kinds = {"PAY": "交易", "REFUND": "退款", "REVERSAL": "撤销"}
        total = 0
        for e in self.book.bill(merchant, date):
            signed = e.amount if e.kind == "PAY" else -e.amount
            total += signed
            lines.append(f"{e.trade_no},{e.out_trade_no},{kinds[e.kind]},{_time(e.at)},{yuan(signed)},{yuan(signed)},"
                         f"{e.out_refund_no}")
        lines += ["#-----------------------------------------业务明细列表结束------------------------------------",
                  f"#交易合计：{len(lines) - 5}笔，商家实收：￥{yuan(total)}元"]
        return {"code": "10000", "msg": "Success", "bill_download_url": self.publish_bill(("\n".join(lines) + "\n").encode())}

    # --- notify ------------------------------------------------------------------------
    def notify_message(self, contract: MerchantContract, order: Order) -> tuple[dict[str, str], bytes]:
        now = self.book.clock()
        params = {"notify_time": _time(now), "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(16),
                  "app_id": contract.merchant, "charset": "utf-8", "version": "1.0", "sign_type": contract.sign_type,
                  "trade_no": order.trade_no, "out_trade_no": order.out_trade_no, "trade_status": "TRADE_SUCCESS",
                  "total_amount": yuan(order.amount), "receipt_amount": yuan(order.amount),
                  "gmt_payment": _time(order.paid_at or now)}
        params["sign"] = sign_b64(self.platform[contract.sign_type], sorted_params(params, ("sign", "sign_type")))
        return ({"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                urllib.parse.urlencode(params).encode())

    @staticmethod
    def acknowledged(status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"
