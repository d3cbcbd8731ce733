"""HID keyboard-wedge scanners read through evdev.

Such a scanner types its code as a burst of key presses ending in Enter, far faster than
a person types. `BurstAssembler` turns (keycode, value, timestamp) tuples into scanned
texts and knows nothing of devices, so it is tested without one; `HidScanner` feeds it
from /dev/input/eventN.
"""
from __future__ import annotations

import errno
import select
import time

import evdev
from evdev import ecodes

from hardware.scanners.events import (
    UNKNOWN_SYMBOLOGY,
    Clock,
    Scanner,
    ScanEvent,
    ScannerUnavailable,
    split_aim_identifier,
)

KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2
DEFAULT_MAX_GAP_S = 0.05  # scanners send a key every 1-10 ms; people rarely under 80 ms
DEFAULT_MIN_LENGTH = 4  # a short fast burst is more likely a person than a code
MAX_BURST_LENGTH = 4096  # a stuck key must not grow the buffer without end
SHIFT_KEYS = frozenset({ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT})
ENTER_KEYS = frozenset({ecodes.KEY_ENTER, ecodes.KEY_KPENTER})


def _us_keymap() -> dict[int, tuple[str, str]]:
    """keycode -> (plain, shifted) for the US layout most scanners are set to."""
    keymap: dict[int, tuple[str, str]] = {}
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        keymap[getattr(ecodes, f"KEY_{letter}")] = (letter.lower(), letter)
    for digit, shifted in zip("1234567890", "!@#$%^&*()"):
        keymap[getattr(ecodes, f"KEY_{digit}")] = (digit, shifted)
    for name, plain, shifted in (
        ("MINUS", "-", "_"), ("EQUAL", "=", "+"), ("LEFTBRACE", "[", "{"),
        ("RIGHTBRACE", "]", "}"), ("SEMICOLON", ";", ":"), ("APOSTROPHE", "'", '"'),
        ("GRAVE", "`", "~"), ("BACKSLASH", "\\", "|"), ("COMMA", ",", "<"),
        ("DOT", ".", ">"), ("SLASH", "/", "?"), ("SPACE", " ", " "),
    ):
        keymap[getattr(ecodes, f"KEY_{name}")] = (plain, shifted)
    # The keypad ignores shift; scanners in "numeric keypad" mode use it for digits.
    for digit in "0123456789":
        keymap[getattr(ecodes, f"KEY_KP{digit}")] = (digit, digit)
    for name, char in (("KPMINUS", "-"), ("KPPLUS", "+"), ("KPASTERISK", "*"),
                       ("KPSLASH", "/"), ("KPDOT", ".")):
        keymap[getattr(ecodes, f"KEY_{name}")] = (char, char)
    return keymap


US_KEYMAP = _us_keymap()


class BurstAssembler:
    """Key events in, scanned texts out.

    A scan is a run of key presses, each at most `max_gap` seconds after the one before,
    ended by a terminator key (Enter by default) and at least `min_length` characters
    long. A slower key drops what came before it: a person was typing. A burst that
    ends without a terminator is dropped, unless `accept_unterminated`, when `flush`
    (or the next key after the gap) hands it out.
    """

    def __init__(
        self,
        max_gap: float = DEFAULT_MAX_GAP_S,
        min_length: int = DEFAULT_MIN_LENGTH,
        terminators: frozenset[int] = ENTER_KEYS,
        accept_unterminated: bool = False,
        keymap: dict[int, tuple[str, str]] | None = None,
    ) -> None:
        if max_gap <= 0:
            raise ValueError(f"max_gap: must be positive, got {max_gap}")
        if min_length < 1:
            raise ValueError(f"min_length: must be at least 1, got {min_length}")
        self.max_gap = max_gap
        self.min_length = min_length
        self.terminators = frozenset(terminators)
        self.accept_unterminated = accept_unterminated
        self.keymap = US_KEYMAP if keymap is None else keymap
        self._shifts_held: set[int] = set()
        self._chars: list[str] = []
        self._last: float | None = None

    @property
    def pending(self) -> str:
        """Characters of the burst in progress."""
        return "".join(self._chars)

    def feed(self, keycode: int, value: int, timestamp: float) -> str | None:
        """One EV_KEY event; the scanned text when this event completes a scan."""
        if keycode in SHIFT_KEYS:
            # Shift state is kept even across bursts: it is the keyboard's, not the scan's.
            if value == KEY_UP:
                self._shifts_held.discard(keycode)
            else:
                self._shifts_held.add(keycode)
            return None
        if value != KEY_DOWN:
            return None  # releases carry nothing; auto-repeat means a held key, not a scanner
        done = None
        if self._last is not None and timestamp - self._last > self.max_gap:
            done = self._end_unterminated()
        if keycode in self.terminators:
            text = self._take()
            return text if text is not None else done
        char = self.keymap.get(keycode)
        if char is None:
            # An unmapped key inside a burst keeps the burst alive but adds nothing.
            if self._chars:
                self._last = timestamp
            return done
        self._chars.append(char[1] if self._shifts_held else char[0])
        self._last = timestamp
        if len(self._chars) > MAX_BURST_LENGTH:
            self._reset()
        return done

    def flush(self, now: float) -> str | None:
        """The burst in progress if it has gone quiet and unterminated bursts count."""
        if self._last is not None and now - self._last > self.max_gap:
            return self._end_unterminated()
        return None

    def _end_unterminated(self) -> str | None:
        text = self._take()
        return text if self.accept_unterminated else None

    def _take(self) -> str | None:
        text = "".join(self._chars)
        self._reset()
        return text if len(text) >= self.min_length else None

    def _reset(self) -> None:
        self._chars.clear()
        self._last = None


