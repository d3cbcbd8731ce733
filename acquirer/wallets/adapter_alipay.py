"""Alipay-style provider adapter: signed form requests to `gateway.do`, signed JSON answers."""
from __future__ import annotations

import json
import urllib.parse

from .adapter import (BillRow, Decline, NotifyAck, NotifyEvent, Outcome, WalletAdapter, WalletAnswer,
                      WalletProtocolError, WalletSignatureError)
from .clock import cst, fen, yuan
from .signing import sign_b64, sorted_params, verify_b64

DECLINES = {
    "ACQ.PAYMENT_AUTH_CODE_INVALID": Decline.CODE_INVALID, "ACQ.PAYMENT_AUTH_CODE_USED": Decline.CODE_USED,
    "ACQ.PAYMENT_AUTH_CODE_EXPIRED": Decline.CODE_EXPIRED, "ACQ.BUYER_BALANCE_NOT_ENOUGH": Decline.INSUFFICIENT_FUNDS,
    "ACQ.INVALID_PARAMETER": Decline.AMOUNT_INVALID, "ACQ.CONTEXT_INCONSISTENT": Decline.ORDER_MISMATCH,
    "ACQ.TRADE_HAS_CLOSE": Decline.ORDER_CLOSED, "ACQ.TRADE_HAS_SUCCESS": Decline.ORDER_PAID,
    "ACQ.TRADE_STATUS_ERROR": Decline.CANNOT_REVERSE, "ACQ.REFUND_FEE_ERROR": Decline.REFUND_EXCEEDS,
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": Decline.REFUND_MISMATCH,
}
TRADE_STATUS = {"WAIT_BUYER_PAY": Outcome.WAITING, "TRADE_SUCCESS": Outcome.SUCCESS,
                "TRADE_FINISHED": Outcome.SUCCESS, "TRADE_CLOSED": Outcome.CLOSED}
BILL_KINDS = {"交易": "PAY", "退款": "REFUND", "撤销": "REVERSAL"}


