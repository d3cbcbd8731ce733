"""Which wallet a customer-presented payment code belongs to, and how to show one safely.

The host detects the wallet from the code itself ("one connection, every wallet"). The
table repeats the market's prefix rules that `hardware.scanners.payment_codes` also
holds: the acquirer may not import `hardware` (docs/architecture.md), and the scanner
only needs to know a code is a payment code, while the host routes money on it. Keep the
two tables equal; `tests/acquirer/test_wallet_codes.py` checks the ranges here.
"""
from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass


class Wallet(str, enum.Enum):
    ALIPAY = "alipay"
    WECHAT = "wechat"
    UNIONPAY = "unionpay"


@dataclass(frozen=True)
class CodeRule:
    wallet: Wallet
    lengths: tuple[int, ...]
    prefixes: tuple[str, ...]
    issued_length: int  # the length the simulator issues (one of `lengths`)

    def matches(self, digits: str) -> bool:
        return len(digits) in self.lengths and digits.startswith(self.prefixes)


def _range(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{n:02d}" for n in range(first, last + 1))


CODE_RULES: tuple[CodeRule, ...] = (
    CodeRule(Wallet.WECHAT, (18,), _range(10, 15), 18),
    CodeRule(Wallet.ALIPAY, tuple(range(16, 25)), _range(25, 30), 18),
    CodeRule(Wallet.UNIONPAY, (19,), ("62",), 19),
)

# Merchant-displayed codes are URLs; the customer's app knows its own wallet's form.
MERCHANT_QR_PREFIXES: dict[Wallet, str] = {
    Wallet.ALIPAY: "https://qr.alipay.com/",
    Wallet.WECHAT: "weixin://wxpay/bizpayurl?pr=",
    Wallet.UNIONPAY: "https://qr.95516.com/",
}


def wallet_of_code(text: str) -> Wallet | None:
    """The wallet of a customer payment code, or None for anything else.

    ASCII digits only: a code with a space, dash or full-width digit inside is refused,
    whitespace a scanner adds around it is not.
    """
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    for rule in CODE_RULES:
        if rule.matches(digits):
            return rule.wallet
    return None


def wallet_of_merchant_qr(text: str) -> Wallet | None:
    text = text.strip()
    for wallet, prefix in MERCHANT_QR_PREFIXES.items():
        if text.startswith(prefix):
            return wallet
    return None


# What each wallet's in-app browser puts in its User-Agent: how an acquirer's static
# aggregated code page knows which wallet scanned it (docs/wallets.md, "Static code").
USER_AGENT_MARKS: dict[Wallet, str] = {
    Wallet.ALIPAY: "AlipayClient",
    Wallet.WECHAT: "MicroMessenger",
    Wallet.UNIONPAY: "UnionPay",
}


def wallet_of_user_agent(user_agent: str) -> Wallet | None:
    """The wallet whose in-app browser sent `user_agent`, or None (a plain browser)."""
    for wallet, mark in USER_AGENT_MARKS.items():
        if mark in user_agent:
            return wallet
    return None


def new_code(wallet: Wallet) -> str:
    """A fresh random code in the wallet's format (simulators issue these)."""
    rule = next(r for r in CODE_RULES if r.wallet is wallet)
    prefix = secrets.choice(rule.prefixes)
    rest = "".join(secrets.choice("0123456789") for _ in range(rule.issued_length - len(prefix)))
    return prefix + rest


def mask_code(code: str) -> str:
    """4 leading and 2 trailing characters, as the wire's `describe` shows QR codes."""
    code = code.strip()
    if len(code) <= 8:
        return "*" * len(code)
    return code[:4] + "*" * (len(code) - 6) + code[-2:]
