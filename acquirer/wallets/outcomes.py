"""What the QR channel answers: one result type, the poll policy, and how a wallet's
refusal becomes a response code of the wire (acquirer/protocol/codes.py).

Expired and replayed payment codes get codes of their own so the cashier knows what to
ask for: an expired code is 54 (refresh it), a code already used is 59 (a code used
twice for two orders is what a photographed code looks like), a code no wallet issued
is 14.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from acquirer.protocol import ResponseCode

from .adapter import Decline
from .orders import QROrder

DECLINE_CODES = {
    Decline.CODE_INVALID: (ResponseCode.INVALID_CARD, "payment code not recognised by the wallet"),
    Decline.CODE_USED: (ResponseCode.SUSPECTED_FRAUD, "payment code already used: ask for a fresh code"),
    Decline.CODE_EXPIRED: (ResponseCode.EXPIRED_CARD, "payment code expired: ask the customer to refresh it"),
    Decline.INSUFFICIENT_FUNDS: (ResponseCode.INSUFFICIENT_FUNDS, "wallet balance not enough"),
    Decline.AMOUNT_INVALID: (ResponseCode.INVALID_AMOUNT, "wallet refused the amount"),
    Decline.ORDER_MISMATCH: (ResponseCode.DUPLICATE, "order id already used at the wallet for another payment"),
    Decline.REFUND_EXCEEDS: (ResponseCode.ORIGINAL_AMOUNT_INCORRECT, "refund exceeds what remains of the order"),
    Decline.REFUND_MISMATCH: (ResponseCode.DUPLICATE, "refund id already used for another refund"),
}


@dataclass(frozen=True)
class QRResult:
    code: ResponseCode
    wallet: str = ""
    provider: str = ""
    wallet_txn_id: str = ""
    text: str = ""
    order_id: str = ""
    amount: int = 0
    code_url: str = ""  # merchant QR to show (precreate)
    state: str = ""  # the order's state after the call (OrderState value)


@dataclass(frozen=True)
class PollPolicy:
    first: float = 2.0  # seconds before the first query
    factor: float = 1.5
    max_interval: float = 10.0
    total: float = 60.0  # give the customer this long, then reverse / close
    reverse_attempts: int = 3


def result_of(order: QROrder) -> QRResult:
    return QRResult(ResponseCode(order.response_code or ResponseCode.SYSTEM_ERROR.value), order.wallet,
                    order.provider, order.wallet_txn_id, order.text, order.order_id, order.amount, order.code_url,
                    order.state.value)


def about(order: QROrder, code: ResponseCode, text: str, *, txn: str | None = None, amount: int | None = None,
          state: str | None = None) -> QRResult:
    """A result about `order` that is not its stored outcome (a query, a refund, a failed close)."""
    return QRResult(code, order.wallet, order.provider, order.wallet_txn_id if txn is None else txn, text,
                    order.order_id, order.amount if amount is None else amount, order.code_url,
                    order.state.value if state is None else state)


def not_found(order_id: str) -> QRResult:
    return QRResult(ResponseCode.ORIGINAL_NOT_FOUND, text="no such order", order_id=order_id)


_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what every wallet style accepts as a merchant order id


def bad_id(order_id: str) -> QRResult | None:
    if _ORDER_ID.fullmatch(order_id or ""):
        return None
    return QRResult(ResponseCode.FORMAT_ERROR, text="order id must be 1-32 letters, digits, - or _",
                    order_id=order_id)
