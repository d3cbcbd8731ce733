"""Checkout in three steps: amount, collect (whatever comes first), result with a receipt."""
from __future__ import annotations

import io

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from terminal.app import SaleResult


def parse_amount(text: str) -> int | None:
    """'12.34' -> 1234 fen; None for anything that is not a positive amount with <= 2 decimals."""
    text = text.strip().replace(",", "")
    if not text or text.count(".") > 1 or not text.replace(".", "").isdigit():
        return None
    whole, _, frac = text.partition(".")
    if len(frac) > 2:
        return None
    fen = int(whole or "0") * 100 + int((frac + "00")[:2])
    return fen if 0 < fen < 10**10 else None


def receipt_qr(text: str) -> str:
    """The e-receipt as a QR code drawn with half blocks (two rows per line)."""
    import qrcode

    qr = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(text)
    qr.make(fit=True)
    m = qr.get_matrix()
    out = io.StringIO()
    for y in range(0, len(m), 2):
        top, bottom = m[y], m[y + 1] if y + 1 < len(m) else [False] * len(m[y])
        out.write("".join("█" if t and b else "▀" if t else "▄" if b else " " for t, b in zip(top, bottom)))
        out.write("\n")
    return out.getvalue()


class AmountScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    # no Header on the checkout screens: they come and go within milliseconds, and Textual's
    # Header can raise when its screen is switched away before it finished mounting
    def compose(self) -> ComposeResult:
        with Vertical(id="amount-box"):
            yield Label("Sale - amount in yuan (e.g. 12.50), then Enter", id="amount-title")
            yield Input(placeholder="0.00", id="amount", restrict=r"[0-9.,]*")
            yield Label("", id="amount-error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#amount", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        amount = parse_amount(event.value)
        if amount is None:
            self.query_one("#amount-error", Label).update("Enter an amount above 0 with at most 2 decimals")
            return
        self.app.switch_screen(CollectScreen(amount))


class CollectScreen(Screen):
    """Waits for a tap (the TEE reads the card); Esc cancels the wait. In the demo, keys
    1-3 are the customer putting a test card or phone on the virtual reader."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("1", "customer('1')", "Tap SM card", show=False),
                Binding("2", "customer('2')", "Tap intl card", show=False),
                Binding("3", "customer('3')", "Tap phone", show=False)]

    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount
        self.cancelled = False

    def compose(self) -> ComposeResult:
        with Vertical(id="collect-box"):
            yield Label(f"CNY {self.amount / 100:,.2f}", id="collect-amount")
            yield Static("Tap a card or phone on the reader...", id="collect-status")
            customer = "   Demo customer: 1 UnionPay SM card, 2 international card, 3 phone" \
                if self.app.customer else ""
            yield Label("Esc cancels" + customer, id="collect-help")
        yield Footer()

    def on_mount(self) -> None:
        self.wait_for_tap()

    def _status(self, text: str) -> None:
        self.query_one("#collect-status", Static).update(text)

    @work(thread=True, exclusive=True, group="collect")
    def wait_for_tap(self) -> None:
        terminal = self.app.terminal
        try:
            outcome = terminal.tap(self.amount, timeout_s=self.app.tap_timeout)
        except Exception as exc:  # reader missing, no tap in time, cancelled: a plain message
            if not self.cancelled:
                self.app.call_from_thread(self._failed, str(exc))
            return
        if outcome.outcome == "ONLINE_REQUEST" and outcome.cvm == "ONLINE_PIN":
            self.app.call_from_thread(self._ask_pin, outcome)
            return
        self.app.call_from_thread(self._status, "Card read. Waiting for the host...")
        self._complete(outcome, None)

    def _ask_pin(self, outcome) -> None:
        from .pin import PinScreen

        def done(block) -> None:
            if block is None:
                self._failed("PIN entry cancelled")
                self.app.terminal.keys.end_transaction(outcome.handle)
                return
            self._status("PIN entered. Waiting for the host...")
            self._complete_in_worker(outcome, block)

        self.app.push_screen(PinScreen(self.app.terminal, outcome.handle, self.amount), done)

    @work(thread=True, group="collect")
    def _complete_in_worker(self, outcome, block) -> None:
        self._complete(outcome, block)

    def _complete(self, outcome, block) -> None:
        result = self.app.terminal.complete_card_sale(self.amount, outcome, block)
        self.app.call_from_thread(self.app.switch_screen, ResultScreen(result))

    def _failed(self, message: str) -> None:
        self.app.switch_screen(ResultScreen(SaleResult(False, "--", message, self.amount,
                                                       next_step="Press s to start the sale again")))

    @work(thread=True, group="customer")
    def action_customer(self, key: str) -> None:
        if self.app.customer is None:
            return
        try:
            label = self.app.customer.tap(key)
        except Exception as exc:
            self.app.call_from_thread(self._status, f"The demo card could not be put on the reader: {exc}")
            return
        self.app.call_from_thread(self._status, f"The customer taps the {label}...")

    def action_cancel(self) -> None:
        self.cancelled = True
        self.app.terminal.cancel()
        self.app.pop_screen()


class ResultScreen(Screen):
    BINDINGS = [Binding("enter", "app.pop_screen", "Done"), Binding("escape", "app.pop_screen", "Done")]

    def __init__(self, result: SaleResult):
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(id="result-box"):
            yield Label("APPROVED" if r.approved else "NOT APPROVED", id="result-verdict",
                        classes="approved" if r.approved else "declined")
            yield Static(r.message, id="result-message")
            if r.next_step:
                yield Static(f"Next: {r.next_step}", id="result-next")
            yield Static(r.receipt, id="result-receipt")
            if r.approved and r.entry is not None:
                yield Static(receipt_qr(f"softpos-receipt:{r.entry.batch}:{r.entry.stan}:{r.entry.rrn}:"
                                        f"{r.amount}"), id="result-qr")
        yield Footer()
