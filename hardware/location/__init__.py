"""Location sources: GPS over serial NMEA, gpsd, a fixed site, a simulated route.

Every source yields `Fix` values through `LocationSource.read(timeout, cancel,
max_age)` and raises the `LocationError` family. Distances and fences are not here:
the fence computes geodesics itself.
"""
from hardware.clock import Clock, ManualClock, SystemClock
from hardware.location.fix import (
    Fix,
    LocationCancelled,
    LocationError,
    LocationSource,
    LocationUnavailable,
    NoFix,
    StaleFix,
)
from hardware.location.fixed import FixedSite
from hardware.location.gpsd import GpsdClient
from hardware.location.nmea import NmeaGps
from hardware.location.route import SimulatedRoute

__all__ = [
    "Clock",
    "Fix",
    "FixedSite",
    "GpsdClient",
    "LocationCancelled",
    "LocationError",
    "LocationSource",
    "LocationUnavailable",
    "ManualClock",
    "NmeaGps",
    "NoFix",
    "SimulatedRoute",
    "StaleFix",
    "SystemClock",
]
