"""UnionPay-QR-style provider adapter: signed form fields both ways, `respCode` outcomes."""
from __future__ import annotations

import base64
import binascii
import urllib.parse

from .adapter import (BillRow, Decline, NotifyAck, NotifyEvent, Outcome, WalletAdapter, WalletAnswer,
                      WalletProtocolError, WalletSignatureError)
from .clock import cst
from .signing import sign_b64, sorted_params, verify_b64

DECLINES = {"14": Decline.CODE_INVALID, "15": Decline.CODE_USED, "33": Decline.CODE_EXPIRED,
            "51": Decline.INSUFFICIENT_FUNDS, "13": Decline.AMOUNT_INVALID, "12": Decline.ORDER_MISMATCH,
            "35": Decline.ORDER_CLOSED, "36": Decline.ORDER_PAID, "37": Decline.CANNOT_REVERSE,
            "64": Decline.REFUND_EXCEEDS}
UNKNOWN = ("03", "04", "06")  # timeout at the wallet, state unknown, system busy: query later
BILL_KINDS = {"01": "PAY", "04": "REFUND", "31": "REVERSAL"}


class UnionPayAdapter(WalletAdapter):
    style = "unionpay"

    def _verified(self, fields: dict[str, str], what: str) -> dict[str, str]:
        if fields.get("certId") != self.config.platform_serial:
            raise WalletSignatureError(self.name, f"{what}: signed with an unknown certificate")
        if not verify_b64(self.config.platform, fields.get("signature", ""), sorted_params(fields, ("signature",))):
            raise WalletSignatureError(self.name, f"{what}: signature does not verify")
        return fields

    async def _call(self, txn_type: str, sub_type: str, fields: dict[str, str]) -> dict[str, str]:
        req = {"version": "1.0.0", "encoding": "UTF-8", "signMethod": "SM2", "certId": self.config.key_serial,
               "txnType": txn_type, "txnSubType": sub_type, "merId": self.config.merchant,
               "txnTime": cst(self.clock()).strftime("%Y%m%d%H%M%S"), **fields}
        req["signature"] = sign_b64(self.config.signer, sorted_params(req, ("signature",)))
        status, _, body = await self.http("POST", self.config.base_url + "/gateway/api/backTransReq.do",
                                          data=urllib.parse.urlencode(req),
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status >= 500:
            raise self.bad_gateway(status)
        try:
            answer = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise WalletProtocolError(self.name, f"txnType {txn_type}: answer is not form fields") from None
        return self._verified(answer, f"txnType {txn_type}")

    @staticmethod
    def _common(fields: dict[str, str], success: Outcome) -> WalletAnswer:
        code = fields.get("respCode", "")
        amount = int(fields["txnAmt"]) if fields.get("txnAmt", "").isdigit() else None
        if code == "00":
            return WalletAnswer(success, wallet_txn_id=fields.get("queryId", ""), amount=amount, wallet_code=code)
        if code == "05":
            return WalletAnswer(Outcome.USER_PAYING, wallet_txn_id=fields.get("queryId", ""), amount=amount,
                                wallet_code=code)
        if code in UNKNOWN:
            return WalletAnswer(Outcome.SYSTEM_ERROR, wallet_code=code, text=fields.get("respMsg", ""))
        if code == "34":
            return WalletAnswer(Outcome.NOT_FOUND, wallet_code=code)
        return WalletAnswer(Outcome.FAILED, DECLINES.get(code, Decline.OTHER), wallet_code=code,
                            text=fields.get("respMsg", ""))

    async def pay(self, order_id: str, code: str, amount: int, description: str = "") -> WalletAnswer:
        fields = await self._call("01", "06", {"orderId": order_id, "txnAmt": str(amount), "currencyCode": "156",
                                               "qrNo": code, "orderDesc": description})
        return self._common(fields, Outcome.SUCCESS)

    async def precreate(self, order_id: str, amount: int, description: str, notify_url: str) -> WalletAnswer:
        fields = await self._call("01", "07", {"orderId": order_id, "txnAmt": str(amount), "currencyCode": "156",
                                               "backUrl": notify_url, "orderDesc": description})
        answer = self._common(fields, Outcome.OK)
        if answer.outcome is Outcome.OK:
            return WalletAnswer(Outcome.OK, code_url=fields.get("qrCode", ""), wallet_code="00")
        return answer

    async def query(self, order_id: str) -> WalletAnswer:
        fields = await self._call("00", "00", {"orderId": order_id})
        answer = self._common(fields, Outcome.SUCCESS)
        if answer.outcome is not Outcome.SUCCESS:
            return answer
        orig, state = fields.get("origRespCode", ""), fields.get("orderState", "")
        outcome = {"00": Outcome.SUCCESS, "05": Outcome.WAITING}.get(orig)
        if orig == "35":
            outcome = Outcome.REVERSED if state == "REVERSED" else Outcome.CLOSED
        return WalletAnswer(outcome or Outcome.SYSTEM_ERROR, wallet_txn_id=answer.wallet_txn_id, amount=answer.amount,
                            wallet_code=orig)

    async def close(self, order_id: str) -> WalletAnswer:
        fields = await self._call("32", "00", {"orderId": order_id + "C", "origOrderId": order_id})
        return self._common(fields, Outcome.CLOSED)

    async def reverse(self, order_id: str) -> WalletAnswer:
        fields = await self._call("31", "00", {"orderId": order_id + "R", "origOrderId": order_id})
        return self._common(fields, Outcome.REVERSED)

    async def refund(self, order_id: str, refund_id: str, amount: int, total: int) -> WalletAnswer:
        fields = await self._call("04", "00", {"orderId": refund_id, "origOrderId": order_id, "txnAmt": str(amount),
                                               "currencyCode": "156"})
        return self._common(fields, Outcome.OK)

    async def bill(self, date: str) -> list[BillRow]:
        fields = await self._call("76", "01", {"billDate": date.replace("-", "")})
        if fields.get("respCode") != "00":
            raise WalletProtocolError(self.name, f"bill for {date} refused: {fields.get('respCode')}")
        try:
            content = base64.b64decode(fields.get("fileContent", ""), validate=True).decode()
        except (binascii.Error, ValueError):
            raise WalletProtocolError(self.name, "bill fileContent is not base64") from None
        rows = []
        for line in content.splitlines()[1:]:
            order_id, orig, query_id, txn_type, amount, _ = line.split("|")
            kind = BILL_KINDS[txn_type]
            if kind == "REFUND":
                rows.append(BillRow(self.name, self.wallet, kind, orig, int(amount), query_id, order_id))
            else:
                rows.append(BillRow(self.name, self.wallet, kind, order_id, int(amount), query_id))
        return rows

    def parse_notify(self, headers: dict[str, str], body: bytes) -> NotifyEvent:
        try:
            fields = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise WalletProtocolError(self.name, "notify is not form fields") from None
        self._verified(fields, "notify")
        if fields.get("merId") != self.config.merchant:
            raise WalletProtocolError(self.name, "notify is for another merchant")
        if not fields.get("txnAmt", "").isdigit():
            raise WalletProtocolError(self.name, "notify lacks txnAmt")
        return NotifyEvent(self.name, fields.get("orderId", ""), fields.get("respCode") == "00", int(fields["txnAmt"]),
                           fields.get("queryId", ""))

    def ack(self, accepted: bool, reason: str = "") -> NotifyAck:
        return NotifyAck(200, b"ok") if accepted else NotifyAck(500, b"rejected")
