"""A wallet's own books: customer accounts, payment codes, merchant orders, refunds, bill.

One `WalletBook` stands behind every provider gateway of a wallet (a wallet reached
directly and through a service provider is still one wallet, with one set of customer
balances), whatever API style the gateway speaks. It holds the rules a wallet enforces:
a payment code is single-use, valid `code_ttl` seconds and bound to one account; above
the no-password limit the customer confirms on the phone; a merchant order id is
idempotent (the same request again never charges twice, a different one is refused); a
closed or reversed order id stays dead so a delayed request cannot revive it.
"""
from __future__ import annotations

import enum
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Callable

from keys.hashes import hmac_sm3, sm3

from .clock import bill_date, cst
from .codes import MERCHANT_QR_PREFIXES, Wallet, mask_code, new_code


class Status(str, enum.Enum):
    WAIT_PAY = "WAIT_PAY"  # merchant QR shown, not paid yet
    USER_PAYING = "USER_PAYING"  # customer must confirm with the password
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    REVERSED = "REVERSED"


class Refusal(str, enum.Enum):
    CODE_INVALID = "code_invalid"
    CODE_USED = "code_used"
    CODE_EXPIRED = "code_expired"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    AMOUNT_INVALID = "amount_invalid"
    ORDER_MISMATCH = "order_mismatch"  # merchant order id reused for another request
    ORDER_CLOSED = "order_closed"
    ORDER_PAID = "order_paid"
    ORDER_NOT_FOUND = "order_not_found"
    CANNOT_REVERSE = "cannot_reverse"
    REFUND_EXCEEDS = "refund_exceeds"
    REFUND_MISMATCH = "refund_mismatch"
    BAD_PASSWORD = "bad_password"
    ACCOUNT_UNKNOWN = "account_unknown"
    NOT_PENDING = "not_pending"
    QR_INVALID = "qr_invalid"
    NO_AGREEMENT = "no_agreement"


