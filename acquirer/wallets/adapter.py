"""The host's side of a wallet provider: one vocabulary for three API styles.

An adapter turns `pay / precreate / query / close / reverse / refund / bill / notify`
into its style's requests, signs them, checks the signature of every answer before it
reads anything in it, and says what happened as a `WalletAnswer`. What it could not
learn is an exception whose type tells the caller what is safe next:

- `WalletUnreachable`: the request never reached the wallet; trying elsewhere is safe;
- `WalletTimeout`, `WalletBadGateway`: it may have been processed; query or reverse;
- `WalletSignatureError`: an answer we cannot trust; never a payment, reverse;
- `WalletProtocolError`: an answer we cannot read; treated like an untrusted one.
"""
from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from .codes import Wallet
from .providers import ProviderConfig


class Outcome(str, enum.Enum):
    SUCCESS = "SUCCESS"  # paid
    USER_PAYING = "USER_PAYING"  # the customer is confirming on the phone
    WAITING = "WAITING"  # exists, not paid yet (query of a pending or precreated order)
    FAILED = "FAILED"  # refused: see `decline`
    CLOSED = "CLOSED"
    REVERSED = "REVERSED"
    NOT_FOUND = "NOT_FOUND"
    SYSTEM_ERROR = "SYSTEM_ERROR"  # the wallet says it is in trouble: the outcome is unknown
    OK = "OK"  # precreate, refund: done


class Decline(str, enum.Enum):
    CODE_INVALID = "code_invalid"
    CODE_USED = "code_used"
    CODE_EXPIRED = "code_expired"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    AMOUNT_INVALID = "amount_invalid"
    ORDER_MISMATCH = "order_mismatch"
    ORDER_CLOSED = "order_closed"
    ORDER_PAID = "order_paid"
    CANNOT_REVERSE = "cannot_reverse"
    REFUND_EXCEEDS = "refund_exceeds"
    REFUND_MISMATCH = "refund_mismatch"
    OTHER = "other"


@dataclass(frozen=True)
class WalletAnswer:
    outcome: Outcome
    decline: Decline | None = None
    wallet_txn_id: str = ""
    amount: int | None = None
    code_url: str = ""
    wallet_code: str = ""  # the wallet's own result code, for logs and support
    text: str = ""


@dataclass(frozen=True)
class BillRow:
    provider: str
    wallet: Wallet
    kind: str  # PAY, REFUND or REVERSAL
    order_id: str
    amount: int  # fen, positive; the kind says which way it went
    wallet_txn_id: str = ""
    refund_id: str = ""


@dataclass(frozen=True)
class NotifyEvent:
    provider: str
    order_id: str
    paid: bool
    amount: int
    wallet_txn_id: str


@dataclass(frozen=True)
class NotifyAck:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"


class WalletCallError(Exception):
    def __init__(self, provider: str, message: str):
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class WalletUnreachable(WalletCallError):
    """Not delivered (connection refused, no route): nothing happened at the wallet."""


class WalletTimeout(WalletCallError):
    """Sent, no answer in time: the wallet may have processed it."""


class WalletBadGateway(WalletCallError):
    """An HTTP 5xx page with no signed business answer: may have been processed."""


class WalletSignatureError(WalletCallError):
    """The answer's signature did not verify: its content means nothing."""


class WalletProtocolError(WalletCallError):
    """The answer could not be read."""


class WalletAdapter:
    """Base of the three styles: HTTP with the outcome-preserving error mapping."""

    style = ""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time):
        self.config, self.session, self.clock = config, session, clock

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def wallet(self) -> Wallet:
        return self.config.wallet

    async def http(self, method: str, url: str, *, data: bytes | str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self.session.request(method, url, data=data, headers=headers, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), await resp.read()
        except asyncio.TimeoutError:
            raise WalletTimeout(self.name, f"no answer within {self.config.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise WalletUnreachable(self.name, f"cannot connect: {exc.os_error}") from None
        except aiohttp.ClientError as exc:  # dropped mid-answer: the request may have been processed
            raise WalletTimeout(self.name, f"connection lost: {type(exc).__name__}") from None

    def bad_gateway(self, status: int) -> WalletBadGateway:
        return WalletBadGateway(self.name, f"HTTP {status} without a signed answer")

    # the operations every style implements
    async def pay(self, order_id: str, code: str, amount: int, description: str = "") -> WalletAnswer:
        raise NotImplementedError

    async def precreate(self, order_id: str, amount: int, description: str, notify_url: str) -> WalletAnswer:
        raise NotImplementedError

    async def query(self, order_id: str) -> WalletAnswer:
        raise NotImplementedError

    async def close(self, order_id: str) -> WalletAnswer:
        raise NotImplementedError

    async def reverse(self, order_id: str) -> WalletAnswer:
        raise NotImplementedError

    async def refund(self, order_id: str, refund_id: str, amount: int, total: int) -> WalletAnswer:
        raise NotImplementedError

    async def bill(self, date: str) -> list[BillRow]:
        raise NotImplementedError

    def parse_notify(self, headers: dict[str, str], body: bytes) -> NotifyEvent:
        raise NotImplementedError

    def ack(self, accepted: bool, reason: str = "") -> NotifyAck:
        raise NotImplementedError


def make_adapter(config: ProviderConfig, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time) -> WalletAdapter:
    from .adapter_alipay import AlipayAdapter
    from .adapter_unionpay import UnionPayAdapter
    from .adapter_wechat import WeChatAdapter

    cls = {Wallet.ALIPAY: AlipayAdapter, Wallet.WECHAT: WeChatAdapter, Wallet.UNIONPAY: UnionPayAdapter}[config.wallet]
    return cls(config, session, clock=clock)
