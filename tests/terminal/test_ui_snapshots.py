"""Snapshot tests of the cashier's main screens with fixed data (no clock, no random keys).

Regenerate after an intended change: `pytest tests/terminal/test_ui_snapshots.py --snapshot-update`."""
from __future__ import annotations

from pathlib import Path

from textual.app import App

from terminal.app import SaleResult
from terminal.journal import Entry
from terminal.ui.sale import AmountScreen, ResultScreen

CSS = Path(__file__).resolve().parents[2] / "terminal" / "ui" / "cashier.tcss"
ENTRY = Entry(1, 1_795_401_600.0, "000001", "000042", "sale", "card", 1250, "629999*********0012",
              "632700000001", "A1B2C3", "00", "approved", None, False, 0)


class ScreenHost(App):
    CSS_PATH = CSS

    def __init__(self, screen):
        super().__init__()
        self.start_screen = screen
        self.customer = None

    def on_mount(self) -> None:
        self.push_screen(self.start_screen)


async def settle(pilot):
    await pilot.pause(0.4)  # past the 0.2 s highlight animation


def test_amount_screen(snap_compare):
    async def type_amount(pilot):
        # a blinking cursor is drawn or not depending on when the picture is taken (on a busy
        # machine, past the blink): hold it steady, as drawn right after a key press
        pilot.app.screen.query_one("Input").cursor_blink = False
        await pilot.press("1", "2", "full_stop", "5", "0")
        await settle(pilot)
    assert snap_compare(ScreenHost(AmountScreen()), terminal_size=(100, 20), run_before=type_amount)


def test_approved_result_with_receipt_and_qr(snap_compare):
    result = SaleResult(True, "00", "approved", 1250, "card", ENTRY.masked, ENTRY)
    assert snap_compare(ScreenHost(ResultScreen(result)), terminal_size=(100, 40), run_before=settle)


def test_declined_result_with_next_step(snap_compare):
    result = SaleResult(False, "98", "Host unavailable: no answer from the host", 800, "card", ENTRY.masked,
                        next_step="The sale is not complete; the reversal is queued and sent automatically")
    assert snap_compare(ScreenHost(ResultScreen(result)), terminal_size=(100, 24), run_before=settle)


class FixedQrCheckout:
    """Stands in for the host in a snapshot: one fixed merchant QR that nobody pays (the real
    flow is in test_ui_wallets.py)."""

    def show_qr(self, amount, wallet):
        from terminal.online import Outcome
        from terminal.wallet_face import ShownQr
        from acquirer.protocol import PrivateTag, private_fields

        url = "https://qr.95516.com/00010000/62991234567890123456"
        return ShownQr(Outcome("00", "", "000042", "000001", fields={"59": private_fields(
            {PrivateTag.MERCHANT_QR: url.encode()})}), wallet, amount)

    def wait_qr(self, shown, seconds):
        import time

        time.sleep(0.05)
        return None

    def cancel_qr(self, shown):
        return "QR withdrawn"


class FixedKeypad:
    """Stands in for the TEE in a snapshot: a fixed keypad layout (the TEE deals a random one)."""

    def __init__(self):
        from terminal.tee.api import PinPadLayout

        self.keys = self
        self.layout = PinPadLayout([3, 7, 1, 9, 0, 4, 8, 2, 6, 5], 6, 12)

    def passcode_begin(self):
        return self.layout

    def pin_key(self, position):
        return 1

    def pin_cancel(self):
        pass


def test_merchant_qr_screen(snap_compare):
    from terminal.ui.merchant_qr import MerchantQrScreen

    app = ScreenHost(MerchantQrScreen(2580, "unionpay"))
    app.checkout = FixedQrCheckout()

    async def shown(pilot):
        while app.screen.shown is None:
            await pilot.pause(0.05)
        await settle(pilot)
    assert snap_compare(app, terminal_size=(100, 34), run_before=shown)


def test_face_passcode_keypad_after_a_wrong_passcode(snap_compare):
    from terminal.ui.pin import PinScreen

    app = ScreenHost(PinScreen(FixedKeypad(), None, 1500, "Wrong passcode, 2 tries left"))

    async def laid_out(pilot):
        while not app.screen.pad_layout:
            await pilot.pause(0.05)
        await pilot.press("5")
        await settle(pilot)
    assert snap_compare(app, terminal_size=(100, 34), run_before=laid_out)
