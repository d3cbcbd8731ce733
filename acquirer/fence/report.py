"""The signed location report: the wire contract between the terminal's secure world
and the host (field 59, tag DF03, on every transaction and in periodic reports).

    "LOC1" | device id length (1) | device id (ASCII, 1-64) | terminal id (8, ASCII) |
    counter (8) | fix time, ms since the epoch, UTC (8) |
    latitude (4, signed, 1e-7 degree) | longitude (4, signed, 1e-7 degree) |
    accuracy (4, centimetres) | source (1) | cell count (1, 0-8) |
    each cell: length (1, 1-32) | cell id (ASCII, "MCC-MNC-LAC-CID") |
    signature (64, SM2 r||s with SM3 over every byte before it, default signer id)

Integers are unsigned big-endian unless marked signed. The counter is the secure
world's own persisted counter: +1 for every report it signs, never reused, below 2**63.
The TEE signs a new report (next counter, same fix if no newer one) for every request
it attaches one to, so the host can refuse any counter it has already seen.

Built by the TEE (`build`), checked by the host (`verify`) against the device key bound
at activation; the stateful checks (replay, speed, the fence) are `FenceMonitor`'s.
"""
from __future__ import annotations

import datetime as dt
import enum
import math
import struct
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from keys.errors import InvalidKey, InvalidSignature
from keys.sm2 import SM2PublicKey

MAGIC = b"LOC1"
SIGNATURE_LEN = 64
MAX_CELLS = 8
MAX_COUNTER = 2**63 - 1  # SQLite integers are signed 64-bit
_DEGREE_UNIT = 10_000_000  # 1e-7 degree is about 1 cm: finer than any fix
_FIXED = struct.Struct(">QQiiIBB")  # counter, fix time, lat, lon, accuracy, source, cell count


class FixSource(enum.IntEnum):
    GNSS = 1  # GPS/BeiDou receiver
    CELL = 2  # cell-tower positioning
    WIFI = 3
    FIXED = 4  # a site surveyed at deployment (a PC terminal without a receiver)
    SIMULATED = 5  # demo and tests only


