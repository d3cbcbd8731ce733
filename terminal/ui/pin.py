"""The scrambled PIN (and face-pay passcode) keypad: digits go to the TEE as key
positions, never as digits.

The TEE chooses the layout (which digit sits at which position) and maps positions back
to digits itself; this screen only learns how many digits were entered. The keyboard
keys 1-9 and 0 press the positions where a phone keypad has them, so a cashier's number
row or a numeric pad works, and the customer reads the scrambled digit on screen.

A card PIN ends with PIN_ENTER (the TEE builds the block for the held card's PAN). A
face-pay passcode ends here with the digits still in the TEE: the block is made by
PASSCODE_ENTER when the request that carries it has its STAN (`WalletFaceCheckout.face_pay`).
"""
from __future__ import annotations

import queue

from textual import work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

# keyboard key -> keypad position (row-major 3x3, then the bottom middle)
KEY_POSITIONS = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6, "8": 7, "9": 8, "0": 9}


class PinScreen(ModalScreen):
    """Dismisses with the TEE's PinBlock (a passcode: True), or None when cancelled."""

    BINDINGS = [
        *(Binding(k, f"press({p})", show=False, priority=True) for k, p in KEY_POSITIONS.items()),
        Binding("backspace", "backspace", "Delete", priority=True),
        Binding("enter", "enter", "Confirm", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, terminal, handle: bytes | None, amount: int, note: str = ""):
        """`handle`: the tapped card's; None asks for the face-pay passcode instead."""
        super().__init__()
        self.terminal = terminal
        self.handle = handle
        self.amount = amount
        self.note = note  # e.g. "Wrong passcode, 2 tries left"
        self.pad_layout: list[int] = []
        self.min_digits, self.max_digits = 4, 12
        self.count = 0

    @property
    def passcode(self) -> bool:
        return self.handle is None

    def compose(self) -> ComposeResult:
        what = "face-pay passcode" if self.passcode else "enter PIN"
        with Vertical(id="pin-box"):
            yield Static(f"Customer: {what}, CNY {self.amount / 100:,.2f}", id="pin-title")
            if self.note:
                yield Static(self.note, id="pin-note")
            yield Static("", id="pin-dots")
            with Grid(id="pin-grid"):
                for position in range(10):
                    key = Button("?", id=f"pos-{position}", classes="pin-key")
                    key.can_focus = False  # the keyboard presses positions through the bindings
                    yield key
            yield Static("keys 1-9/0 press the matching position - Backspace deletes - Enter confirms - "
                         "Esc cancels", id="pin-help")

    def on_mount(self) -> None:
        self._ops: queue.Queue = queue.Queue()
        self.pump()

    @work(thread=True, exclusive=True, group="pin")
    def pump(self) -> None:
        """One thread talks to the TEE, in key order: a fast typist's Enter never overtakes
        the digits before it."""
        try:
            layout = self.terminal.keys.passcode_begin() if self.passcode else self.terminal.pin_begin(self.handle)
        except Exception as exc:  # not signed on, TEE gone: say so; Esc leaves
            self.app.call_from_thread(self.query_one("#pin-dots", Static).update,
                                      f"The keypad could not start: {exc}. Esc cancels")
            self._ops = None
            return
        self.app.call_from_thread(self._show_layout, layout)
        worker = get_current_worker()
        while not worker.is_cancelled:  # cancelled when the screen goes away or the app quits
            try:
                op, arg = self._ops.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if op == "key":
                    self.count = self.terminal.pin_key(arg)
                    self.app.call_from_thread(self._dots, self.count)
                elif op == "back":
                    self.count = self.terminal.pin_backspace()
                    self.app.call_from_thread(self._dots, self.count)
                elif op == "enter" and self.passcode:  # the digits wait in the TEE for the request
                    if self.count < self.min_digits:
                        raise ValueError(f"enter {self.min_digits} to {self.max_digits} digits")
                    self.app.call_from_thread(self.dismiss, True)
                    return
                elif op == "enter":
                    block = self.terminal.pin_enter()
                    self.app.call_from_thread(self.dismiss, block)
                    return
                elif op == "cancel":
                    self.terminal.pin_cancel()
                    self.app.call_from_thread(self.dismiss, None)
                    return
            except Exception as exc:  # too few or too many digits: say so, keep the keypad
                self.app.call_from_thread(self.query_one("#pin-dots", Static).update, str(exc))

    def _show_layout(self, layout) -> None:
        self.pad_layout = list(layout.layout)
        self.min_digits, self.max_digits = layout.min_digits, layout.max_digits
        for position, digit in enumerate(self.pad_layout):
            self.query_one(f"#pos-{position}", Button).label = str(digit)
        self._dots(0)

    def _dots(self, count: int) -> None:
        self.query_one("#pin-dots", Static).update(
            "● " * count if count else f"enter {self.min_digits} to {self.max_digits} digits")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("pos-"):
            self.action_press(int(event.button.id[4:]))

    def _put(self, op: str, arg=None) -> None:
        if self._ops is not None:
            self._ops.put((op, arg))

    def action_press(self, position: int) -> None:
        self._put("key", position)

    def action_backspace(self) -> None:
        self._put("back")

    def action_enter(self) -> None:
        self._put("enter")

    def action_cancel(self) -> None:
        if self._ops is None:  # the keypad never started: nothing in the TEE to cancel
            self.dismiss(None)
            return
        self._ops.put(("cancel", None))