class AlipayAdapter(WalletAdapter):
    style = "alipay"

    async def _call(self, method: str, biz: dict, notify_url: str = "") -> dict:
        params = {"app_id": self.config.merchant, "method": method, "format": "JSON", "charset": "utf-8",
                  "sign_type": self.config.sign_type, "version": "1.0",
                  "timestamp": cst(self.clock()).strftime("%Y-%m-%d %H:%M:%S"),
                  "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":"))}
        if notify_url:
            params["notify_url"] = notify_url
        params["sign"] = sign_b64(self.config.signer, sorted_params(params))
        status, _, body = await self.http("POST", self.config.base_url + "/gateway.do",
                                          data=urllib.parse.urlencode(params),
                                          headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        if status >= 500:
            raise self.bad_gateway(status)
        return self._verified(method, body)

    def _verified(self, method: str, body: bytes) -> dict:
        """The response node, only if the signature over its exact text verifies."""
        name = f'"{method.replace(".", "_")}_response":'
        try:
            text = body.decode()
            start = text.index(name) + len(name)
            node, end = json.JSONDecoder().raw_decode(text, start)
            signature = json.loads(text)["sign"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise WalletProtocolError(self.name, f"{method}: answer is not an Alipay-style response") from None
        if not verify_b64(self.config.platform, signature, text[start:end]):
            raise WalletSignatureError(self.name, f"{method}: answer signature does not verify")
        if not isinstance(node, dict):
            raise WalletProtocolError(self.name, f"{method}: response node is not an object")
        return node

    @staticmethod
    def _common(node: dict, success: Outcome) -> WalletAnswer:
        code, sub = node.get("code", ""), node.get("sub_code", "")
        txn = node.get("trade_no", "")
        amount = fen(node["total_amount"]) if node.get("total_amount") else None
        if code == "10000":
            return WalletAnswer(success, wallet_txn_id=txn, amount=amount, wallet_code=code)
        if code == "10003":
            return WalletAnswer(Outcome.USER_PAYING, wallet_txn_id=txn, amount=amount, wallet_code=code)
        if code == "20000" or sub in ("ACQ.SYSTEM_ERROR", "isp.unknow-error"):
            return WalletAnswer(Outcome.SYSTEM_ERROR, wallet_code=sub or code, text=node.get("sub_msg", ""))
        if sub == "ACQ.TRADE_NOT_EXIST":
            return WalletAnswer(Outcome.NOT_FOUND, wallet_code=sub)
        return WalletAnswer(Outcome.FAILED, DECLINES.get(sub, Decline.OTHER), wallet_code=sub or code,
                            text=node.get("sub_msg", node.get("msg", "")))

    async def pay(self, order_id: str, code: str, amount: int, description: str = "") -> WalletAnswer:
        node = await self._call("alipay.trade.pay", {"out_trade_no": order_id, "scene": "bar_code", "auth_code": code,
                                                     "total_amount": yuan(amount), "subject": description or order_id})
        return self._common(node, Outcome.SUCCESS)

    async def precreate(self, order_id: str, amount: int, description: str, notify_url: str) -> WalletAnswer:
        node = await self._call("alipay.trade.precreate", {"out_trade_no": order_id, "total_amount": yuan(amount),
                                                           "subject": description or order_id}, notify_url)
        answer = self._common(node, Outcome.OK)
        if answer.outcome is Outcome.OK:
            return WalletAnswer(Outcome.OK, code_url=node.get("qr_code", ""), wallet_code="10000")
        return answer

    async def query(self, order_id: str) -> WalletAnswer:
        node = await self._call("alipay.trade.query", {"out_trade_no": order_id})
        answer = self._common(node, Outcome.SUCCESS)
        if answer.outcome is Outcome.SUCCESS:
            status = node.get("trade_status", "")
            return WalletAnswer(TRADE_STATUS.get(status, Outcome.SYSTEM_ERROR), wallet_txn_id=answer.wallet_txn_id,
                                amount=answer.amount, wallet_code=status)
        return answer

    async def close(self, order_id: str) -> WalletAnswer:
        return self._common(await self._call("alipay.trade.close", {"out_trade_no": order_id}), Outcome.CLOSED)

    async def reverse(self, order_id: str) -> WalletAnswer:
        return self._common(await self._call("alipay.trade.cancel", {"out_trade_no": order_id}), Outcome.REVERSED)

    async def refund(self, order_id: str, refund_id: str, amount: int, total: int) -> WalletAnswer:
        node = await self._call("alipay.trade.refund", {"out_trade_no": order_id, "out_request_no": refund_id,
                                                        "refund_amount": yuan(amount)})
        answer = self._common(node, Outcome.OK)
        if answer.outcome is Outcome.OK:
            return WalletAnswer(Outcome.OK, wallet_txn_id=node.get("refund_no", ""), amount=amount, wallet_code="10000")
        return answer

    async def bill(self, date: str) -> list[BillRow]:
        node = await self._call("alipay.data.dataservice.bill.downloadurl.query",
                                {"bill_type": "trade", "bill_date": date})
        answer = self._common(node, Outcome.OK)
        if answer.outcome is not Outcome.OK:
            raise WalletProtocolError(self.name, f"bill for {date} refused: {answer.wallet_code} {answer.text}")
        status, _, content = await self.http("GET", node["bill_download_url"])
        if status != 200:
            raise self.bad_gateway(status)
        rows = []
        for line in content.decode().splitlines():
            if not line or line.startswith("#") or line.startswith("支付宝交易号"):
                continue
            cells = line.split(",")
            rows.append(BillRow(self.name, self.wallet, BILL_KINDS[cells[2]], cells[1], abs(fen(cells[4])), cells[0],
                                cells[6] if len(cells) > 6 else ""))
        return rows

    def parse_notify(self, headers: dict[str, str], body: bytes) -> NotifyEvent:
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        if not verify_b64(self.config.platform, params.get("sign", ""), sorted_params(params, ("sign", "sign_type"))):
            raise WalletSignatureError(self.name, "notify signature does not verify")
        if params.get("app_id") != self.config.merchant:
            raise WalletProtocolError(self.name, "notify is for another app_id")
        try:
            return NotifyEvent(self.name, params["out_trade_no"], params.get("trade_status") == "TRADE_SUCCESS",
                               fen(params["total_amount"]), params.get("trade_no", ""))
        except (KeyError, ValueError) as exc:
            raise WalletProtocolError(self.name, f"notify lacks {exc}") from None

    def ack(self, accepted: bool, reason: str = "") -> NotifyAck:
        return NotifyAck(200, b"success" if accepted else b"failure")
