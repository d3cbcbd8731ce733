"""What every location source yields, the errors they raise, and their common read loop."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from hardware.errors import HardwareError
from hardware.polling import PolledSource


@dataclass(frozen=True, slots=True)
class Fix:
    """A position: WGS 84 degrees, a horizontal accuracy radius in metres, a UTC time.

    `cell_ids` are serving/neighbour cells as "MCC-MNC-LAC-CID" strings when known.
    """

    latitude: float
    longitude: float
    accuracy_m: float
    source: str
    time: datetime
    altitude_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    cell_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value, limit in (("latitude", self.latitude, 90.0), ("longitude", self.longitude, 180.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and -limit <= value <= limit):
                raise ValueError(f"{name}: must be a number in [-{limit:g}, {limit:g}], got {value!r}")
        if not (math.isfinite(self.accuracy_m) and self.accuracy_m > 0):
            raise ValueError(f"accuracy_m: must be a positive number of metres, got {self.accuracy_m!r}")
        if self.time.tzinfo is None or self.time.utcoffset() != timedelta(0):
            raise ValueError(f"time: must be in UTC, got {self.time!r}")
        if self.heading_deg is not None and not 0.0 <= self.heading_deg < 360.0:
            raise ValueError(f"heading_deg: must be in [0, 360), got {self.heading_deg!r}")
        if self.speed_mps is not None and self.speed_mps < 0:
            raise ValueError(f"speed_mps: must not be negative, got {self.speed_mps!r}")
        if not isinstance(self.cell_ids, tuple):
            object.__setattr__(self, "cell_ids", tuple(self.cell_ids))

    def age(self, now: datetime) -> float:
        """Seconds since the fix was taken (negative if `now` is before it)."""
        return (now - self.time).total_seconds()


class LocationError(HardwareError):
    """Base of every location source error."""


class LocationUnavailable(LocationError):
    """The source cannot be used: missing device, no permission, daemon not running."""


class NoFix(LocationError):
    """The source works but has no position to give (yet)."""


class StaleFix(NoFix):
    """The newest position is older than the caller accepts."""

    def __init__(self, fix: Fix, age: float, max_age: float) -> None:
        self.fix = fix
        self.age = age
        self.max_age = max_age
        super().__init__(
            f"the last fix from {fix.source!r} is {age:.0f} s old (limit {max_age:g} s): "
            "the receiver may have lost the sky"
        )


class LocationCancelled(LocationError):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"waiting for a fix from {source!r} was cancelled")


class LocationSource(PolledSource[Fix]):
    """The common interface; a subclass only says how to wait a short while for a fix."""

    def _no_fix(self, timeout: float) -> NoFix:
        """The error for a read that timed out; sources say why they had nothing."""
        return NoFix(f"no fix from {self.name!r} within {timeout:g} s")

    def _closed_error(self) -> Exception:
        return LocationUnavailable(f"location source {self.name!r} is closed")

    def _cancelled_error(self) -> Exception:
        return LocationCancelled(self.name)

    def read(
        self,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        max_age: float | None = None,
    ) -> Fix:
        """The next fix no older than `max_age` seconds (any age without one).

        Older fixes are passed over while waiting (a receiver may have buffered them);
        on timeout StaleFix says how old the newest was, or NoFix says why there was none.
        """
        def fresh(fix: Fix) -> StaleFix | None:
            age = fix.age(self._clock.now())
            return None if max_age is None or age <= max_age else StaleFix(fix, age, max_age)

        return self._wait(timeout, cancel, fresh, lambda: self._no_fix(timeout))
