"""The scrambled PIN keypad: digits go to the TEE as key positions, never as digits.

The TEE chooses the layout (which digit sits at which position) and maps positions back
to digits itself; this screen only learns how many digits were entered. The keyboard
keys 1-9 and 0 press the positions where a phone keypad has them, so a cashier's number
row or a numeric pad works, and the customer reads the scrambled digit on screen.
"""
from __future__ import annotations

import queue

from textual import work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

# keyboard key -> keypad position (row-major 3x3, then the bottom middle)
KEY_POSITIONS = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6, "8": 7, "9": 8, "0": 9}


class PinScreen(ModalScreen):
    """Dismisses with the TEE's PinBlock, or None when cancelled."""

    BINDINGS = [
        *(Binding(k, f"press({p})", show=False, priority=True) for k, p in KEY_POSITIONS.items()),
        Binding("backspace", "backspace", "Delete", priority=True),
        Binding("enter", "enter", "Confirm", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, terminal, handle: bytes, amount: int):
        super().__init__()
        self.terminal = terminal
        self.handle = handle
        self.amount = amount
        self.pad_layout: list[int] = []
        self.min_digits, self.max_digits = 4, 12

    def compose(self) -> ComposeResult:
        with Vertical(id="pin-box"):
            yield Label(f"Customer: enter PIN for CNY {self.amount / 100:,.2f}", id="pin-title")
            yield Static("", id="pin-dots")
            with Grid(id="pin-grid"):
                for position in range(10):
                    key = Button("?", id=f"pos-{position}", classes="pin-key")
                    key.can_focus = False  # the keyboard presses positions through the bindings
                    yield key
            yield Label("keys 1-9/0 press the matching position - Backspace deletes - Enter confirms - Esc cancels",
                        id="pin-help")

    def on_mount(self) -> None:
        self._ops: queue.Queue = queue.Queue()
        self.pump()

    @work(thread=True, exclusive=True, group="pin")
    def pump(self) -> None:
        """One thread talks to the TEE, in key order: a fast typist's Enter never overtakes
        the digits before it."""
        layout = self.terminal.pin_begin(self.handle)
        self.app.call_from_thread(self._show_layout, layout)
        worker = get_current_worker()
        while not worker.is_cancelled:  # cancelled when the screen goes away or the app quits
            try:
                op, arg = self._ops.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if op == "key":
                    self.app.call_from_thread(self._dots, self.terminal.pin_key(arg))
                elif op == "back":
                    self.app.call_from_thread(self._dots, self.terminal.pin_backspace())
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

    def _dots(self, count: int) -> None:
        self.query_one("#pin-dots", Static).update("● " * count if count else "enter 4 to 12 digits")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("pos-"):
            self.action_press(int(event.button.id[4:]))

    def action_press(self, position: int) -> None:
        self._ops.put(("key", position))

    def action_backspace(self) -> None:
        self._ops.put(("back", None))

    def action_enter(self) -> None:
        self._ops.put(("enter", None))

    def action_cancel(self) -> None:
        self._ops.put(("cancel", None))
