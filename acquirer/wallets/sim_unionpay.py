"""A UnionPay-QR-style wallet gateway: form fields in and out, SM2 over the sorted string.

One back-end endpoint, `/gateway/api/backTransReq.do`; the operation is `txnType` +
`txnSubType` (01/06 pay a customer code, 01/07 apply for a merchant QR, 00 query, 31
reverse, 32 close, 04 refund, 76 bill file). Fields keep UnionPay's names: `merId`,
`orderId`, `txnTime`, `txnAmt` (fen), `qrNo`, `backUrl`, `origOrderId`, `queryId`,
`respCode`/`respMsg`, `certId`, `signature` (SM2 over the sorted `k=v&...` of every
other non-empty field, base64). The response-code table is in docs/wallets.md.
"""
from __future__ import annotations

import base64
import urllib.parse

from aiohttp import web

from .book import Order, Refusal, Status, WalletRefusal
from .clock import cst
from .faults import spoil
from .gateway import Gateway, MerchantContract, log_refusal
from .signing import SM2, Signer, new_signer, sign_b64, sorted_params, verify_b64

RESP = {
    Refusal.CODE_INVALID: "14", Refusal.CODE_USED: "15", Refusal.CODE_EXPIRED: "33",
    Refusal.INSUFFICIENT_FUNDS: "51", Refusal.AMOUNT_INVALID: "13", Refusal.ORDER_MISMATCH: "12",
    Refusal.ORDER_CLOSED: "35", Refusal.ORDER_PAID: "36", Refusal.ORDER_NOT_FOUND: "34",
    Refusal.CANNOT_REVERSE: "37", Refusal.REFUND_EXCEEDS: "64", Refusal.REFUND_MISMATCH: "12",
}
OPERATIONS = {("01", "06"): "pay", ("01", "07"): "precreate", ("00", "00"): "query", ("32", "00"): "close",
              ("31", "00"): "reverse", ("04", "00"): "refund", ("76", "01"): "bill"}
ORDER_STATE = {Status.WAIT_PAY: "WAIT", Status.USER_PAYING: "PAYING", Status.SUCCESS: "SUCCESS",
               Status.CLOSED: "CLOSED", Status.REVERSED: "REVERSED"}
ORIG_RESP = {Status.WAIT_PAY: "05", Status.USER_PAYING: "05", Status.SUCCESS: "00", Status.CLOSED: "35",
             Status.REVERSED: "35"}


def _txn_time(ts: float) -> str:
    return cst(ts).strftime("%Y%m%d%H%M%S")


