"""The simulated wallets on an event loop of their own thread, for callers that block:
the demo (beside the cashier UI) and the tests that drive the blocking terminal session.
They behave as other processes would: only HTTP reaches them, except the books, which
a caller may read (balances) or fill (accounts) directly."""
from __future__ import annotations

import asyncio
import threading

from .codes import Wallet


class ThreadedWallets:
    def __init__(self, customers: dict[str, int], password: str, **serve_kw):
        """`customers`: account -> balance (fen), opened in every wallet with `password`;
        `serve_kw` go to `serve_wallets` (no_password_limit, notify_schedule...)."""
        self.customers = customers
        self.password = password
        self.serve_kw = serve_kw
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="wallets", daemon=True)
        self.services = None

    def start(self) -> "ThreadedWallets":
        from .serve import serve_wallets

        self.thread.start()
        self.services = self.run(serve_wallets(**self.serve_kw))
        for book in self.services.books.values():
            for account, balance in self.customers.items():
                book.add_account(account, self.password, balance)
        return self

    def run(self, coro, timeout: float = 30.0):
        """Run a coroutine (a customer's app call, say) on the wallets' loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def app_url(self, wallet: Wallet) -> str:
        return self.services.app_urls[wallet]

    def balance(self, wallet: Wallet, account: str) -> int:
        return self.services.books[wallet].accounts[account].balance

    def stop(self) -> None:
        if self.services is not None:
            self.run(self.services.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
