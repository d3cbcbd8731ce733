"""A scanner you push texts into: the demo's and the tests' stand-in for a real one."""
from __future__ import annotations

import queue

from hardware.scanners.events import Clock, Scanner, ScanEvent


class SimulatedScanner(Scanner):
    """Thread-safe: one thread pushes, another reads, as with a real scanner."""

    def __init__(self, name: str = "simulated", clock: Clock | None = None) -> None:
        super().__init__(name, clock)
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def push(self, text: str, symbology: str = "QRCODE") -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("text: a scan needs a non-empty string")
        self._queue.put((symbology, text))

    def _poll(self, wait: float) -> ScanEvent | None:
        try:
            symbology, text = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        # Stamped when read, as a real scanner's event is stamped when it completes.
        return self._event(symbology, text)