def _open_error(path: str, exc: OSError) -> ScannerUnavailable:
    """A message that says what to do about a device that cannot be opened."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return ScannerUnavailable(
            f"device {path} is not readable: add the user to the input group "
            "(sudo usermod -aG input $USER, then log in again)"
        )
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return ScannerUnavailable(
            f"device {path} does not exist: is the scanner plugged in? "
            "`python -m evdev.evtest` lists the input devices"
        )
    if exc.errno == errno.ENOTTY:
        return ScannerUnavailable(f"{path} is not an input device (expected /dev/input/eventN)")
    if exc.errno == errno.EBUSY:
        return ScannerUnavailable(f"device {path} is grabbed by another program")
    return ScannerUnavailable(f"device {path} cannot be used: {exc.strerror or exc}")


class HidScanner(Scanner):
    """A keyboard-wedge scanner on /dev/input/eventN.

    `grab=True` takes the device exclusively, so its keystrokes stop reaching the
    focused window too. `aim_ids=True` reads an AIM symbology prefix the scanner was
    set to send; otherwise the symbology is UNKNOWN.
    """

    def __init__(
        self,
        path: str,
        *,
        grab: bool = False,
        aim_ids: bool = False,
        assembler: BurstAssembler | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name or path, clock)
        self.path = path
        self.aim_ids = aim_ids
        self._assembler = assembler or BurstAssembler()
        self._ready: list[str] = []
        try:
            self._device = evdev.InputDevice(path)
        except OSError as exc:
            raise _open_error(path, exc) from exc
        if ecodes.EV_KEY not in self._device.capabilities():
            self._device.close()
            raise ScannerUnavailable(f"device {path} ({self._device.name}) sends no key events")
        if grab:
            try:
                self._device.grab()
            except OSError as exc:
                self._device.close()
                raise _open_error(path, exc) from exc

    def _poll(self, wait: float) -> ScanEvent | None:
        if not self._ready:
            try:
                readable, _, _ = select.select([self._device.fd], [], [], wait)
                if readable:
                    for event in self._device.read():
                        if event.type == ecodes.EV_KEY:
                            self._collect(self._assembler.feed(event.code, event.value, event.timestamp()))
            except BlockingIOError:
                pass  # woken with nothing to read
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise ScannerUnavailable(f"device {self.path} was unplugged") from exc
                raise _open_error(self.path, exc) from exc
            # The kernel stamps events with CLOCK_REALTIME: compare with that, not our clock.
            self._collect(self._assembler.flush(time.time()))
        if not self._ready:
            return None
        text = self._ready.pop(0)
        symbology = UNKNOWN_SYMBOLOGY
        if self.aim_ids:
            symbology, text = split_aim_identifier(text)
        return self._event(symbology, text)

    def _collect(self, text: str | None) -> None:
        if text is not None:
            self._ready.append(text)

    def _close_device(self) -> None:
        try:
            self._device.close()  # closing also ends a grab
        except OSError:
            pass


def list_input_devices() -> list[tuple[str, str]]:
    """(path, name) of the input devices this user can open, to find the scanner."""
    found = []
    for path in evdev.list_devices():
        try:
            device = evdev.InputDevice(path)
        except OSError:
            continue
        found.append((path, device.name))
        device.close()
    return found


__all__ = ["BurstAssembler", "HidScanner", "US_KEYMAP", "list_input_devices"]
