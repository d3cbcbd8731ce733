"""What every barcode source yields, the errors they raise, and their common read loop.

A source is anything with `read(timeout, cancel) -> ScanEvent`: a HID keyboard-wedge
scanner, a serial scanner, a camera or image files, or the simulated scanner. Callers
never learn which kind they hold.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from hardware.errors import HardwareError
from hardware.clock import Clock, SystemClock  # noqa: F401  (sources import them from here)
from hardware.polling import PolledSource

UNKNOWN_SYMBOLOGY = "UNKNOWN"
# A blocked read wakes this often to look at its cancel event and its deadline.

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


class Scanner(PolledSource[ScanEvent]):
    """The common interface; a subclass only says how to wait a short while for a scan."""

    def _closed_error(self) -> Exception:
        return ScannerClosed(self.name)

    def _cancelled_error(self) -> Exception:
        return ScanCancelled(self.name)

    def read(self, timeout: float | None = None, cancel: threading.Event | None = None) -> ScanEvent:
        """The next scan. Raises ScanTimeout, ScanCancelled, ScannerClosed or a device error."""
        return self._wait(timeout, cancel, lambda event: None, lambda: ScanTimeout(self.name, timeout))

    def events(self, cancel: threading.Event | None = None) -> Iterator[ScanEvent]:
        """Scans until `cancel` is set or the source closes; other errors propagate."""
        while True:
            try:
                yield self.read(None, cancel)
            except (ScanCancelled, ScannerClosed):
                return

    def __iter__(self) -> Iterator[ScanEvent]:
        return self.events()

    def _event(self, symbology: str, text: str) -> ScanEvent:
        return ScanEvent(symbology, text, self.name, self._clock.monotonic(), self._clock.now())
