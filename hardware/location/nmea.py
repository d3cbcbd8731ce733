"""GPS receivers speaking NMEA 0183 over a serial port.

Only GGA (position, fix quality, HDOP, altitude) and RMC (status, date, speed, course)
are read: together they make a dated fix with an accuracy. Parsing is pure; `NmeaGps`
feeds it lines from pyserial.
"""
from __future__ import annotations

import errno
import select
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from functools import reduce

import serial

from hardware.clock import Clock
from hardware.location.fix import Fix, LocationSource, LocationUnavailable, NoFix

# Accuracy = UERE x HDOP. 5 m is a typical 1-sigma user range error for a consumer
# receiver; the product is an estimate, not a guarantee.
UERE_M = 5.0
KNOTS_TO_MPS = 1852.0 / 3600.0
MAX_LINE_BYTES = 256  # NMEA caps sentences at 82 characters; longer means noise


class NmeaError(ValueError):
    """A sentence that is malformed or fails its checksum."""


@dataclass(frozen=True)
class Gga:
    talker: str
    utc: time | None
    latitude: float | None
    longitude: float | None
    quality: int
    satellites: int | None
    hdop: float | None
    altitude_m: float | None


@dataclass(frozen=True)
class Rmc:
    talker: str
    utc: time | None
    valid: bool
    latitude: float | None
    longitude: float | None
    speed_mps: float | None
    course_deg: float | None
    day: date | None


def checksum(body: str) -> str:
    """XOR of the characters between '$' and '*', as two upper-case hex digits."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def _float(field: str) -> float | None:
    return float(field) if field else None


def _utc(field: str) -> time | None:
    if not field:
        return None
    seconds, _, fraction = field[4:].partition(".")
    micros = int((fraction + "000000")[:6]) if fraction else 0
    return time(int(field[:2]), int(field[2:4]), int(seconds), micros, tzinfo=timezone.utc)


def _angle(value: str, hemisphere: str, degree_digits: int, limit: float) -> float | None:
    """ddmm.mmmm (or dddmm.mmmm) plus N/S/E/W -> signed decimal degrees."""
    if not value or not hemisphere:
        return None
    minutes = float(value[degree_digits:])
    degrees = int(value[:degree_digits]) + minutes / 60.0
    if minutes >= 60.0 or degrees > limit:
        raise NmeaError(f"angle {value} {hemisphere} is out of range")
    if hemisphere in ("S", "W"):
        return -degrees
    if hemisphere in ("N", "E"):
        return degrees
    raise NmeaError(f"hemisphere {hemisphere!r} is not N, S, E or W")


def _day(field: str) -> date | None:
    if not field:
        return None
    year = int(field[4:6])
    # Two-digit years: receivers of this century report 00-79 for 2000-2079.
    return date(2000 + year if year < 80 else 1900 + year, int(field[2:4]), int(field[:2]))


def parse_sentence(line: str) -> Gga | Rmc | None:
    """A GGA or RMC sentence; None for any other well-formed sentence."""
    line = line.strip()
    if not line.startswith("$"):
        raise NmeaError(f"not an NMEA sentence (no '$'): {line[:20]!r}")
    body, star, given = line[1:].partition("*")
    if not star:
        raise NmeaError(f"sentence has no checksum: {line[:20]!r}")
    if given.upper() != checksum(body):
        raise NmeaError(f"checksum mismatch: sentence says {given!r}, content gives {checksum(body)}")
    fields = body.split(",")
    address = fields[0]
    if len(address) != 5:
        return None  # proprietary ($P...) and other sentences
    talker, kind = address[:2], address[2:]
    try:
        if kind == "GGA" and len(fields) >= 10:
            return Gga(
                talker,
                _utc(fields[1]),
                _angle(fields[2], fields[3], 2, 90.0),
                _angle(fields[4], fields[5], 3, 180.0),
                int(fields[6] or 0),
                int(fields[7]) if fields[7] else None,
                _float(fields[8]),
                _float(fields[9]),
            )
        if kind == "RMC" and len(fields) >= 10:
            # NMEA 2.3 adds a mode field; "N" (not valid) overrides an "A" status.
            mode_ok = len(fields) < 13 or fields[12][:1] != "N"
            speed = _float(fields[7])
            return Rmc(
                talker,
                _utc(fields[1]),
                fields[2] == "A" and mode_ok,
                _angle(fields[3], fields[4], 2, 90.0),
                _angle(fields[5], fields[6], 3, 180.0),
                None if speed is None else speed * KNOTS_TO_MPS,
                _float(fields[8]),
                _day(fields[9]),
            )
    except ValueError as exc:  # int()/float()/date() on a garbled field
        raise NmeaError(f"{address}: malformed field ({exc})") from exc
    if kind in ("GGA", "RMC"):
        raise NmeaError(f"{address}: only {len(fields)} fields")
    return None


class FixAssembler:
    """GGA + RMC of the same second -> one Fix; either saying "no fix" -> no Fix.

    Both are needed: GGA alone has no date, RMC alone no HDOP. Receivers send both by
    default. `status` tells a waiting caller why there is no fix yet.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._gga: Gga | None = None
        self._rmc: Rmc | None = None
        self.sentences = 0
        self.bad_sentences = 0
        self.status = "no NMEA sentence received"

    def note_unreadable(self, reason: str) -> None:
        self.bad_sentences += 1
        if self.sentences == 0:
            self.status = f"only unreadable sentences ({reason}): wrong baud rate?"

    def feed_line(self, line: str) -> Fix | None:
        try:
            sentence = parse_sentence(line)
        except NmeaError as exc:
            self.note_unreadable(str(exc))
            return None
        self.sentences += 1
        if isinstance(sentence, Gga):
            self._gga = sentence
            if sentence.quality == 0:
                self.status = "receiver reports no fix (GGA quality 0): no satellite lock yet"
        elif isinstance(sentence, Rmc):
            self._rmc = sentence
            if not sentence.valid:
                self.status = "receiver reports no fix (RMC status V): no satellite lock yet"
        else:
            return None
        return self._merge()

    def _merge(self) -> Fix | None:
        gga, rmc = self._gga, self._rmc
        if gga is None or rmc is None or gga.utc is None or gga.utc != rmc.utc:
            return None  # wait for the other half of this second
        self._gga = self._rmc = None
        if gga.quality == 0 or not rmc.valid:
            return None
        if gga.latitude is None or gga.longitude is None or rmc.day is None:
            self.status = "receiver sent a fix without a position or a date"
            return None
        if gga.hdop is None or gga.hdop <= 0:
            self.status = "receiver sent a fix without HDOP, so its accuracy is unknown"
            return None
        self.status = f"no fix after the one of {gga.utc:%H:%M:%S} UTC"
        return Fix(
            latitude=gga.latitude,
            longitude=gga.longitude,
            accuracy_m=UERE_M * gga.hdop,
            source=self.source,
            time=datetime.combine(rmc.day, gga.utc),
            altitude_m=gga.altitude_m,
            speed_mps=rmc.speed_mps,
            heading_deg=None if rmc.course_deg is None else rmc.course_deg % 360.0,
        )


