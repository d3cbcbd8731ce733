"""Location sources named by one string, for command lines, settings and the TEE's argv.

    fixed:LAT,LON[,ACCURACY_M]     a surveyed site (a counter terminal without a receiver)
    nmea:PORT[@BAUD]               a GNSS receiver on a serial port (default 9600 baud)
    gpsd[:HOST[:PORT]]             a gpsd daemon (default 127.0.0.1:2947)
    file:PATH                      the simulated receiver (demo and tests only)
"""
from __future__ import annotations

from hardware.location.fix import LocationSource

KINDS = ("fixed", "nmea", "gpsd", "file")


class LocationSpecError(ValueError):
    pass


def open_location(spec: str) -> LocationSource:
    kind, _, rest = spec.partition(":")
    try:
        if kind == "fixed":
            parts = [float(p) for p in rest.split(",")]
            if len(parts) not in (2, 3):
                raise LocationSpecError("fixed:LAT,LON[,ACCURACY_M]")
            from hardware.location.fixed import FixedSite
            return FixedSite(parts[0], parts[1], parts[2] if len(parts) == 3 else 10.0, name=f"fixed site {rest}")
        if kind == "nmea":
            port, _, baud = rest.partition("@")
            from hardware.location.nmea import NmeaGps
            return NmeaGps(port, int(baud) if baud else 9600)
        if kind == "gpsd":
            host, _, port = rest.partition(":")
            from hardware.location.gpsd import DEFAULT_PORT, GpsdClient
            return GpsdClient(host or "127.0.0.1", int(port) if port else DEFAULT_PORT)
        if kind == "file":
            if not rest:
                raise LocationSpecError("file:PATH")
            from hardware.location.simfile import SimulatedReceiver
            return SimulatedReceiver(rest)
    except ValueError as exc:
        if isinstance(exc, LocationSpecError):
            raise LocationSpecError(f"location source {spec!r}: expected {exc}") from None
        raise LocationSpecError(f"location source {spec!r}: {exc}") from None
    raise LocationSpecError(f"location source {spec!r}: kind must be one of {', '.join(KINDS)}")


def anchored(spec: str) -> str:
    """The same source, its file path made absolute: for a process that runs in another
    directory (the TEE runs in its state directory)."""
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        import os

        return f"file:{os.path.abspath(rest)}"
    return spec


def fix_source_kind(source: LocationSource) -> str:
    """gnss, fixed or simulated: what the signed report says the fix came from."""
    from hardware.location.fixed import FixedSite
    from hardware.location.route import SimulatedRoute
    from hardware.location.simfile import SimulatedReceiver

    if isinstance(source, FixedSite):
        return "fixed"
    if isinstance(source, (SimulatedReceiver, SimulatedRoute)):
        return "simulated"
    return "gnss"
