"""A configured site: for a terminal that never moves, or has no receiver at all."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from hardware.clock import Clock
from hardware.location.fix import Fix, LocationSource


class FixedSite(LocationSource):
    """Always the configured position, dated now; its accuracy is what the survey says."""

    def __init__(
        self,
        latitude: float,
        longitude: float,
        accuracy_m: float,
        *,
        altitude_m: float | None = None,
        cell_ids: Iterable[str] = (),
        name: str = "fixed site",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, clock)
        # Built once now so that a bad configuration fails at start-up, naming the field.
        self._template = Fix(
            latitude, longitude, accuracy_m, name, datetime.now(timezone.utc),
            altitude_m=altitude_m, cell_ids=tuple(cell_ids),
        )

    def _poll(self, wait: float) -> Fix:
        t = self._template
        return Fix(
            t.latitude, t.longitude, t.accuracy_m, t.source, self._clock.now(),
            altitude_m=t.altitude_m, speed_mps=0.0, cell_ids=t.cell_ids,
        )
