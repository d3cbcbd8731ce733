"""A whole QR world on loopback: the three wallets, customers in each, and the host's QR
channel wired to them, on one clock. The demo drives it; tests build on it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator

from .clock import ManualClock, bill_date, cst_epoch
from .codes import Wallet
from .customer_cli import payment_code
from .notifier import Notifier
from .reconcile import ReconReport
from .routing import ChannelSpec, RoutingRules
from .scoring import ScorePolicy
from .serve import DEFAULT_PROVIDERS, ProviderSpec, WalletServices, serve_wallets
from .stack import QRStack, open_qr_channel

DEMO_START = cst_epoch("2025-06-18 10:00:00")  # a fixed business day, so bills are predictable


@dataclass
class WalletWorld:
    clock: ManualClock
    services: WalletServices
    stack: QRStack
    password: str = field(repr=False)

    @property
    def channel(self):
        return self.stack.channel

    @property
    def router(self):
        return self.stack.channel.router

    @property
    def notifier(self) -> Notifier:
        return self.services.notifier

    def app_url(self, wallet: Wallet) -> str:
        return self.services.app_urls[wallet]

    def balance(self, wallet: Wallet, account: str = "alice") -> int:
        return self.services.books[wallet].accounts[account].balance

    def wallet_order(self, provider: str, order_id: str):
        """The order as the wallet itself holds it (None if it never got there)."""
        merchant = self.services.provider(provider).merchant
        return self.services.books[self.services.provider(provider).wallet].orders.get((merchant, order_id))

    async def customer_code(self, wallet: Wallet, account: str = "alice") -> str:
        return (await payment_code(self.app_url(wallet), account, self.password, self.stack.session))["code"]

    async def reconcile(self) -> ReconReport:
        """Every provider's bill for today against the channel's own order book."""
        return await self.channel.reconcile(bill_date(self.clock()), self.channel.orders.host_records())


@contextlib.asynccontextmanager
async def wallet_world(*, password: str, providers: tuple[ProviderSpec, ...] = DEFAULT_PROVIDERS,
                       customers: dict[str, int] | None = None, start: float = DEMO_START,
                       no_password_limit: int = 20_000, http_timeout: float = 2.0, poll=None,
                       policy: ScorePolicy = ScorePolicy(), channels: list[ChannelSpec] | None = None,
                       rules: RoutingRules | None = None) -> AsyncIterator[WalletWorld]:
    clock = ManualClock(start)
    services = await serve_wallets(providers, clock=clock, notify_schedule=(0, 0, 0, 0, 0),
                                   no_password_limit=no_password_limit, http_timeout=http_timeout,
                                   reuse_keys=True)
    stack = None
    try:
        for book in services.books.values():
            for account, balance in (customers or {"alice": 100_000, "bob": 5_000}).items():
                book.add_account(account, password, balance)
        stack = await open_qr_channel(services.providers, channels=channels, rules=rules, policy=policy, clock=clock,
                                      sleep=clock.sleep, poll=poll)
        yield WalletWorld(clock, services, stack, password)
    finally:
        if stack is not None:
            await services.notifier.drain()
            await stack.aclose()
        await services.stop()
