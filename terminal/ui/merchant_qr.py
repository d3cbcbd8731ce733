"""The merchant's dynamic QR: precreated at the host for one wallet, drawn in the terminal,
paid when the host hears from the wallet (notify, or its own query). Esc withdraws it.

The wait is a loop of short host exchanges (the host holds each a few seconds), so a
cancel or quitting the app is noticed between two of them; a withdrawn QR is closed at
the wallet by its reversal, and a payment that raced the close is refunded there.
"""
from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from terminal.app import SaleResult
from terminal.wallet_face import ShownQr, wallet_name
from .collect import CustomerKeys, customer_help

PAY_WITHIN_S = 120.0


def qr_text(text: str) -> str:
    """The QR as half blocks, dark modules drawn dark: a phone scans it off a light-on-dark
    terminal as well as off paper."""
    from acquirer.wallets.customer_cli import render_text

    return render_text(text)


class MerchantQrScreen(CustomerKeys, Screen):
    BINDINGS = [Binding("escape", "cancel", "Withdraw QR"),
                *(Binding(k, f"customer('{k}')", show=False) for k in "p")]

    def __init__(self, amount: int, wallet: str, pay_within_s: float = PAY_WITHIN_S):
        super().__init__()
        self.amount = amount
        self.wallet = wallet
        self.pay_within_s = pay_within_s
        self.shown: ShownQr | None = None
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="qr-box"):
            yield Label(f"CNY {self.amount / 100:,.2f}   {wallet_name(self.wallet)}", id="collect-amount")
            yield Static("Asking the host for a QR...", id="collect-status")
            yield Static("", id="merchant-qr")
            yield Label("The customer scans this QR with the wallet app.   Esc withdraws the QR", id="collect-help")
            help_text = customer_help(self.app, "merchant-qr")
            if help_text:
                yield Static(help_text, id="customer-help")
        yield Footer()

    def on_mount(self) -> None:
        self.run_qr()

    def on_unmount(self) -> None:
        self._cancel.set()

    def _status(self, text: str) -> None:
        self.query_one("#collect-status", Static).update(text)

    def _say(self, text: str) -> None:
        self.app.call_from_thread(self._status, text)

    def _show(self, shown: ShownQr) -> None:
        self.shown = shown
        self.query_one("#merchant-qr", Static).update(qr_text(shown.url))
        self._status(f"Waiting for the customer to pay with {wallet_name(self.wallet)}...")

    @work(thread=True, exclusive=True, group="merchant-qr")
    def run_qr(self) -> None:
        from .sale import ResultScreen

        try:
            self._run(self.app.checkout)
        except Exception as exc:  # the TEE or the session failed under us: a plain message, never a crash
            self.app.call_from_thread(self.app.switch_screen, ResultScreen(SaleResult(
                False, "--", f"The merchant QR failed: {exc}", self.amount, "qr", wallet_name(self.wallet),
                next_step="Check the status screen (host link, keys), then start the sale again")))

    def _run(self, checkout) -> None:
        from .sale import ResultScreen

        got = checkout.show_qr(self.amount, self.wallet)
        if isinstance(got, SaleResult):
            self.app.call_from_thread(self.app.switch_screen, ResultScreen(got))
            return
        self.app.call_from_thread(self._show, got)
        deadline = time.monotonic() + self.pay_within_s
        while not self._cancel.is_set():
            result = checkout.wait_qr(got, 0)  # one exchange: the host holds it a few seconds
            if result is not None:
                self.app.call_from_thread(self.app.switch_screen, ResultScreen(result))
                return
            if time.monotonic() > deadline:
                said = checkout.cancel_qr(got)
                self.app.call_from_thread(self.app.switch_screen, ResultScreen(SaleResult(
                    False, "98", f"The customer did not pay in time. {said}", self.amount, "qr",
                    f"{wallet_name(self.wallet)} merchant QR", next_step="Press s to start the sale again")))
                return
        said = checkout.cancel_qr(got)  # Esc, or the app is closing
        if self.is_attached and self.app.is_running:
            from .collect import CollectScreen

            self.app.call_from_thread(self.app.switch_screen,
                                      CollectScreen(self.amount, f"{said}. Take another payment method."))

    def action_cancel(self) -> None:
        if self.shown is None:
            return  # the QR is being made: the wait starts, then Esc withdraws it
        self._cancel.set()
        self._status("Withdrawing the QR...")

    @work(thread=True, group="customer")
    def action_customer(self, key: str) -> None:
        if self.shown is not None:
            self._customer_press(key, qr_url=self.shown.url)
        else:
            self._say("The QR is not on the screen yet")
