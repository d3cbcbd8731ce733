"""Collect the payment: a tap, a scanned payment code or a face, whichever comes first;
or, on the cashier's key, the merchant's QR for the customer to scan.

Each source waits in its own worker. The first that brings a payment claims the sale;
the others are stopped (the TEE's tap wait is cancelled and waited for, because the
TEE runs one command at a time and every later step needs it for MACs and sealing).
Every worker also ends when the screen goes away, so quitting never waits on one.
"""
from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from terminal.app import SaleResult

USER_PAYING_AFTER_S = 2.5  # no answer by then: the wallet is most likely asking the customer to confirm


def customer_help(app, where: str) -> str:
    customer = app.customer
    return customer.help(where) if customer is not None and hasattr(customer, "help") else ""


class CustomerKeys:
    """The demo's customer panel on a screen: keys the customer presses, run in a worker."""

    def _customer_press(self, key: str, **context) -> None:
        customer = self.app.customer
        if customer is None:
            return
        try:
            said = customer.press(key, **context) if hasattr(customer, "press") else customer.tap(key)
        except Exception as exc:  # the demo's customer could not do it: say why
            said = f"The customer could not do that: {exc}"
        if said:
            self.app.call_from_thread(self._status, said)


class CollectScreen(CustomerKeys, Screen):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("a", "merchant_qr('alipay')", "Alipay QR"),
        Binding("w", "merchant_qr('wechat')", "WeChat QR"),
        Binding("u", "merchant_qr('unionpay')", "UnionPay QR"),
        Binding("f", "face_camera", "Face pay (camera)"),
        *(Binding(k, f"customer('{k}')", show=False) for k in "123456789c"),
    ]

    def __init__(self, amount: int, note: str = ""):
        super().__init__()
        self.amount = amount
        self.note = note
        self.cancelled = False  # kept for the card flow's own checks
        self._stop = threading.Event()  # every wait ends when set
        self._claim_lock = threading.Lock()
        self._claimed = ""
        self._tap_done = threading.Event()
        self._finished = False

    # --- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        app = self.app
        ways = ["tap a card or phone"]
        if app.scanner is not None:
            ways.append("show a payment code to the scanner")
        if app.faces is not None:
            ways.append("look at the camera")
        with Vertical(id="collect-box"):
            yield Label(f"CNY {self.amount / 100:,.2f}", id="collect-amount")
            yield Static(self.note or f"Customer: {', '.join(ways)}...", id="collect-status")
            yield Label("a / w / u show the merchant QR of Alipay / WeChat Pay / UnionPay   Esc cancels",
                        id="collect-help")
            help_text = customer_help(app, "collect")
            if help_text:
                yield Static(help_text, id="customer-help")
        yield Footer()

    def on_mount(self) -> None:
        self.wait_for_tap()
        if self.app.scanner is not None:
            self.wait_for_code()
        if self.app.faces is not None:
            self.wait_for_face()

    def on_unmount(self) -> None:
        self._stop.set()
        if not self._tap_done.is_set() and self._claimed in ("", "cancel"):
            self.app.terminal.cancel()

    def _status(self, text: str) -> None:
        self.query_one("#collect-status", Static).update(text)

    def _say(self, text: str) -> None:  # from a worker
        if not self._finished:
            self.app.call_from_thread(self._status, text)

    # --- who gets the sale ------------------------------------------------------------------
    def _claim(self, what: str) -> bool:
        with self._claim_lock:
            if self._claimed:
                return False
            self._claimed = what
        self._stop.set()
        return True

    def _quiet_reader(self) -> None:
        """End the TEE's tap wait before anything else needs the TEE (from a worker)."""
        while not self._tap_done.wait(0.2):
            self.app.terminal.cancel()

    def _show_result(self, result: SaleResult) -> None:  # from a worker
        from .sale import ResultScreen

        self._finished = True
        self.app.call_from_thread(self.app.switch_screen, ResultScreen(result))

    def _failed(self, message: str, next_step: str = "Press s to start the sale again") -> None:
        from .sale import ResultScreen

        self._finished = True
        self.app.switch_screen(ResultScreen(SaleResult(False, "--", message, self.amount, next_step=next_step)))

    def _others_wait(self) -> bool:
        return self.app.scanner is not None or self.app.faces is not None

    # --- card --------------------------------------------------------------------------------
    @work(thread=True, group="collect-tap")
    def wait_for_tap(self) -> None:
        from terminal.tee.api import ErrorCode, TeeError

        terminal = self.app.terminal
        try:
            while True:
                try:
                    outcome = terminal.tap(self.amount, timeout_s=self.app.tap_timeout)
                    break
                except TeeError as exc:  # no tap in time while a code or face may still come: wait on
                    if exc.code is ErrorCode.NO_CARD and self._others_wait() and not self._stop.is_set():
                        continue
                    raise
        except Exception as exc:  # reader missing, no tap in time, cancelled: a plain message
            self._tap_done.set()
            if self._stop.is_set():
                return
            if self._others_wait():
                self._say(f"Card reader: {exc}. A payment code or a face still works")
            else:
                self._finished = True
                self.app.call_from_thread(self._failed, str(exc))
            return
        self._tap_done.set()
        if not self._claim("card"):  # a code or face came first: forget the card
            terminal.keys.end_transaction(outcome.handle)
            return
        if outcome.outcome == "ONLINE_REQUEST" and outcome.cvm == "ONLINE_PIN":
            self.app.call_from_thread(self._ask_pin, outcome)
            return
        self._say("Card read. Waiting for the host...")
        self._show_result(terminal.complete_card_sale(self.amount, outcome, None))

    def _ask_pin(self, outcome) -> None:
        from .pin import PinScreen

        def done(block) -> None:
            if block is None:
                self._failed("PIN entry cancelled")
                self.app.terminal.keys.end_transaction(outcome.handle)
                return
            self._status("PIN entered. Waiting for the host...")
            self._complete_card(outcome, block)

        self.app.push_screen(PinScreen(self.app.terminal, outcome.handle, self.amount), done)

    @work(thread=True, group="collect")
    def _complete_card(self, outcome, block) -> None:
        self._show_result(self.app.terminal.complete_card_sale(self.amount, outcome, block))

    # --- customer payment code ----------------------------------------------------------------
    @work(thread=True, group="collect-scan")
    def wait_for_code(self) -> None:
        from hardware.scanners import ScanCancelled, ScannerError, Wallet, classify_payment_code

        while True:
            try:
                event = self.app.scanner.read(None, self._stop)
            except ScanCancelled:
                return
            except ScannerError as exc:
                if not self._stop.is_set():
                    self._say(f"Scanner: {exc}. A card or face still works; check the scanner in Settings (o)")
                return
            if classify_payment_code(event.text) is Wallet.UNKNOWN:
                self._say("That barcode is not a wallet payment code: ask for the payment code page")
                continue
            if not self._claim("qr"):
                return
            self._say("Payment code scanned. Waiting for the wallet...")
            self._quiet_reader()
            timer = threading.Timer(USER_PAYING_AFTER_S, self._say, (
                "User paying: the customer confirms the payment in the wallet app "
                "(above the wallet's no-password limit). Waiting up to a minute...",))
            timer.start()
            try:
                result = self.app.checkout.qr_sale(self.amount, event.text)
            except Exception as exc:  # the TEE failed under the sale: a plain message, never a crash
                result = SaleResult(False, "--", f"The QR sale failed: {exc}", self.amount, "qr",
                                    next_step="Check the status screen, then start the sale again")
            finally:
                timer.cancel()
            self._show_result(result)
            return

    # --- face ------------------------------------------------------------------------------------
    @work(thread=True, group="collect-face")
    def wait_for_face(self) -> None:
        from terminal.face.capture import CameraError
        from terminal.face.checkout import FaceCaptureError, capture_face

        while True:
            faces = self.app.faces
            source = faces.wait(self._stop)
            if source is None:
                return
            challenge = faces.new_challenge() if getattr(faces, "live", False) else None
            if challenge is not None:  # a live camera: the customer turns the head as asked
                self._say(f"Customer: {challenge.prompt}")
                if self._stop.wait(1.0):
                    return
            else:
                self._say("Looking at the face...")
            try:
                capture = capture_face(source, challenge)
            except (FaceCaptureError, CameraError) as exc:
                self._say(f"Face not usable: {exc}. The customer looks at the camera again, or pays another way")
                continue
            if not self._claim("face"):
                return
            self._quiet_reader()
            self._say("Face captured. Asking the host...")
            try:
                got = self.app.checkout.face_start(self.amount, capture)
            except Exception as exc:  # the TEE could not seal it (not signed on, gone)
                self._show_result(SaleResult(False, "--", f"Face pay failed: {exc}", self.amount, "face", "face",
                                             next_step="Sign on (g on the status screen), then try again"))
                return
            if isinstance(got, SaleResult):
                self._show_result(got)
            else:
                self.app.call_from_thread(self._ask_passcode, got, "")
            return

    def _ask_passcode(self, attempt, note: str) -> None:
        from .pin import PinScreen

        def done(entered) -> None:
            if not entered:
                self._failed("Face pay cancelled: nothing was charged", "Press s to start the sale again")
                return
            self._status("Passcode entered. Waiting for the host...")
            self._pay_face(attempt)

        self.app.push_screen(PinScreen(self.app.terminal, None, self.amount, note), done)

    @work(thread=True, group="collect")
    def _pay_face(self, attempt) -> None:
        try:
            result = self.app.checkout.face_pay(attempt)
        except Exception as exc:  # the TEE refused the passcode entry (e.g. it restarted)
            result = SaleResult(False, "--", f"Face pay failed: {exc}", self.amount, "face", "face",
                                next_step="Start the sale again")
        if result.code == "55":  # wrong passcode: the customer tries again (the host counts)
            said = result.message if result.message.lower().startswith("wrong") else f"Wrong passcode: {result.message}"
            self.app.call_from_thread(self._ask_passcode, attempt, said[:1].upper() + said[1:])
            return
        self._show_result(result)

    # --- cashier keys ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action == "face_camera":  # only with a camera that waits for the cashier's key
            return hasattr(self.app.faces, "trigger")
        return True

    def action_face_camera(self) -> None:
        if hasattr(self.app.faces, "trigger"):
            self.app.faces.trigger()
    def action_merchant_qr(self, wallet: str) -> None:
        if self._claim("merchant-qr"):
            self._status("Preparing the merchant QR...")
            self._to_merchant_qr(wallet)

    @work(thread=True, group="collect")
    def _to_merchant_qr(self, wallet: str) -> None:
        from .merchant_qr import MerchantQrScreen

        self._quiet_reader()
        self._finished = True
        self.app.call_from_thread(self.app.switch_screen, MerchantQrScreen(self.amount, wallet))

    @work(thread=True, group="customer")
    def action_customer(self, key: str) -> None:
        self._customer_press(key)

    def action_cancel(self) -> None:
        if not self._claim("cancel"):
            return  # a payment is under way: it finishes with a result
        self.cancelled = True
        self.app.terminal.cancel()
        self.app.pop_screen()
