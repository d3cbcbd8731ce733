"""WeChat-Pay-v3-style provider adapter: signed JSON requests, signed answers, encrypted notifies."""
from __future__ import annotations

import json
import urllib.parse

from keys.errors import DecryptionError
from keys.hashes import sm3

from .adapter import (BillRow, Decline, NotifyAck, NotifyEvent, Outcome, WalletAdapter, WalletAnswer,
                      WalletProtocolError, WalletSignatureError)
from .clock import fen
from .signing import (decrypt_resource, nonce_str, sign_b64, verify_b64, wechat_answer_message, wechat_authorization,
                      wechat_request_message)

DECLINES = {
    "AUTH_CODE_INVALID": Decline.CODE_INVALID, "AUTH_CODE_USED": Decline.CODE_USED,
    "AUTHCODEEXPIRE": Decline.CODE_EXPIRED, "NOTENOUGH": Decline.INSUFFICIENT_FUNDS,
    "PARAM_ERROR": Decline.AMOUNT_INVALID, "OUT_TRADE_NO_USED": Decline.ORDER_MISMATCH,
    "ORDERCLOSED": Decline.ORDER_CLOSED, "ORDERPAID": Decline.ORDER_PAID, "REFUND_FEE_EXCEED": Decline.REFUND_EXCEEDS,
}
TRADE_STATE = {"SUCCESS": Outcome.SUCCESS, "REFUND": Outcome.SUCCESS, "NOTPAY": Outcome.WAITING,
               "USERPAYING": Outcome.WAITING, "CLOSED": Outcome.CLOSED, "REVOKED": Outcome.REVERSED,
               "PAYERROR": Outcome.FAILED}
BILL_KINDS = {"SUCCESS": "PAY", "REFUND": "REFUND", "REVOKED": "REVERSAL"}
FRESHNESS = 300