class LocationReportError(ValueError):
    """A report the host refuses; `reason` is a short code for alerts and risk rules."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LocationReport:
    device_id: str
    terminal_id: str
    counter: int
    fix_time_ms: int
    latitude: float
    longitude: float
    accuracy_m: float
    source: FixSource
    cell_ids: tuple[str, ...] = ()

    @property
    def fix_time(self) -> float:
        return self.fix_time_ms / 1000.0

    def age_s(self, now: float) -> float:
        return now - self.fix_time_ms / 1000.0  # `fix_time`, not read through the property: every sale asks


def _seconds(when: float | dt.datetime) -> float:
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise LocationReportError("malformed", "fix time must carry a time zone")
        return when.timestamp()
    return float(when)


def encode_body(device_id: str, terminal_id: str, counter: int, fix_time: float | dt.datetime, latitude: float,
                longitude: float, accuracy_m: float, source: FixSource | int, cell_ids: Iterable[str] = ()) -> bytes:
    """The signed part of a report; refuses values the host would refuse anyway."""
    did, tid = device_id.encode("ascii"), terminal_id.encode("ascii")
    cells = [c.encode("ascii") for c in cell_ids]
    if not 1 <= len(did) <= 64:
        raise LocationReportError("malformed", "device id must be 1-64 ASCII characters")
    if len(tid) != 8:
        raise LocationReportError("malformed", "terminal id must be 8 characters")
    if not 1 <= counter <= MAX_COUNTER:
        raise LocationReportError("malformed", "counter must be 1 to 2**63-1")
    for name, value, limit in (("latitude", latitude, 90.0), ("longitude", longitude, 180.0)):
        if not (math.isfinite(value) and -limit <= value <= limit):
            raise LocationReportError("malformed", f"{name} must be within +/-{limit:g} degrees")
    if not (math.isfinite(accuracy_m) and 0 < accuracy_m < 40_000_000):
        raise LocationReportError("malformed", "accuracy must be a positive number of metres")
    if len(cells) > MAX_CELLS or any(not 1 <= len(c) <= 32 for c in cells):
        raise LocationReportError("malformed", f"at most {MAX_CELLS} cell ids of 1-32 characters")
    ms = int(round(_seconds(fix_time) * 1000))
    if ms < 0:
        raise LocationReportError("malformed", "fix time before the epoch")
    body = MAGIC + bytes([len(did)]) + did + tid + _FIXED.pack(
        counter, ms, round(latitude * _DEGREE_UNIT), round(longitude * _DEGREE_UNIT),
        max(1, round(accuracy_m * 100)), int(FixSource(source)), len(cells))
    return body + b"".join(bytes([len(c)]) + c for c in cells)


def build(sign: Callable[[bytes], bytes], **fields) -> bytes:
    """A signed report; `sign` is the device key's sign function inside the secure world.

    Fields: device_id, terminal_id, counter, fix_time (epoch seconds or an aware
    datetime), latitude, longitude, accuracy_m, source, cell_ids (optional).
    """
    body = encode_body(**fields)
    signature = sign(body)
    if len(signature) != SIGNATURE_LEN:
        raise LocationReportError("malformed", f"signature must be {SIGNATURE_LEN} bytes (raw r||s)")
    return body + signature


def parse(data: bytes) -> tuple[LocationReport, bytes, bytes]:
    """(report, signed bytes, signature); checks the layout only."""
    if len(data) < 5 or data[:4] != MAGIC:
        raise LocationReportError("malformed", "not a location report (bad magic)")
    n = data[4]
    p = 5 + n
    if not 1 <= n <= 64 or len(data) < p + 8 + _FIXED.size + SIGNATURE_LEN:
        raise LocationReportError("malformed", "location report truncated")
    try:
        device_id = data[5:p].decode("ascii")
        terminal_id = data[p:p + 8].decode("ascii")
    except UnicodeDecodeError:
        raise LocationReportError("malformed", "device or terminal id is not ASCII") from None
    p += 8
    counter, ms, lat, lon, acc_cm, source, count = _FIXED.unpack_from(data, p)
    p += _FIXED.size
    cells = []
    for _ in range(count):
        if p >= len(data):
            raise LocationReportError("malformed", "location report truncated in its cell ids")
        size = data[p]
        cell = data[p + 1:p + 1 + size]
        if size == 0 or len(cell) != size:
            raise LocationReportError("malformed", "location report truncated in its cell ids")
        try:
            cells.append(cell.decode("ascii"))
        except UnicodeDecodeError:
            raise LocationReportError("malformed", "cell id is not ASCII") from None
        p += 1 + size
    if len(data) != p + SIGNATURE_LEN:
        raise LocationReportError("malformed", f"location report is {len(data)} bytes, expected {p + SIGNATURE_LEN}")
    try:
        src = FixSource(source)
    except ValueError:
        raise LocationReportError("malformed", f"unknown fix source {source}") from None
    if count > MAX_CELLS or not 1 <= counter <= MAX_COUNTER or abs(lat) > 90 * _DEGREE_UNIT \
            or abs(lon) > 180 * _DEGREE_UNIT or acc_cm == 0:
        raise LocationReportError("malformed", "location report field out of range")
    report = LocationReport(device_id, terminal_id, counter, ms, lat / _DEGREE_UNIT, lon / _DEGREE_UNIT,
                            acc_cm / 100.0, src, tuple(cells))
    return report, data[:p], data[p:]


def verify(data: bytes, device_public_key: SM2PublicKey | bytes, *, terminal_id: str, device_id: str,
           now: float | None = None, max_age_s: float | None = None, max_future_s: float = 30.0) -> LocationReport:
    """The report, if it names this terminal and device and is signed by this device key.

    With `max_age_s` the fix must also be fresh (and not dated ahead of `now` by more
    than `max_future_s`: a clock that far ahead is a forged or broken one).
    """
    report, body, signature = parse(data)
    if report.terminal_id != terminal_id:
        raise LocationReportError("foreign", f"report is from terminal {report.terminal_id}, not {terminal_id}")
    if report.device_id != device_id:
        raise LocationReportError("foreign", f"report is from device {report.device_id}, not {device_id}")
    try:
        key = device_public_key if isinstance(device_public_key, SM2PublicKey) else \
            SM2PublicKey.from_bytes(device_public_key)
        key.verify(signature, body)
    except (InvalidSignature, InvalidKey):
        raise LocationReportError("forged", "report signature does not verify under the device key") from None
    if max_age_s is not None:
        now = time.time() if now is None else now
        age = report.age_s(now)
        if age > max_age_s:
            raise LocationReportError("stale", f"fix is {age:.0f} s old (limit {max_age_s:.0f} s)")
        if age < -max_future_s:
            raise LocationReportError("future", f"fix is dated {-age:.0f} s in the future")
    return report
