"""Which wallet a scanned payment code belongs to, by length and prefix.

The rule the market uses to route a customer-presented code ("detect the wallet from
the code"). It is a table so that a new wallet or a changed range is one row.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Wallet(str, Enum):
    WECHAT = "wechat"
    ALIPAY = "alipay"
    UNIONPAY = "unionpay"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WalletCodeRule:
    wallet: Wallet
    lengths: frozenset[int]
    prefixes: tuple[str, ...]

    def matches(self, digits: str) -> bool:
        return len(digits) in self.lengths and digits.startswith(self.prefixes)


def _two_digit_range(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{n:02d}" for n in range(first, last + 1))


PAYMENT_CODE_RULES: tuple[WalletCodeRule, ...] = (
    WalletCodeRule(Wallet.WECHAT, frozenset({18}), _two_digit_range(10, 15)),
    WalletCodeRule(Wallet.ALIPAY, frozenset(range(16, 25)), _two_digit_range(25, 30)),
    WalletCodeRule(Wallet.UNIONPAY, frozenset({19}), ("62",)),
)


def classify_payment_code(text: str, rules: tuple[WalletCodeRule, ...] = PAYMENT_CODE_RULES) -> Wallet:
    """The wallet whose code `text` is; UNKNOWN for anything else (a merchant URL, say).

    Only ASCII digits count: a code with a space, a dash or a full-width digit inside
    is not a payment code. Whitespace a scanner adds around it is ignored.
    """
    digits = text.strip()
    # str.isdigit alone would take "١٢" or "１２"; wallets issue ASCII only.
    if not (digits.isascii() and digits.isdigit()):
        return Wallet.UNKNOWN
    for rule in rules:
        if rule.matches(digits):
            return rule.wallet
    return Wallet.UNKNOWN