class UnionPayGateway(Gateway):
    style = "unionpay"

    def __init__(self, *args, platform: Signer | None = None, platform_cert_id: str = "69042905377", **kw):
        super().__init__(*args, **kw)
        self.platform = platform or new_signer(SM2)
        self.platform_cert_id = platform_cert_id

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/gateway/api/backTransReq.do", self._gateway)

    def signed(self, fields: dict[str, str], forge: bool = False) -> dict[str, str]:
        fields = {"version": "1.0.0", "encoding": "UTF-8", "signMethod": "SM2", "certId": self.platform_cert_id,
                  **{k: str(v) for k, v in fields.items()}}
        signature = sign_b64(self.platform, sorted_params(fields, ("signature",)))
        fields["signature"] = spoil(signature) if forge else signature
        return fields

    def _answer(self, fields: dict[str, str], forge: bool = False) -> web.Response:
        return web.Response(text=urllib.parse.urlencode(self.signed(fields, forge)),
                            content_type="application/x-www-form-urlencoded", charset="utf-8")

    async def _gateway(self, request: web.Request) -> web.Response:
        req = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        echo = {k: req.get(k, "") for k in ("txnType", "txnSubType", "merId", "orderId", "txnTime")}
        contract = self.contracts.get(req.get("merId", ""))
        if contract is None or req.get("certId") != contract.serial:
            return self._answer({**echo, "respCode": "11", "respMsg": "unknown merchant or certificate"})
        if not verify_b64(contract.verifier, req.get("signature", ""), sorted_params(req, ("signature",))):
            return self._answer({**echo, "respCode": "11", "respMsg": "signature check failed"})
        operation = OPERATIONS.get((req.get("txnType", ""), req.get("txnSubType", "")))
        if operation is None:
            return self._answer({**echo, "respCode": "10", "respMsg": "unknown txnType/txnSubType"})

        def process(forge: bool) -> web.Response:
            try:
                fields = getattr(self, "_" + operation)(contract, req)
            except WalletRefusal as exc:
                log_refusal(self.name, operation, exc, req.get("qrNo", ""))
                fields = {"respCode": RESP.get(exc.reason, "06"), "respMsg": exc.message}
            except (KeyError, ValueError) as exc:
                fields = {"respCode": "10", "respMsg": f"missing or bad field: {exc}"}
            return self._answer({**echo, **fields}, forge)

        return await self.guarded(operation, process,
                                  lambda: self._answer({**echo, "respCode": "06", "respMsg": "system busy, query later"}))

    # --- operations --------------------------------------------------------------------
    @staticmethod
    def _amount(req: dict) -> int:
        if not req["txnAmt"].isdigit():
            raise ValueError("txnAmt must be digits (fen)")
        return int(req["txnAmt"])

    def _pay(self, contract: MerchantContract, req: dict) -> dict:
        order = self.book.micropay(contract.merchant, req["orderId"], req["qrNo"], self._amount(req),
                                   req.get("orderDesc", ""), req.get("backUrl", ""))
        if order.status in (Status.CLOSED, Status.REVERSED):
            raise WalletRefusal(Refusal.ORDER_CLOSED, f"order is {order.status.value.lower()}")
        code = "00" if order.status is Status.SUCCESS else "05"
        return {"respCode": code, "respMsg": "success" if code == "00" else "accepted, customer is confirming",
                "queryId": order.trade_no, "txnAmt": str(order.amount)}

    def _precreate(self, contract: MerchantContract, req: dict) -> dict:
        order = self.book.precreate(contract.merchant, req["orderId"], self._amount(req), req.get("orderDesc", ""),
                                    req.get("backUrl", ""))
        return {"respCode": "00", "respMsg": "success", "qrCode": self.book.code_url(order)}

    def _query(self, contract: MerchantContract, req: dict) -> dict:
        order = self.book.query(contract.merchant, req["orderId"])
        return {"respCode": "00", "respMsg": "success", "queryId": order.trade_no, "txnAmt": str(order.amount),
                "origRespCode": ORIG_RESP[order.status], "orderState": ORDER_STATE[order.status],
                "refundedAmt": str(order.refunded)}

    def _close(self, contract: MerchantContract, req: dict) -> dict:
        order = self.book.close(contract.merchant, req["origOrderId"])
        return {"respCode": "00", "respMsg": "closed", "queryId": order.trade_no}

    def _reverse(self, contract: MerchantContract, req: dict) -> dict:
        order = self.book.reverse(contract.merchant, req["origOrderId"])
        return {"respCode": "00", "respMsg": "reversed", "queryId": order.trade_no}

    def _refund(self, contract: MerchantContract, req: dict) -> dict:
        refund = self.book.refund(contract.merchant, req["origOrderId"], req["orderId"], self._amount(req))
        return {"respCode": "00", "respMsg": "success", "queryId": refund.refund_no, "txnAmt": str(refund.amount),
                "origOrderId": refund.out_trade_no}

    def _bill(self, contract: MerchantContract, req: dict) -> dict:
        date = req["billDate"]  # YYYYMMDD
        day = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
        lines = ["orderId|origOrderId|queryId|txnType|txnAmt|txnTime"]
        for e in self.book.bill(contract.merchant, day):
            order_id, orig = (e.out_refund_no, e.out_trade_no) if e.kind == "REFUND" else (e.out_trade_no, "")
            txn_type = {"PAY": "01", "REFUND": "04", "REVERSAL": "31"}[e.kind]
            lines.append(f"{order_id}|{orig}|{e.trade_no}|{txn_type}|{e.amount}|{_txn_time(e.at)}")
        content = ("\n".join(lines) + "\n").encode()
        return {"respCode": "00", "respMsg": "success", "fileName": f"INN{date[2:]}ZM_{contract.merchant}",
                "fileContent": base64.b64encode(content).decode()}

    # --- notify ------------------------------------------------------------------------
    def notify_message(self, contract: MerchantContract, order: Order) -> tuple[dict[str, str], bytes]:
        fields = self.signed({"txnType": "01", "txnSubType": "07" if order.product == "NATIVE" else "06",
                              "merId": contract.merchant, "orderId": order.out_trade_no,
                              "txnTime": _txn_time(order.created_at), "txnAmt": str(order.amount),
                              "queryId": order.trade_no, "respCode": "00", "respMsg": "success",
                              "settleDate": cst(order.paid_at or order.created_at).strftime("%m%d")})
        return {"Content-Type": "application/x-www-form-urlencoded"}, urllib.parse.urlencode(fields).encode()
