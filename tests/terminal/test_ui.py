"""The cashier UI driven with Textual's Pilot against the real stack: a host on loopback,
the TEE process, the kernel, pcscd with the vpcd reader and a simulated card."""
from __future__ import annotations

import time

import pytest

from terminal.app import TerminalApp, TerminalConfig
from terminal.journal import Journal
from terminal.ui.app import CashierApp
from terminal.ui.pin import KEY_POSITIONS, PinScreen
from terminal.ui.sale import ResultScreen

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import MERCHANT, PIN, SITE_SPEC, TERMINAL

pytestmark = pytest.mark.pcsc


class LaneCustomer:
    """The customer panel of the demo, on the test lane's card."""

    def __init__(self, lane):
        self.lane = lane

    def tap(self, key: str) -> str:
        self.lane.tap()
        return "test card"


def make_app(lane) -> CashierApp:
    config = TerminalConfig(TERMINAL, MERCHANT, port=lane.host.port, state_dir=lane.state, location=SITE_SPEC)
    terminal = TerminalApp(config, lane.keys, lane.session, Journal(lane.state / "journal.db"))
    return CashierApp(terminal, customer=LaneCustomer(lane), tap_timeout=10)


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"UI did not reach the expected state; screen is {pilot.app.screen!r}: "
                                 f"{screen_text(pilot.app)[:300]}")
        await pilot.pause(0.1)


def screen_text(app) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query("Static, Label"))


async def shown_result(pilot) -> ResultScreen:
    """The result screen once it is drawn: switching to a screen and mounting its widgets
    are separate steps, and a test reading the text in between reads nothing."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                   and bool(pilot.app.screen.query("#result-verdict")))
    return pilot.app.screen


async def sell(pilot, amount: str, pin: str | None = None, tap: bool = True) -> ResultScreen:
    """`tap`: the customer presses key 1 (puts the card on the reader); the test lane's card
    then stays there, so later sales find it at once and must not press 1 again (it would
    land on the PIN pad)."""
    await pilot.press("s")
    await pilot.press(*("full_stop" if c == "." else c for c in amount), "enter")
    # with the card already on the reader the collect screen may be gone at once
    await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ in ("CollectScreen", "PinScreen",
                                                                          "ResultScreen"))
    if tap:
        await pilot.press("1")
    if pin is not None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PinScreen) and pilot.app.screen.pad_layout)
        pad = pilot.app.screen.pad_layout
        keys = {p: k for k, p in KEY_POSITIONS.items()}
        await pilot.press(*(keys[pad.index(int(d))] for d in pin))
        await pilot.press("enter")
    return await shown_result(pilot)


async def test_home_shows_the_terminal_state(card_lane):
    app = make_app(card_lane)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: "Secure world: READY" in screen_text(app))
        text = screen_text(app)
        assert f"Terminal {TERMINAL}" in text and "TAK" in text and "open batch" in text


async def test_card_sale_without_and_with_pin_then_void_and_settle(card_lane):
    app = make_app(card_lane)
    async with app.run_test(size=(110, 40)) as pilot:
        result = await sell(pilot, "12.50")
        assert result.result.approved and "APPROVED" in screen_text(app)
        assert card_lane.pan not in screen_text(app) and result.result.masked in screen_text(app)
        await pilot.press("enter")

        result = await sell(pilot, "1500", pin=PIN, tap=False)
        assert result.result.approved, result.result.message
        assert PIN not in screen_text(app)
        await pilot.press("enter")

        await pilot.press("h")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "HistoryScreen")
        await pilot.press("v")  # void the newest sale (the cursor starts on it)
        await shown_result(pilot)
        assert pilot.app.screen.result.approved and pilot.app.screen.result.entry.kind == "void"
        await pilot.press("enter", "escape")

        await pilot.press("t")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "SettlementScreen")
        await pilot.press("s")
        await shown_result(pilot)
        assert pilot.app.screen.result.message == "BALANCED"


async def test_host_down_says_offline_and_queues_the_reversal(card_lane):
    app = make_app(card_lane)
    async with app.run_test(size=(110, 34)) as pilot:
        card_lane.host.stop()  # the acquirer goes away
        result = await sell(pilot, "8.00")
        assert not result.result.approved
        text = screen_text(app)
        assert "Host unavailable" in text and "reversal" in text.lower()


async def test_refund_from_history(card_lane):
    app = make_app(card_lane)
    async with app.run_test(size=(110, 40)) as pilot:
        assert (await sell(pilot, "20.00")).result.approved
        await pilot.press("enter", "h")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "HistoryScreen")
        await pilot.press("f")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "RefundAmountScreen")
        refund_input = pilot.app.screen.query_one("#refund-amount")
        refund_input.value = "5.00"
        await pilot.press("enter")
        await shown_result(pilot)
        assert pilot.app.screen.result.approved and pilot.app.screen.result.amount == 500


async def test_settings_are_chosen_with_keys_and_saved_in_the_state_dir(card_lane):
    from terminal.settings import DeviceSettings

    app = make_app(card_lane)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: "Secure world: READY" in screen_text(app))
        await pilot.press("o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "SettingsScreen")
        await wait_for(pilot, lambda: len(app.screen.readers) > 1)  # the reader list came from pcscd
        await pilot.press("r", "c", "l")  # the virtual reader, the demo scanner, the next location source
        assert "Not saved yet" in screen_text(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: "Saved to" in screen_text(app))
        saved = DeviceSettings.load(card_lane.state)
        assert saved.reader == app.screen.readers[1] and saved.scanner == "demo" and saved.location == "gpsd"
        assert "only in `pos demo`" in screen_text(app)  # saved, but not usable outside the demo: said so
        await pilot.press("escape", "o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "SettingsScreen")
        assert "gpsd" in screen_text(app) and saved.reader in screen_text(app)
