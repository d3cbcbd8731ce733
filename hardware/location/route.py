"""A simulated terminal walking a route: the demo's and the tests' way to leave the
fence and come back, deterministic under a ManualClock.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from hardware.clock import Clock
from hardware.location.fix import Fix, LocationSource

# Simulation only (how far to move per second); fencing does its own geodesy with
# geographiclib. A sphere of the mean Earth radius is within 0.5 % of the ellipsoid.
_EARTH_RADIUS_M = 6_371_008.8


def _sphere_distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


class SimulatedRoute(LocationSource):
    """Walks `waypoints` (latitude, longitude) at `speed_mps`, starting when created.

    `round_trip` walks back to the first waypoint; `loop` starts over at the end.
    Without `loop` the walker stops at the last point. Within a leg the position is
    interpolated linearly in degrees, which is exact enough for legs of a few km.
    """

    def __init__(
        self,
        waypoints: Sequence[tuple[float, float]],
        speed_mps: float,
        *,
        accuracy_m: float = 5.0,
        round_trip: bool = False,
        loop: bool = False,
        cell_ids: Iterable[str] = (),
        name: str = "simulated route",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, clock)
        if not waypoints:
            raise ValueError("waypoints: a route needs at least one point")
        if not (math.isfinite(speed_mps) and speed_mps > 0):
            raise ValueError(f"speed_mps: must be a positive number, got {speed_mps!r}")
        points = [(float(lat), float(lon)) for lat, lon in waypoints]
        for lat, lon in points:  # a Fix checks the ranges and names the field
            Fix(lat, lon, accuracy_m, name, self._clock.now())
        if round_trip:
            points += points[-2::-1]
        self.points = tuple(points)
        self.speed_mps = speed_mps
        self.accuracy_m = accuracy_m
        self.loop = loop
        self.cell_ids = tuple(cell_ids)
        self._legs = [_sphere_distance_m(a, b) for a, b in zip(points, points[1:])]
        self.length_m = sum(self._legs)
        self._start = self._clock.monotonic()

    @property
    def duration_s(self) -> float:
        """Time to walk the whole route once."""
        return self.length_m / self.speed_mps

    def restart(self) -> None:
        """Start walking from the first waypoint again, now."""
        self._start = self._clock.monotonic()

    def position_at(self, elapsed_s: float) -> tuple[float, float, float | None, float]:
        """(latitude, longitude, heading or None when still, speed) after `elapsed_s`."""
        travelled = max(0.0, elapsed_s) * self.speed_mps
        if self.loop and self.length_m > 0:
            travelled %= self.length_m
        for (a, b), leg in zip(zip(self.points, self.points[1:]), self._legs):
            if leg == 0:
                continue  # a repeated waypoint: nothing to walk
            if travelled < leg:
                f = travelled / leg
                lat = a[0] + (b[0] - a[0]) * f
                lon = a[1] + (b[1] - a[1]) * f
                return lat, lon, _bearing_deg(a, b), self.speed_mps
            travelled -= leg
        lat, lon = self.points[-1]
        return lat, lon, None, 0.0

    def _poll(self, wait: float) -> Fix:
        lat, lon, heading, speed = self.position_at(self._clock.monotonic() - self._start)
        return Fix(
            lat, lon, self.accuracy_m, self.name, self._clock.now(),
            speed_mps=speed, heading_deg=heading, cell_ids=self.cell_ids,
        )
