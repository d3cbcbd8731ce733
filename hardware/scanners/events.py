"""What every barcode source yields, the errors they raise, and their common read loop.

A source is anything with `read(timeout, cancel) -> ScanEvent`: a HID keyboard-wedge
scanner, a serial scanner, a camera or image files, or the simulated scanner. Callers
never learn which kind they hold.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from hardware.clock import Clock, SystemClock
from hardware.errors import HardwareError

UNKNOWN_SYMBOLOGY = "UNKNOWN"
# A blocked read wakes this often to look at its cancel event and its deadline.
POLL_SLICE_S = 0.05

# AIM symbology identifiers ("]" + code letter + modifier) that a scanner can be set to
# prefix; three-character keys win over two-character ones. Names follow zbar's.
AIM_IDENTIFIERS = {
    "]E0": "EAN13",
    "]E4": "EAN8",
    "]C": "CODE128",
    "]Q": "QRCODE",
    "]A": "CODE39",
    "]I": "I25",
    "]L": "PDF417",
    "]d": "DATAMATRIX",
    "]e": "DATABAR",
}


def _mask(text: str) -> str:
    # A payment code is a one-time bearer credential: logs get its ends, not all of it.
    if len(text) <= 8:
        return "*" * len(text)
    return f"{text[:4]}{'*' * (len(text) - 8)}{text[-4:]}"


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One decoded barcode: what it was, what it said, where and when it was read."""

    symbology: str
    text: str
    source: str
    monotonic: float
    wall: datetime

    def __repr__(self) -> str:
        return (
            f"ScanEvent(symbology={self.symbology!r}, text={_mask(self.text)!r} "
            f"({len(self.text)} chars), source={self.source!r}, wall={self.wall.isoformat()})"
        )


def split_aim_identifier(text: str) -> tuple[str, str]:
    """(symbology, text without the prefix); UNKNOWN and the text as-is without one."""
    if text.startswith("]"):
        for size in (3, 2):
            symbology = AIM_IDENTIFIERS.get(text[:size])
            if symbology is not None:
                # The two-letter forms still carry a one-character modifier to drop.
                return symbology, text[3:]
    return UNKNOWN_SYMBOLOGY, text


class ScannerError(HardwareError):
    """Base of every barcode scanner error."""


class ScannerUnavailable(ScannerError):
    """The scanner cannot be used: missing device, no permission, missing package."""


class ScannerClosed(ScannerUnavailable):
    """The source was closed (or has no more images to give)."""

    def __init__(self, source: str, why: str = "is closed") -> None:
        self.source = source
        super().__init__(f"scanner {source!r} {why}")


class Unreadable(ScannerError):
    """Something was captured but no barcode text could be had from it."""


class ScanTimeout(ScannerError):
    """No scan arrived before the timeout."""

    def __init__(self, source: str, timeout: float) -> None:
        self.source = source
        self.timeout = timeout
        super().__init__(f"no scan from {source!r} within {timeout:g} s")


class ScanCancelled(ScannerError):
    """The caller set the cancel event while waiting for a scan."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"waiting for a scan from {source!r} was cancelled")


class Scanner(ABC):
    """The common interface; a subclass only says how to wait a short while for a scan."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self._clock: Clock = clock or SystemClock()
        self._closed = False

    @abstractmethod
    def _poll(self, wait: float) -> ScanEvent | None:
        """Wait at most `wait` seconds for one scan; None if none came."""

    def _close_device(self) -> None:
        """Release the device; called once by close()."""

    def read(self, timeout: float | None = None, cancel: threading.Event | None = None) -> ScanEvent:
        """The next scan. Raises ScanTimeout, ScanCancelled, ScannerClosed or a device error."""
        # Deadlines use the real clock: the device waits are real waits.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise ScannerClosed(self.name)
            if cancel is not None and cancel.is_set():
                raise ScanCancelled(self.name)
            wait = POLL_SLICE_S
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            event = self._poll(wait)
            if event is not None:
                return event
            if deadline is not None and time.monotonic() >= deadline:
                raise ScanTimeout(self.name, timeout)

    def events(self, cancel: threading.Event | None = None) -> Iterator[ScanEvent]:
        """Scans until `cancel` is set or the source closes; other errors propagate."""
        while True:
            try:
                yield self.read(None, cancel)
            except (ScanCancelled, ScannerClosed):
                return

    def __iter__(self) -> Iterator[ScanEvent]:
        return self.events()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_device()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _event(self, symbology: str, text: str) -> ScanEvent:
        return ScanEvent(symbology, text, self.name, self._clock.monotonic(), self._clock.now())
