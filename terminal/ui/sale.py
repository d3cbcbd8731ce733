"""Checkout in three steps: amount, collect (whatever comes first: collect.py), result with a receipt."""
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
        self.query_one("#amount-error", Label).update("")
        self.check_location(amount)

    @work(thread=True, exclusive=True, group="gate")
    def check_location(self, amount: int) -> None:
        """The terminal's own fence check before the customer is asked to pay (the TEE
        reads its location source, up to 2 s); outside or without a fix: a plain refusal."""
        from .collect import CollectScreen

        try:
            gate = self.app.terminal.location_gate()
        except Exception as exc:  # the TEE failed under the check: refuse, say why
            result = SaleResult(False, "--", f"The location check failed: {exc}", amount,
                                next_step="Check the status screen, then try again")
        else:
            if gate.ok:
                self.app.call_from_thread(self.app.switch_screen, CollectScreen(amount))
                return
            result = SaleResult(False, "--", gate.message, amount, next_step=gate.next_step)
        self.app.call_from_thread(self.app.switch_screen, ResultScreen(result))


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
