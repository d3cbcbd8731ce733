"""The cashier app: a home screen with the terminal's state and one key per action."""
from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from .sale import AmountScreen
from .screens import HistoryScreen, HomeScreen, InfoScreen, SettlementScreen


class CashierApp(App):
    CSS_PATH = Path(__file__).with_name("cashier.tcss")
    TITLE = "softpos"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, terminal, *, customer=None, reader_label: str = "virtual reader",
                 scanner_label: str = "keyboard wedge", location_label: str = "fixed site", tap_timeout: float = 30.0):
        super().__init__()
        self.terminal = terminal
        self.customer = customer  # the demo's customer panel: puts test cards on the virtual reader
        self.reader_label = reader_label
        self.scanner_label = scanner_label
        self.location_label = location_label
        self.tap_timeout = tap_timeout

    def on_mount(self) -> None:
        self.sub_title = f"terminal {self.terminal.config.terminal_id}"
        self.push_screen(HomeScreen())

    def action_sale(self) -> None:
        self.push_screen(AmountScreen())

    def action_history(self) -> None:
        self.push_screen(HistoryScreen())

    def action_settlement(self) -> None:
        self.push_screen(SettlementScreen())

    def action_alerts(self) -> None:
        st = self.terminal.session.pending_reversals()
        self.push_screen(InfoScreen("Alerts", f"Reversals waiting for the host: {st}\n\n"
                                    "Location-fence and risk alerts appear here once the fence is enabled "
                                    "(not built yet)."))

    def action_settings(self) -> None:
        c = self.terminal.config
        self.push_screen(InfoScreen("Settings", f"Reader: {c.reader or 'first reader (virtual in the demo)'}\n"
                                    f"Scanner: {self.scanner_label}\nLocation source: {self.location_label}\n"
                                    f"Host: {c.host}:{c.port}\nState: {c.state_dir}\n\n"
                                    "Change them with `pos --reader NAME` and the demo's options."))
