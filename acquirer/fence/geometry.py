"""A terminal's fence and how far a fix lies beyond it, on the WGS 84 ellipsoid.

A fence is the union of the areas a terminal may be used in: a circle around the
registered site, optionally a polygon (a market, a campus) and a route corridor (a
polyline with a width: a mobile seller's round). `place` gives the geodesic distance
from the site and the offset beyond the nearest allowed area (zero or less: inside).

Distances to polygon edges and corridor legs are measured in an azimuthal equidistant
plane centred on the fix itself, built from geodesic inverse solutions
(geographiclib): distances from the fix to every vertex are exact, distances to the
segments between them are off by less than 0.1 % for fences under 100 km across.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from geographiclib.geodesic import Geodesic

_WGS84 = Geodesic.WGS84
_MASK = Geodesic.DISTANCE | Geodesic.AZIMUTH

Point = tuple[float, float]  # (latitude, longitude), degrees


def _check_point(point: Point, what: str) -> Point:
    lat, lon = float(point[0]), float(point[1])
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{what}: ({lat}, {lon}) is not a latitude/longitude in degrees")
    return lat, lon


@dataclass(frozen=True)
class Fence:
    terminal_id: str
    merchant_id: str
    latitude: float | None  # the registered site; None until one is recorded
    longitude: float | None
    radius_m: float
    polygon: tuple[Point, ...] = ()
    corridor: tuple[Point, ...] = ()
    corridor_width_m: float = 0.0
    cell_ids: frozenset[str] = field(default_factory=frozenset)
    mobile: bool = False
    risk_grade: str = "B"
    registered_at: float = 0.0
    registered_by: str = ""

    def __post_init__(self) -> None:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("site: give both latitude and longitude, or neither")
        if self.latitude is not None:
            _check_point((self.latitude, self.longitude), "site")
        if not (math.isfinite(self.radius_m) and self.radius_m >= 0):
            raise ValueError("radius_m: must be a number of metres, 0 or more")
        object.__setattr__(self, "polygon", tuple(_check_point(p, "polygon") for p in self.polygon))
        object.__setattr__(self, "corridor", tuple(_check_point(p, "corridor") for p in self.corridor))
        if self.polygon and len(self.polygon) < 3:
            raise ValueError("polygon: needs at least 3 vertices")
        if self.corridor and (len(self.corridor) < 2 or not self.corridor_width_m > 0):
            raise ValueError("corridor: needs at least 2 points and a width above 0 m")
        object.__setattr__(self, "cell_ids", frozenset(self.cell_ids))

    @property
    def has_site(self) -> bool:
        return self.latitude is not None

    @property
    def has_area(self) -> bool:
        """False for a fence still waiting for its site: nothing to be outside of yet."""
        return self.latitude is not None or bool(self.polygon) or bool(self.corridor)  # `has_site`, inline


@dataclass(frozen=True)
class Placement:
    distance_m: float | None  # from the registered site
    offset_m: float  # beyond the nearest allowed area; <= 0 inside
    nearest: str  # "site", "polygon" or "corridor"

    def within(self, accuracy_m: float, credit_m: float) -> bool:
        """Inside the fence for a fix of `accuracy_m`: its own error bar counts in its
        favour, capped at `credit_m` so a claimed 10 km error buys nothing. The one rule
        of the host's check and the terminal's own."""
        return self.offset_m <= min(accuracy_m, credit_m)


@functools.lru_cache(maxsize=8192)
def distance_m(a: Point, b: Point) -> float:
    """Geodesic distance. Memoised: a fixed till reports its surveyed site every time, so the
    same pairs recur on every sale (an inverse solution costs tens of microseconds)."""
    return _WGS84.Inverse(a[0], a[1], b[0], b[1], Geodesic.DISTANCE)["s12"]


def _plane(origin: Point, points: tuple[Point, ...]) -> list[tuple[float, float]]:
    """(east, north) metres of `points` in the azimuthal equidistant plane at `origin`."""
    out = []
    for lat, lon in points:
        g = _WGS84.Inverse(origin[0], origin[1], lat, lon, _MASK)
        az = math.radians(g["azi1"])
        out.append((g["s12"] * math.sin(az), g["s12"] * math.cos(az)))
    return out


def _segment_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance from the plane's origin to segment ab."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(a[0] * dx + a[1] * dy) / length2))
    return math.hypot(a[0] + t * dx, a[1] + t * dy)


def _origin_inside(ring: list[tuple[float, float]]) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]):
        if (y1 > 0) != (y2 > 0) and 0 < x1 + (0 - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def place(fence: Fence, latitude: float, longitude: float) -> Placement:
    """Where a fix lies against the fence; the fence must have an area."""
    fix = _check_point((latitude, longitude), "fix")
    candidates: list[tuple[float, str]] = []
    site_distance = None
    if fence.has_site:
        site_distance = distance_m(fix, (fence.latitude, fence.longitude))
        candidates.append((site_distance - fence.radius_m, "site"))
    if fence.polygon:
        ring = _plane(fix, fence.polygon)
        edge = min(_segment_distance(a, b) for a, b in zip(ring, ring[1:] + ring[:1]))
        candidates.append((-edge if _origin_inside(ring) else edge, "polygon"))
    if fence.corridor:
        line = _plane(fix, fence.corridor)
        nearest = min(_segment_distance(a, b) for a, b in zip(line, line[1:]))
        candidates.append((nearest - fence.corridor_width_m / 2, "corridor"))
    if not candidates:
        raise ValueError(f"fence of {fence.terminal_id} has no site, polygon or corridor yet")
    offset, nearest = min(candidates)
    return Placement(site_distance, offset, nearest)
