"""Clocks for hardware sources (location, scanners): the real one and a hand-driven one.

Fix times, staleness and simulated walks all read a clock passed in, so a test or the
demo can move time on without sleeping.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """Time stands still until `advance` is called; both readings move together."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        start = start or datetime(2025, 1, 1, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("start: must carry a time zone (UTC)")
        self._wall = start.astimezone(timezone.utc)
        self._monotonic = monotonic
        self._lock = threading.Lock()  # the demo advances it from another thread

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def now(self) -> datetime:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds: a clock only moves forward, got {seconds}")
        with self._lock:
            self._monotonic += seconds
            self._wall += timedelta(seconds=seconds)