class NmeaGps(LocationSource):
    """A GPS/GNSS receiver on a serial port (USB receivers show up as /dev/ttyACM0 or ttyUSB0)."""

    def __init__(self, port: str, baudrate: int = 9600, *, name: str | None = None, clock: Clock | None = None) -> None:
        super().__init__(name or f"gps {port}", clock)
        self.port = port
        self._assembler = FixAssembler(self.name)
        self._buffer = bytearray()
        try:
            # timeout=0: reads return what is there; select does the waiting.
            self._serial = serial.Serial(port, baudrate, timeout=0)
        except serial.SerialException as exc:
            code = getattr(exc, "errno", None)
            if code in (errno.EACCES, errno.EPERM):
                hint = "add the user to the dialout group (sudo usermod -aG dialout $USER)"
            elif code == errno.ENOENT:
                hint = "is the receiver plugged in? `ls /dev/serial/by-id/` lists the ports"
            else:
                hint = str(exc)
            raise LocationUnavailable(f"GPS serial port {port} cannot be opened: {hint}") from exc

    def _poll(self, wait: float) -> Fix | None:
        fix = self._next_line_fix()
        if fix is not None:
            return fix
        try:
            readable, _, _ = select.select([self._serial.fileno()], [], [], wait)
            if readable:
                self._buffer += self._serial.read(self._serial.in_waiting or 1)
        except (serial.SerialException, OSError) as exc:
            raise LocationUnavailable(f"GPS serial port {self.port} failed: {exc} (unplugged?)") from exc
        return self._next_line_fix()

    def _next_line_fix(self) -> Fix | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._buffer.clear()
                    self._assembler.note_unreadable(f"a line over {MAX_LINE_BYTES} bytes")
                return None
            line = bytes(self._buffer[:end]).decode("ascii", errors="replace")
            del self._buffer[: end + 1]
            fix = self._assembler.feed_line(line)
            if fix is not None:
                return fix

    def _no_fix(self, timeout: float) -> NoFix:
        return NoFix(f"no fix from {self.name} within {timeout:g} s: {self._assembler.status}")

    def _close_device(self) -> None:
        self._serial.close()