class WeChatAdapter(WalletAdapter):
    style = "wechat"

    def _check_signed(self, headers: dict[str, str], body: str, what: str) -> None:
        """Platform serial, freshness and signature of an answer or a notify, in that order."""
        headers = {k.lower(): v for k, v in headers.items()}  # HTTP header names are case-insensitive
        ts, nonce = headers.get("wechatpay-timestamp", ""), headers.get("wechatpay-nonce", "")
        if headers.get("wechatpay-serial") != self.config.platform_serial:
            raise WalletSignatureError(self.name, f"{what}: signed by an unknown platform key")
        if not ts.isdigit() or abs(self.clock() - int(ts)) > FRESHNESS:
            raise WalletSignatureError(self.name, f"{what}: signature timestamp is stale")
        if not verify_b64(self.config.platform, headers.get("wechatpay-signature", ""),
                          wechat_answer_message(ts, nonce, body)):
            raise WalletSignatureError(self.name, f"{what}: signature does not verify")

    async def _call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        ts, nonce = str(int(self.clock())), nonce_str()
        signature = sign_b64(self.config.signer, wechat_request_message(method, path, ts, nonce, body))
        headers = {"Authorization": wechat_authorization(self.config.merchant, self.config.key_serial, ts, nonce,
                                                         signature),
                   "Accept": "application/json", "Content-Type": "application/json"}
        status, answer_headers, raw = await self.http(method, self.config.base_url + path,
                                                      data=body.encode() if body else None, headers=headers)
        if status >= 500 and not any(k.lower() == "wechatpay-signature" for k in answer_headers):
            raise self.bad_gateway(status)
        text = raw.decode("utf-8", "replace")
        self._check_signed(answer_headers, text, f"{method} {path.split('?')[0]}")
        try:
            return status, json.loads(text) if text else {}
        except ValueError:
            raise WalletProtocolError(self.name, f"{path}: answer is not JSON") from None

    @staticmethod
    def _error(status: int, data: dict) -> WalletAnswer:
        code = data.get("code", str(status))
        if status >= 500 or code == "SYSTEM_ERROR":
            return WalletAnswer(Outcome.SYSTEM_ERROR, wallet_code=code, text=data.get("message", ""))
        if code == "ORDER_NOT_EXIST":
            return WalletAnswer(Outcome.NOT_FOUND, wallet_code=code)
        if code == "USERPAYING":
            return WalletAnswer(Outcome.USER_PAYING, wallet_code=code)
        return WalletAnswer(Outcome.FAILED, DECLINES.get(code, Decline.OTHER), wallet_code=code,
                            text=data.get("message", ""))

    def _transaction(self, data: dict) -> WalletAnswer:
        state = data.get("trade_state", "")
        return WalletAnswer(TRADE_STATE.get(state, Outcome.SYSTEM_ERROR), wallet_txn_id=data.get("transaction_id", ""),
                            amount=(data.get("amount") or {}).get("total"), wallet_code=state)

    async def pay(self, order_id: str, code: str, amount: int, description: str = "") -> WalletAnswer:
        status, data = await self._call("POST", "/v3/pay/transactions/codepay", {
            "mchid": self.config.merchant, "description": description or order_id, "out_trade_no": order_id,
            "payer": {"auth_code": code}, "amount": {"total": amount, "currency": "CNY"}})
        if status == 200:
            return self._transaction(data)
        return self._error(status, data)

    async def precreate(self, order_id: str, amount: int, description: str, notify_url: str) -> WalletAnswer:
        status, data = await self._call("POST", "/v3/pay/transactions/native", {
            "mchid": self.config.merchant, "description": description or order_id, "out_trade_no": order_id,
            "notify_url": notify_url, "amount": {"total": amount, "currency": "CNY"}})
        if status == 200:
            return WalletAnswer(Outcome.OK, code_url=data.get("code_url", ""), wallet_code="200")
        return self._error(status, data)

    def _order_path(self, order_id: str, suffix: str = "") -> str:
        return f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(order_id, safe='')}{suffix}"

    async def query(self, order_id: str) -> WalletAnswer:
        status, data = await self._call("GET", self._order_path(order_id) + f"?mchid={self.config.merchant}")
        return self._transaction(data) if status == 200 else self._error(status, data)

    async def close(self, order_id: str) -> WalletAnswer:
        status, data = await self._call("POST", self._order_path(order_id, "/close"), {"mchid": self.config.merchant})
        return WalletAnswer(Outcome.CLOSED, wallet_code="204") if status == 204 else self._error(status, data)

    async def reverse(self, order_id: str) -> WalletAnswer:
        status, data = await self._call("POST", self._order_path(order_id, "/reverse"), {"mchid": self.config.merchant})
        return WalletAnswer(Outcome.REVERSED, wallet_code="200") if status == 200 else self._error(status, data)

    async def refund(self, order_id: str, refund_id: str, amount: int, total: int) -> WalletAnswer:
        status, data = await self._call("POST", "/v3/refund/domestic/refunds", {
            "out_trade_no": order_id, "out_refund_no": refund_id,
            "amount": {"refund": amount, "total": total, "currency": "CNY"}})
        if status == 200 and data.get("status") == "SUCCESS":
            return WalletAnswer(Outcome.OK, wallet_txn_id=data.get("refund_id", ""), amount=amount, wallet_code="SUCCESS")
        return self._error(status, data)

    async def bill(self, date: str) -> list[BillRow]:
        status, data = await self._call("GET", f"/v3/bill/tradebill?bill_date={date}&bill_type=ALL")
        if status != 200:
            answer = self._error(status, data)
            raise WalletProtocolError(self.name, f"bill for {date} refused: {answer.wallet_code} {answer.text}")
        status, _, content = await self.http("GET", data["download_url"])
        if status != 200:
            raise self.bad_gateway(status)
        if sm3(content).hex() != data.get("hash_value", "").lower():
            raise WalletSignatureError(self.name, f"bill for {date}: file does not match its signed SM3 hash")
        rows = []
        for line in content.decode().splitlines()[1:]:
            if not line.startswith("`"):
                break  # the totals block follows the detail rows
            cells = [c.lstrip("`") for c in line.split(",")]
            kind = BILL_KINDS[cells[5]]
            amount = fen(cells[6]) if kind == "PAY" else fen(cells[8])
            rows.append(BillRow(self.name, self.wallet, kind, cells[3], amount, cells[2], cells[7]))
        return rows

    def parse_notify(self, headers: dict[str, str], body: bytes) -> NotifyEvent:
        text = body.decode("utf-8", "replace")
        self._check_signed(headers, text, "notify")
        try:
            data = json.loads(text)
            plain = decrypt_resource(self.config.apiv3_key, data["resource"])
            txn = json.loads(plain)
        except DecryptionError:
            raise WalletSignatureError(self.name, "notify resource failed its SM4-GCM check") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise WalletProtocolError(self.name, f"notify unreadable: {exc}") from None
        if txn.get("mchid") != self.config.merchant:
            raise WalletProtocolError(self.name, "notify is for another merchant")
        return NotifyEvent(self.name, txn.get("out_trade_no", ""), txn.get("trade_state") == "SUCCESS",
                           int((txn.get("amount") or {}).get("total", 0)), txn.get("transaction_id", ""))

    def ack(self, accepted: bool, reason: str = "") -> NotifyAck:
        if accepted:
            return NotifyAck(204)
        return NotifyAck(500, json.dumps({"code": "FAIL", "message": reason or "rejected"}).encode(), "application/json")
