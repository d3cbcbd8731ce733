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
