"""The shape every hardware event source shares (scanners, location sources): a device
waited on in short slices so that a timeout, a cancel or a close is noticed promptly."""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, Generic, TypeVar

from hardware.clock import Clock, SystemClock

POLL_SLICE_S = 0.05
T = TypeVar("T")


class PolledSource(ABC, Generic[T]):
    """A subclass says how to wait a short while for one item (`_poll`) and which errors
    mean closed, cancelled and timed out."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self._clock: Clock = clock or SystemClock()
        self._closed = False

    @abstractmethod
    def _poll(self, wait: float) -> T | None:
        """Wait at most `wait` seconds for one item; None if none came."""

    def _close_device(self) -> None:
        """Release the device; called once by close()."""

    @abstractmethod
    def _closed_error(self) -> Exception: ...

    @abstractmethod
    def _cancelled_error(self) -> Exception: ...

    def _wait(self, timeout: float | None, cancel: threading.Event | None,
              accept: Callable[[T], Exception | None], timed_out: Callable[[], Exception]) -> T:
        """Poll until an item that `accept` does not object to (it returns the objection,
        kept as the timeout error when nothing better came), a cancel, a close or the timeout."""
        # Deadlines use the real clock: the device waits are real waits.
        deadline = None if timeout is None else time.monotonic() + timeout
        objection: Exception | None = None
        while True:
            if self._closed:
                raise self._closed_error()
            if cancel is not None and cancel.is_set():
                raise self._cancelled_error()
            wait = POLL_SLICE_S
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            item = self._poll(wait)
            if item is not None:
                objection = accept(item)
                if objection is None:
                    return item
            if deadline is not None and time.monotonic() >= deadline:
                raise objection or timed_out()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_device()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
