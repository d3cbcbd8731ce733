"""The fence as the terminal is told it: where it may work, how often it must report,
and how old a fix may be. Sent by the host at sign-on and after every periodic report
(field 59, tag DF20), so a site the host adopted from the first fix reaches the terminal.

The terminal checks itself against these terms before it starts a payment (it refuses
outside the fence and tells the cashier why); the host checks every signed fix again,
so a terminal that ignores its terms is still declined.

On the wire: a compact JSON object (UTF-8), keys as in `FenceTerms`:

    {"lat": 31.2304, "lon": 121.4737, "r": 500.0, "poly": [], "cor": [], "w": 0.0,
     "every": 600, "age": 1200}

"lat"/"lon" are null while the host waits for the first fix to record the site.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .geometry import Fence, Placement, Point, place
from .policy import DEFAULT_POLICY, FencePolicy


class FenceTermsError(ValueError):
    """Terms that do not parse: the terminal keeps the ones it had."""


@dataclass(frozen=True)
class FenceTerms:
    latitude: float | None
    longitude: float | None
    radius_m: float
    polygon: tuple[Point, ...] = ()
    corridor: tuple[Point, ...] = ()
    corridor_width_m: float = 0.0
    report_every_s: int = 600  # how often the terminal sends a signed report
    max_fix_age_s: int = 1200  # older than this, the terminal has no usable fix

    @classmethod
    def of(cls, fence: Fence, risk_grade: str, mobile: bool, policy: FencePolicy = DEFAULT_POLICY) -> "FenceTerms":
        return cls(fence.latitude, fence.longitude, fence.radius_m, fence.polygon, fence.corridor,
                   fence.corridor_width_m, policy.report_interval_s(risk_grade, mobile),
                   policy.max_fix_age_s(risk_grade, mobile))

    @property
    def payment_fix_reuse_s(self) -> float:
        """How long a payment may attach the same signed fix while the terminal stands still:
        one report interval, and never so long that the fix reaches the host stale."""
        return float(min(self.report_every_s, self.max_fix_age_s / 2))

    @property
    def has_area(self) -> bool:
        return self.as_fence().has_area

    def as_fence(self, terminal_id: str = "") -> Fence:
        return Fence(terminal_id, "", self.latitude, self.longitude, self.radius_m, self.polygon, self.corridor,
                     self.corridor_width_m)

    def place(self, latitude: float, longitude: float) -> Placement:
        return place(self.as_fence(), latitude, longitude)

    def encode(self) -> bytes:
        return json.dumps({"lat": self.latitude, "lon": self.longitude, "r": self.radius_m,
                           "poly": [list(p) for p in self.polygon], "cor": [list(p) for p in self.corridor],
                           "w": self.corridor_width_m, "every": self.report_every_s, "age": self.max_fix_age_s},
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> "FenceTerms":
        try:
            d = json.loads(data.decode("utf-8"))
            terms = cls(_opt_float(d["lat"]), _opt_float(d["lon"]), float(d["r"]), _points(d.get("poly", [])),
                        _points(d.get("cor", [])), float(d.get("w", 0.0)), int(d["every"]), int(d["age"]))
            terms.as_fence()  # the geometry's own checks: ranges, polygon size
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise FenceTermsError(f"fence terms do not parse: {exc}") from None
        if terms.report_every_s <= 0 or terms.max_fix_age_s <= 0:
            raise FenceTermsError("fence terms: intervals must be positive")
        return terms


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def _points(items) -> tuple[Point, ...]:
    return tuple((float(lat), float(lon)) for lat, lon in items)