class WalletRefusal(Exception):
    def __init__(self, reason: Refusal, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Account:
    account_id: str
    name: str
    balance: int
    salt: bytes = field(repr=False)
    password_digest: bytes = field(repr=False)


@dataclass
class PaymentCode:
    account_id: str
    issued_at: float
    used_by: str | None = None  # the trade that consumed it
    confirmed: bool = False  # issued under a face-pay agreement: the acquirer has checked the passcode


@dataclass
class Order:
    trade_no: str
    merchant: str
    out_trade_no: str
    amount: int
    product: str  # MICROPAY (customer code) or NATIVE (merchant QR)
    status: Status
    created_at: float
    account_id: str | None = None
    code_digest: bytes = b""
    paid_at: float | None = None
    refunded: int = 0
    notify_url: str = ""
    description: str = ""
    qr_token: str = ""
    wrong_passwords: int = 0


@dataclass(frozen=True)
class Refund:
    refund_no: str
    out_refund_no: str
    trade_no: str
    merchant: str
    out_trade_no: str
    amount: int
    at: float


@dataclass(frozen=True)
class BillEntry:
    merchant: str
    kind: str  # PAY, REFUND or REVERSAL
    trade_no: str
    out_trade_no: str
    amount: int
    at: float
    out_refund_no: str = ""


@dataclass
class BillTamper:
    """Test hook: what the next bill files get wrong (a channel's bill is not always right)."""

    drop: set[str] = field(default_factory=set)  # out_trade_no whose rows vanish
    extra: list[BillEntry] = field(default_factory=list)
    amounts: dict[str, int] = field(default_factory=dict)  # out_trade_no -> amount shown on PAY rows


_QR_PATHS = {Wallet.ALIPAY: "bax0", Wallet.WECHAT: "", Wallet.UNIONPAY: "00010000/"}


class WalletBook:
    def __init__(self, wallet: Wallet, *, clock: Callable[[], float], no_password_limit: int = 100_000,
                 code_ttl: float = 60.0, password_tries: int = 3, txn_prefix: str = "", qr_ttl: float = 7200.0):
        self.wallet = wallet
        self.clock = clock
        self.no_password_limit = no_password_limit
        self.code_ttl, self.qr_ttl, self.password_tries = code_ttl, qr_ttl, password_tries
        self.txn_prefix = txn_prefix or {Wallet.ALIPAY: "2088", Wallet.WECHAT: "4200", Wallet.UNIONPAY: "7962"}[wallet]
        self.accounts: dict[str, Account] = {}
        self._codes: dict[bytes, PaymentCode] = {}  # keyed by SM3 of the code: the book never keeps codes
        self.orders: dict[tuple[str, str], Order] = {}
        self._by_trade: dict[str, Order] = {}
        self._by_token: dict[str, Order] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.entries: list[BillEntry] = []
        self.tamper = BillTamper()
        self.paid_listeners: list[Callable[[Order], None]] = []
        self.agreements: set[str] = set()  # accounts that let the acquirer's face pay ask for their codes
        self._seq = itertools.count(1)

    # --- customers -------------------------------------------------------------------
    def add_account(self, account_id: str, password: str, balance: int, name: str = "") -> Account:
        salt = secrets.token_bytes(16)
        acct = Account(account_id, name or account_id, balance, salt, hmac_sm3(salt, password.encode()))
        self.accounts[account_id] = acct
        return acct

    def authenticate(self, account_id: str, password: str) -> Account:
        acct = self.accounts.get(account_id)
        if acct is None:
            raise WalletRefusal(Refusal.ACCOUNT_UNKNOWN, "no such wallet account")
        if not secrets.compare_digest(hmac_sm3(acct.salt, password.encode()), acct.password_digest):
            raise WalletRefusal(Refusal.BAD_PASSWORD, "wrong payment password")
        return acct

    def issue_code(self, account_id: str, password: str) -> str:
        self.authenticate(account_id, password)
        return self._fresh_code(PaymentCode(account_id, self.clock()))

    def agree(self, account_id: str, password: str) -> Account:
        """The customer lets the acquirer's face pay obtain payment codes for this account
        (a withholding agreement, in the market's terms); the password proves consent."""
        acct = self.authenticate(account_id, password)
        self.agreements.add(acct.account_id)
        return acct

    def agreement_code(self, account_id: str) -> str:
        """A single-use code for an account with an agreement, already confirmed: face pay's
        passcode was the customer's confirmation, so no phone step follows."""
        if account_id not in self.agreements or account_id not in self.accounts:
            raise WalletRefusal(Refusal.NO_AGREEMENT, "the account has no face-pay agreement")
        return self._fresh_code(PaymentCode(account_id, self.clock(), confirmed=True))

    def _fresh_code(self, entry: PaymentCode) -> str:
        while True:
            code = new_code(self.wallet)
            if sm3(code.encode()) not in self._codes:
                break
        self._codes[sm3(code.encode())] = entry
        return code

    def pending(self, account_id: str) -> list[Order]:
        return [o for o in self._by_trade.values() if o.account_id == account_id and o.status is Status.USER_PAYING]

    # --- merchant side ---------------------------------------------------------------
    def micropay(self, merchant: str, out_trade_no: str, code: str, amount: int, description: str = "",
                 notify_url: str = "") -> Order:
        digest = sm3(code.strip().encode())
        existing = self.orders.get((merchant, out_trade_no))
        if existing is not None:
            return self._same_order(existing, amount, digest)
        self._check_amount(amount)
        entry = self._codes.get(digest)
        now = self.clock()
        if entry is None:
            raise WalletRefusal(Refusal.CODE_INVALID, f"payment code {mask_code(code)} is not one of ours")
        if entry.used_by is not None:
            raise WalletRefusal(Refusal.CODE_USED, f"payment code {mask_code(code)} was already used")
        if now - entry.issued_at > self.code_ttl:
            raise WalletRefusal(Refusal.CODE_EXPIRED, f"payment code {mask_code(code)} has expired")
        acct = self.accounts[entry.account_id]
        if acct.balance < amount:
            raise WalletRefusal(Refusal.INSUFFICIENT_FUNDS, "balance not enough")
        order = self._new_order(merchant, out_trade_no, amount, "MICROPAY", Status.USER_PAYING, description,
                                notify_url, account_id=acct.account_id, code_digest=digest)
        entry.used_by = order.trade_no
        if amount <= self.no_password_limit or entry.confirmed:
            self._debit(order, acct)
        return order

    def precreate(self, merchant: str, out_trade_no: str, amount: int, description: str = "",
                  notify_url: str = "") -> Order:
        existing = self.orders.get((merchant, out_trade_no))
        if existing is not None:
            if existing.product != "NATIVE" or existing.amount != amount:
                raise WalletRefusal(Refusal.ORDER_MISMATCH, "merchant order id already used for another order")
            return existing
        self._check_amount(amount)
        order = self._new_order(merchant, out_trade_no, amount, "NATIVE", Status.WAIT_PAY, description, notify_url)
        order.qr_token = secrets.token_urlsafe(12)
        self._by_token[order.qr_token] = order
        return order

    def code_url(self, order: Order) -> str:
        return MERCHANT_QR_PREFIXES[self.wallet] + _QR_PATHS[self.wallet] + order.qr_token

    def order_for_qr(self, url: str) -> Order:
        prefix = MERCHANT_QR_PREFIXES[self.wallet] + _QR_PATHS[self.wallet]
        order = self._by_token.get(url.strip()[len(prefix):]) if url.strip().startswith(prefix) else None
        if order is None:
            raise WalletRefusal(Refusal.QR_INVALID, "this QR code is not a payment order of this wallet")
        return order

    def query(self, merchant: str, out_trade_no: str) -> Order:
        order = self.orders.get((merchant, out_trade_no))
        if order is None or order.product == "NONE":
            raise WalletRefusal(Refusal.ORDER_NOT_FOUND, "order does not exist")
        return order

    def close(self, merchant: str, out_trade_no: str) -> Order:
        order = self.orders.get((merchant, out_trade_no))
        if order is None:  # a tombstone, so a request still in flight cannot create it later
            return self._new_order(merchant, out_trade_no, 0, "NONE", Status.CLOSED, "", "")
        if order.status is Status.SUCCESS:
            raise WalletRefusal(Refusal.ORDER_PAID, "order is paid: refund it instead")
        if order.status in (Status.WAIT_PAY, Status.USER_PAYING):
            order.status = Status.CLOSED
        return order

    def reverse(self, merchant: str, out_trade_no: str) -> Order:
        """Cancel whatever state the order is in: refund it if paid, close it if not."""
        order = self.orders.get((merchant, out_trade_no))
        if order is None:
            return self._new_order(merchant, out_trade_no, 0, "NONE", Status.REVERSED, "", "")
        if order.status is Status.SUCCESS:
            if order.refunded:
                raise WalletRefusal(Refusal.CANNOT_REVERSE, "order was partly refunded: refund the rest")
            self.accounts[order.account_id].balance += order.amount
            self.entries.append(BillEntry(merchant, "REVERSAL", order.trade_no, out_trade_no, order.amount, self.clock()))
        if order.status is not Status.CLOSED:
            order.status = Status.REVERSED
        return order

    def refund(self, merchant: str, out_trade_no: str, out_refund_no: str, amount: int) -> Refund:
        done = self.refunds.get((merchant, out_refund_no))
        if done is not None:
            if done.out_trade_no != out_trade_no or done.amount != amount:
                raise WalletRefusal(Refusal.REFUND_MISMATCH, "refund id already used for another refund")
            return done
        order = self.query(merchant, out_trade_no)
        if order.status is not Status.SUCCESS:
            raise WalletRefusal(Refusal.ORDER_CLOSED, f"order is {order.status.value}, not paid")
        if amount <= 0 or order.refunded + amount > order.amount:
            raise WalletRefusal(Refusal.REFUND_EXCEEDS, "refund exceeds what remains of the order")
        order.refunded += amount
        self.accounts[order.account_id].balance += amount
        refund = Refund(self._txn_no(), out_refund_no, order.trade_no, merchant, out_trade_no, amount, self.clock())
        self.refunds[(merchant, out_refund_no)] = refund
        self.entries.append(BillEntry(merchant, "REFUND", order.trade_no, out_trade_no, amount, refund.at,
                                      out_refund_no))
        return refund

    def bill(self, merchant: str, date: str) -> list[BillEntry]:
        rows = [e for e in self.entries + self.tamper.extra if e.merchant == merchant and bill_date(e.at) == date
                and e.out_trade_no not in self.tamper.drop]
        return [BillEntry(e.merchant, e.kind, e.trade_no, e.out_trade_no, self.tamper.amounts[e.out_trade_no], e.at)
                if e.kind == "PAY" and e.out_trade_no in self.tamper.amounts else e for e in rows]

    # --- customer side ---------------------------------------------------------------
    def scan(self, account_id: str, password: str, url: str) -> Order:
        acct = self.authenticate(account_id, password)
        order = self.order_for_qr(url)
        if order.status is Status.SUCCESS:
            raise WalletRefusal(Refusal.ORDER_PAID, "this order is already paid")
        if order.status is not Status.WAIT_PAY or self.clock() - order.created_at > self.qr_ttl:
            raise WalletRefusal(Refusal.ORDER_CLOSED, "this order is closed")
        if acct.balance < order.amount:
            raise WalletRefusal(Refusal.INSUFFICIENT_FUNDS, "balance not enough")
        order.account_id = acct.account_id
        self._debit(order, acct)
        return order

    def confirm(self, account_id: str, password: str, trade_no: str | None = None) -> Order:
        waiting = [o for o in self.pending(account_id) if trade_no in (None, o.trade_no)]
        if not waiting:
            raise WalletRefusal(Refusal.NOT_PENDING, "no payment is waiting for your confirmation")
        order = waiting[0]
        try:
            acct = self.authenticate(account_id, password)
        except WalletRefusal as exc:
            if exc.reason is Refusal.BAD_PASSWORD:
                order.wrong_passwords += 1
                if order.wrong_passwords >= self.password_tries:
                    order.status = Status.CLOSED  # the customer could not confirm: the payment is off
            raise
        if acct.balance < order.amount:
            raise WalletRefusal(Refusal.INSUFFICIENT_FUNDS, "balance not enough")
        self._debit(order, acct)
        return order

    # --- inside ----------------------------------------------------------------------
    def _same_order(self, order: Order, amount: int, digest: bytes) -> Order:
        if order.status in (Status.CLOSED, Status.REVERSED):
            raise WalletRefusal(Refusal.ORDER_CLOSED, f"order is {order.status.value.lower()}")
        if order.product != "MICROPAY" or order.amount != amount or order.code_digest != digest:
            raise WalletRefusal(Refusal.ORDER_MISMATCH, "merchant order id already used for another payment")
        return order  # the same request again: answer with the order as it stands, charge nothing

    @staticmethod
    def _check_amount(amount: int) -> None:
        if not isinstance(amount, int) or amount <= 0:
            raise WalletRefusal(Refusal.AMOUNT_INVALID, "amount must be a positive number of fen")

    def _txn_no(self) -> str:
        return f"{self.txn_prefix}{cst(self.clock()):%Y%m%d}{next(self._seq):010d}"

    def _new_order(self, merchant, out_trade_no, amount, product, status, description, notify_url, **kw) -> Order:
        order = Order(self._txn_no(), merchant, out_trade_no, amount, product, status, self.clock(),
                      notify_url=notify_url, description=description, **kw)
        self.orders[(merchant, out_trade_no)] = order
        self._by_trade[order.trade_no] = order
        return order

    def _debit(self, order: Order, acct: Account) -> None:
        acct.balance -= order.amount
        order.status, order.paid_at = Status.SUCCESS, self.clock()
        self.entries.append(BillEntry(order.merchant, "PAY", order.trade_no, order.out_trade_no, order.amount,
                                      order.paid_at))
        for listener in self.paid_listeners:
            listener(order)
