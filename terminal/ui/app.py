"""The cashier app: a home screen with the terminal's state and one key per action."""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from .sale import AmountScreen
from .screens import AlertsScreen, HistoryScreen, HomeScreen, SettingsScreen, SettlementScreen


class CashierApp(App):
    CSS_PATH = Path(__file__).with_name("cashier.tcss")
    TITLE = "softpos"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, terminal, *, customer=None, reader_label: str = "virtual reader",
                 scanner_label: str = "none", tap_timeout: float = 30.0,
                 scanner=None, faces=None, demo_scanner=None):
        """`scanner`: a hardware.scanners source of payment codes (None: no scanner);
        `faces`: where faces come from (`terminal.face.capture.ShownPhotos` in the demo);
        `demo_scanner`: the source the "demo" scanner setting selects."""
        super().__init__()
        self.terminal = terminal
        self.customer = customer  # the demo's customer panel: cards, payment codes, faces
        self.reader_label = reader_label
        self.scanner_label = scanner_label
        self.tap_timeout = tap_timeout
        self.scanner = scanner
        self.faces = faces
        self.demo_scanner = demo_scanner
        self._checkout = None

    @property
    def checkout(self):
        """QR and face sales (terminal.wallet_face), made on first use."""
        if self._checkout is None:
            from terminal.wallet_face import WalletFaceCheckout

            self._checkout = WalletFaceCheckout(self.terminal)
        return self._checkout

    REPORT_TICK_S = 15.0  # how often to ask whether a periodic location report is due

    def on_mount(self) -> None:
        self.sub_title = f"terminal {self.terminal.config.terminal_id}"
        self.push_screen(HomeScreen())
        self.set_interval(self.REPORT_TICK_S, self.report_location)

    @work(thread=True, exclusive=True, group="location-report")
    def report_location(self) -> None:
        """The periodic signed location report, at the interval the host set (a no-op
        until it is due, while a card is awaited, or without a fence)."""
        report_if_due = getattr(self.terminal, "report_if_due", None)
        if report_if_due is not None:
            report_if_due()

    def action_sale(self) -> None:
        self.push_screen(AmountScreen())

    def action_history(self) -> None:
        self.push_screen(HistoryScreen())

    def action_settlement(self) -> None:
        self.push_screen(SettlementScreen())

    def action_alerts(self) -> None:
        self.push_screen(AlertsScreen())

    def action_settings(self) -> None:
        self.push_screen(SettingsScreen())
