"""Status (home), history with void/refund, settlement, alerts and settings."""
from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from terminal.journal import Entry
from terminal.settings import location_label
from .sale import ResultScreen, parse_amount


class HomeScreen(Screen):
    BINDINGS = [
        Binding("s", "app.sale", "Sale"),
        Binding("h", "app.history", "History"),
        Binding("t", "app.settlement", "Settle"),
        Binding("g", "sign_on", "Sign on"),
        Binding("a", "app.alerts", "Alerts"),
        Binding("o", "app.settings", "Settings"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "app.quit", "Quit"),
        Binding("m", "carry", "Carry away (demo)", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="home"):
            yield Static("Reading terminal status...", id="status")
            yield Static("", id="home-message")
            yield Label("s Sale   h History (void, refund)   t Totals and settlement   g Sign on   a Alerts   "
                        "o Settings   q Quit", id="home-help")
            if getattr(self.app.customer, "position_file", None) is not None:
                yield Label("Demo: m carries the terminal out of its fence (and back)", id="home-demo")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    @work(thread=True, exclusive=True, group="status")
    def action_refresh(self) -> None:
        terminal = self.app.terminal
        try:
            sent = terminal.flush_reversals()
            st = terminal.status()
            kcv = "  ".join(f"{k} {v}" for k, v in sorted(st.check_values.items())) or "none: sign on"
            text = (f"Terminal {st.terminal_id}   merchant {st.merchant_id}\n"
                    f"Secure world: {st.tee_state}   device {st.device_id}\n"
                    f"Keys: {kcv}\n"
                    f"Host: {st.host}   open batch: {st.batch}\n"
                    f"Reader: {self.app.reader_label}   scanner: {self.app.scanner_label}\n"
                    f"Location: {location_label(terminal.config.location)}: {st.location}\n"
                    f"Reversals waiting for the host: {st.pending_reversals}"
                    + (f"  ({sent} sent just now)" if sent else ""))
        except Exception as exc:
            text = f"Terminal status unavailable: {exc}"
        self.app.call_from_thread(self.query_one("#status", Static).update, text)

    @work(thread=True, exclusive=True, group="status")
    def action_carry(self) -> None:
        """The demo: someone carries the terminal 4 km away, or back to the shop."""
        carry = getattr(self.app.customer, "carry", None)
        if carry is None:
            return
        self.app.call_from_thread(self.query_one("#home-message", Static).update, carry())
        self.action_refresh()

    @work(thread=True, exclusive=True, group="status")
    def action_sign_on(self) -> None:
        try:
            self.app.terminal.sign_on()
            message = "Signed on: fresh working keys installed"
        except Exception as exc:
            message = f"Sign-on failed: {exc}. Check the host link, then press g again"
        self.app.call_from_thread(self.query_one("#home-message", Static).update, message)
        self.action_refresh()


class RefundAmountScreen(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, entry: Entry):
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        with Vertical(id="refund-box"):
            yield Label(f"Refund of {self.entry.stan}: up to CNY {self.entry.refundable / 100:,.2f}")
            yield Input(value=f"{self.entry.refundable / 100:.2f}", id="refund-amount", restrict=r"[0-9.,]*")
            yield Label("", id="refund-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        amount = parse_amount(event.value)
        if amount is None or amount > self.entry.refundable:
            self.query_one("#refund-error", Label).update("Amount must be above 0 and not more than what remains")
            return
        self.dismiss(amount)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class HistoryScreen(Screen):
    BINDINGS = [
        Binding("v", "void", "Void"),
        Binding("f", "refund", "Refund"),
        Binding("slash", "search", "Search"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search: STAN, RRN, card end, wallet, face, amount... then Enter", id="search")
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("time", "batch", "STAN", "kind", "channel", "amount", "paid with", "RRN", "result")
        self.load("")
        table.focus()

    def load(self, search: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.entries = {str(e.id): e for e in self.app.terminal.history(search)}
        for key, e in self.entries.items():
            state = "voided" if e.voided else (f"refunded {e.refunded / 100:.2f}" if e.refunded else "")
            table.add_row(e.when[5:], e.batch, e.stan, e.kind, e.channel, f"{e.amount / 100:,.2f}", e.masked, e.rrn,
                          f"{e.code} {state}".strip(), key=key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.load(event.value)
        self.query_one(DataTable).focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def _selected(self) -> Entry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row is None:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.entries.get(key)

    def _say(self, text: str) -> None:
        self.query_one("#history-message", Static).update(text)

    def action_void(self) -> None:
        e = self._selected()
        if e is None or e.kind != "sale" or not e.approved or e.voided:
            self._say("Select an approved sale that is not voided")
            return
        self._run(lambda: self.app.terminal.void(e))

    def action_refund(self) -> None:
        e = self._selected()
        if e is None or e.refundable <= 0:
            self._say("Select an approved sale with something left to refund")
            return

        def go(amount):
            if amount is not None:
                self._run(lambda: self.app.terminal.refund(e, amount))
        self.app.push_screen(RefundAmountScreen(e), go)

    @work(thread=True, exclusive=True)
    def _run(self, call) -> None:
        self.app.call_from_thread(self._say, "Waiting for the host...")
        try:
            result = call()
        except Exception as exc:
            self.app.call_from_thread(self._say, f"Not done: {exc}")
            return
        self.app.call_from_thread(self.app.push_screen, ResultScreen(result))
        self.app.call_from_thread(self.load, "")


class SettlementScreen(Screen):
    BINDINGS = [Binding("s", "settle", "Settle now"), Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="totals", cursor_type="none")
        yield Static("s settles the open batch with the host; differences are uploaded and reported",
                     id="settle-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("channel", "sales", "amount", "refunds", "amount")
        names = {"CD": "card", "QR": "QR", "FC": "face"}
        for code, (sc, sa, rc, ra) in self.app.terminal.totals().items():
            table.add_row(names[code], str(sc), f"{sa / 100:,.2f}", str(rc), f"{ra / 100:,.2f}")

    @work(thread=True, exclusive=True)
    def action_settle(self) -> None:
        self.app.call_from_thread(self.query_one("#settle-message", Static).update, "Settling with the host...")
        try:
            result = self.app.terminal.settle()
        except Exception as exc:
            self.app.call_from_thread(self.query_one("#settle-message", Static).update,
                                      f"Settlement not done: {exc}. Check the host link and try again")
            return
        self.app.call_from_thread(self.app.switch_screen, ResultScreen(result))


class AlertsScreen(Screen):
    """What a supervisor looks at: refusals outside the fence, lost fixes, the host's
    verdicts on location reports, payments its risk step refused; what still waits in the
    store-and-forward queue. `l` sends a signed location report now."""

    BINDINGS = [
        Binding("l", "report", "Report location now"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("Reading alerts...", id="alerts-summary")
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        yield Static("", id="alerts-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("time", "kind", "what")
        table.focus()
        self.action_refresh()

    @work(thread=True, exclusive=True, group="alerts")
    def action_refresh(self) -> None:
        terminal = self.app.terminal
        try:
            st = terminal.status()
            summary = (f"Location: {st.location}\n"
                       f"Waiting for the host: {st.pending_alerts} location alert(s), "
                       f"{st.pending_reversals} reversal(s)")
            alerts = terminal.alerts()
        except Exception as exc:  # the TEE or the journal failed: say so, keep the screen
            summary, alerts = f"Alerts unavailable: {exc}", []
        self.app.call_from_thread(self._show, summary, alerts)

    def _show(self, summary: str, alerts) -> None:
        self.query_one("#alerts-summary", Static).update(summary)
        table = self.query_one(DataTable)
        table.clear()
        for a in alerts:
            table.add_row(a.when[5:], a.kind, a.text)
        if not alerts:
            table.add_row("", "", "No alerts: the terminal has stayed inside its fence and nothing was refused")

    @work(thread=True, exclusive=True, group="alerts")
    def action_report(self) -> None:
        from terminal.online import HostRefused, HostUnavailable
        from terminal.tee.api import TeeError

        try:
            out = self.app.terminal.report_location()
            said = f"Host: {out.text or 'report accepted'}" if out.approved else f"Host: {out.code} {out.text}"
        except (HostUnavailable, HostRefused) as exc:
            said = f"Report not sent: {exc}. It goes with the next request once the host is back"
        except TeeError as exc:
            said = f"No signed fix: {exc.detail or exc}. Check the location source (Settings, key o)"
        self.app.call_from_thread(self.query_one("#alerts-message", Static).update, said)
        self.action_refresh()


class SettingsScreen(Screen):
    """Reader, scanner and location source, saved in the terminal's state directory.

    The scanner applies at once; the reader belongs to the TEE, and the location source
    to the fence, so those two apply at the next start."""

    BINDINGS = [
        Binding("r", "cycle('reader')", "Reader"),
        Binding("c", "cycle('scanner')", "Scanner"),
        Binding("l", "cycle('location')", "Location"),
        Binding("s", "save", "Save"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="settings-box"):
            yield Static("", id="settings")
            yield Static("r next reader   c next scanner   l next location source   s saves   Esc back "
                         "(unsaved changes are dropped)", id="settings-help")
            yield Static("", id="settings-message")
        yield Footer()

    def on_mount(self) -> None:
        from terminal.settings import LOCATIONS, DeviceSettings, SettingsError

        state = self.app.terminal.config.state_dir
        config = self.app.terminal.config
        try:
            self.choice = DeviceSettings.load(state, reader=config.reader or "", location=config.location or "")
        except SettingsError as exc:
            self.choice = DeviceSettings()
            self._say(str(exc))
        self.readers = [""]
        self.locations = list(dict.fromkeys([config.location or "", self.choice.location, *LOCATIONS]))
        self._show()
        self.find_readers()

    @work(thread=True, exclusive=True)
    def find_readers(self) -> None:
        from hardware.reader import list_readers

        try:
            names = list_readers()
        except Exception as exc:  # no pcscd: the reader choice stays as it is
            self.app.call_from_thread(self._say, f"Readers could not be listed ({exc}): is pcscd running?")
            return
        self.readers = ["", *names]
        self.app.call_from_thread(self._show)

    def _say(self, text: str) -> None:
        self.query_one("#settings-message", Static).update(text)

    def _show(self) -> None:
        from terminal.settings import SCANNER_LABELS, location_label

        c = self.choice
        config = self.app.terminal.config
        self.query_one("#settings", Static).update(
            f"[b]Settings[/b]  (saved in {config.state_dir}/settings.json)\n\n"
            f"Reader:           {c.reader or 'the first reader'}   (in use: {self.app.reader_label})\n"
            f"Scanner:          {SCANNER_LABELS[c.scanner]}   (in use: {self.app.scanner_label})\n"
            f"Location source:  {location_label(c.location)}   (in use: {location_label(config.location)})\n"
            f"Host:             {config.host}:{config.port}")

    def action_cycle(self, kind: str) -> None:
        from terminal.settings import SCANNERS, next_choice

        choices = {"reader": self.readers, "scanner": SCANNERS, "location": self.locations}[kind]
        setattr(self.choice, kind, next_choice(choices, getattr(self.choice, kind)))
        self._show()
        self._say("Not saved yet: s saves")

    @work(thread=True, exclusive=True)
    def action_save(self) -> None:
        from terminal.settings import SCANNER_LABELS, open_scanner

        app = self.app
        path = self.choice.save(app.terminal.config.state_dir)
        message = f"Saved to {path}. The reader and the location source apply at the next start"
        if SCANNER_LABELS[self.choice.scanner] != app.scanner_label:
            try:
                scanner = open_scanner(self.choice.scanner, app.demo_scanner)
            except Exception as exc:  # device missing, no permission: keep the old one
                message += f"; the scanner could not be opened: {exc}"
            else:
                old, app.scanner = app.scanner, scanner
                app.scanner_label = SCANNER_LABELS[self.choice.scanner]
                if old is not None and old is not app.demo_scanner:
                    old.close()
                message += "; the scanner is in use now"
        app.call_from_thread(self._show)
        app.call_from_thread(self._say, message)
