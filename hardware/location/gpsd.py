"""Positions from gpsd over its JSON protocol (TCP, port 2947 by default).

The client asks for JSON reports with ?WATCH and turns TPV (time-position-velocity)
reports with mode 2 (2D) or 3 (3D) into fixes. Reference: gpsd_json(5).
"""
from __future__ import annotations

import json
import math
import select
import socket
from datetime import datetime, timezone

from hardware.clock import Clock
from hardware.location.fix import Fix, LocationSource, LocationUnavailable, NoFix

DEFAULT_PORT = 2947
WATCH_COMMAND = b'?WATCH={"enable":true,"json":true}\n'
# gpsd gave no error estimate at all: take a coarse fix rather than none.
NO_ESTIMATE_ACCURACY_M = 100.0
MAX_LINE_BYTES = 1 << 16  # gpsd's longest reports (SKY with many satellites) fit easily


def accuracy_of(tpv: dict) -> float:
    """eph if gpsd gives it; else the radial combination of epx and epy (metres)."""
    eph = tpv.get("eph")
    if isinstance(eph, (int, float)) and eph > 0:
        return float(eph)
    epx, epy = tpv.get("epx"), tpv.get("epy")
    if isinstance(epx, (int, float)) and isinstance(epy, (int, float)) and (epx > 0 or epy > 0):
        return math.hypot(epx, epy)
    return NO_ESTIMATE_ACCURACY_M


def fix_from_tpv(tpv: dict, source: str, received: datetime) -> Fix | None:
    """The Fix in one TPV report, or None when gpsd reports no 2D/3D fix."""
    mode = tpv.get("mode", 0)
    lat, lon = tpv.get("lat"), tpv.get("lon")
    if not isinstance(mode, int) or mode < 2 or lat is None or lon is None:
        return None
    stamp = tpv.get("time")
    # A TPV without time (rare, early in a fix) is dated when it arrived.
    when = datetime.fromisoformat(stamp).astimezone(timezone.utc) if stamp else received
    track, speed = tpv.get("track"), tpv.get("speed")
    altitude = tpv.get("altMSL", tpv.get("alt"))
    return Fix(
        latitude=float(lat),
        longitude=float(lon),
        accuracy_m=accuracy_of(tpv),
        source=source,
        time=when,
        # A 2D fix carries no altitude worth the name.
        altitude_m=float(altitude) if altitude is not None and mode >= 3 else None,
        speed_mps=None if speed is None else float(speed),
        heading_deg=None if track is None else float(track) % 360.0,
    )


class GpsdClient(LocationSource):
    """One TCP connection to gpsd; fixes are read as gpsd reports them (about 1 Hz)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        connect_timeout: float = 2.0,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name or f"gpsd {host}:{port}", clock)
        self.address = f"{host}:{port}"
        self.status = "gpsd has sent no position report yet"
        self.version: str | None = None
        self.devices: list[str] | None = None
        self._buffer = bytearray()
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except ConnectionRefusedError as exc:
            raise LocationUnavailable(
                f"gpsd is not listening on {self.address}: start it "
                "(sudo systemctl start gpsd.socket) or check the host and port"
            ) from exc
        except OSError as exc:
            raise LocationUnavailable(f"cannot reach gpsd at {self.address}: {exc}") from exc
        try:
            self._sock.sendall(WATCH_COMMAND)
        except OSError as exc:
            self._sock.close()
            raise LocationUnavailable(f"gpsd at {self.address} dropped the connection: {exc}") from exc

    def _poll(self, wait: float) -> Fix | None:
        fix = self._next_report_fix()
        if fix is not None:
            return fix
        try:
            readable, _, _ = select.select([self._sock], [], [], wait)
            if not readable:
                return None
            data = self._sock.recv(65536)
        except OSError as exc:
            raise LocationUnavailable(f"gpsd at {self.address} failed: {exc}") from exc
        if not data:
            raise LocationUnavailable(f"gpsd at {self.address} closed the connection")
        self._buffer += data
        return self._next_report_fix()

    def _next_report_fix(self) -> Fix | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._buffer.clear()  # not gpsd, or a broken stream: resynchronise
                return None
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if line:
                fix = self._handle(line)
                if fix is not None:
                    return fix

    def _handle(self, line: bytes) -> Fix | None:
        try:
            report = json.loads(line)
        except ValueError:
            return None  # a report cut by a gpsd restart; the next one is whole
        if not isinstance(report, dict):
            return None
        kind = report.get("class")
        if kind == "VERSION":
            self.version = report.get("release")
        elif kind == "DEVICES":
            self.devices = [d.get("path", "?") for d in report.get("devices", []) if isinstance(d, dict)]
            if not self.devices:
                self.status = "gpsd has no GPS device attached"
        elif kind == "ERROR":
            self.status = f"gpsd error: {report.get('message', '?')}"
        elif kind == "TPV":
            try:
                fix = fix_from_tpv(report, self.name, self._clock.now())
            except (TypeError, ValueError) as exc:
                self.status = f"gpsd sent a TPV report that cannot be used ({exc})"
                return None
            if fix is None:
                self.status = f"gpsd reports no fix (mode {report.get('mode', 0)})"
            return fix
        return None

    def _no_fix(self, timeout: float) -> NoFix:
        return NoFix(f"no fix from {self.name} within {timeout:g} s: {self.status}")

    def _close_device(self) -> None:
        try:
            self._sock.sendall(b'?WATCH={"enable":false}\n')
        except OSError:
            pass  # gpsd already gone; closing is all that is left
        self._sock.close()
