"""Location sources: NMEA through a real pty, gpsd through a real TCP server, and the
fixed and simulated sources under a hand-driven clock."""
from __future__ import annotations

import json
import math
import os
import socket
import threading
from datetime import datetime, timedelta, timezone
from functools import reduce

import pytest

from hardware.location import (
    Fix,
    FixedSite,
    GpsdClient,
    LocationCancelled,
    LocationUnavailable,
    ManualClock,
    NmeaGps,
    NoFix,
    SimulatedRoute,
    StaleFix,
)
from hardware.location.gpsd import fix_from_tpv
from hardware.location.nmea import UERE_M, FixAssembler, NmeaError, parse_sentence

UTC = timezone.utc


def nmea(body: str) -> str:
    """A sentence with its checksum, computed here independently of the product."""
    xor = reduce(lambda acc, byte: acc ^ byte, body.encode("ascii"), 0)
    return f"${body}*{xor:02X}\r\n"


# Shanghai, People's Square: 31.2304 N, 121.4737 E, 12:00:05 UTC on 1 May 2025.
GGA = nmea("GNGGA,120005.00,3113.824,N,12128.422,E,1,09,1.2,12.5,M,8.0,M,,")
RMC = nmea("GNRMC,120005.00,A,3113.824,N,12128.422,E,3.0,270.0,010525,,,A")
SHANGHAI = (31 + 13.824 / 60, 121 + 28.422 / 60)


# --- NMEA parsing -------------------------------------------------------------------


def test_textbook_sentences_parse_with_their_published_checksums():
    gga = parse_sentence("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47")
    assert (gga.quality, gga.satellites, gga.hdop, gga.altitude_m) == (1, 8, 0.9, 545.4)
    assert gga.latitude == pytest.approx(48 + 7.038 / 60) and gga.longitude == pytest.approx(11 + 31 / 60)
    rmc = parse_sentence("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A")
    assert rmc.valid and rmc.day.isoformat() == "1994-03-23" and rmc.course_deg == 84.4


def test_bad_or_missing_checksums_are_rejected():
    with pytest.raises(NmeaError, match="checksum mismatch"):
        parse_sentence(GGA.replace("3113.824", "3113.825"))
    with pytest.raises(NmeaError, match="no checksum"):
        parse_sentence(GGA.split("*")[0])
    with pytest.raises(NmeaError, match="malformed field"):
        parse_sentence(nmea("GPGGA,120005.00,31AB.824,N,12128.422,E,1,09,1.2,12.5,M,8.0,M,,"))
    assert parse_sentence(nmea("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")) is None


def test_gga_and_rmc_of_one_second_make_a_dated_fix_with_hdop_accuracy():
    assembler = FixAssembler("gps")
    assert assembler.feed_line(GGA) is None  # waits for the RMC of the same second
    fix = assembler.feed_line(RMC)
    assert (fix.latitude, fix.longitude) == pytest.approx(SHANGHAI)
    assert fix.accuracy_m == pytest.approx(UERE_M * 1.2) == pytest.approx(6.0)
    assert fix.time == datetime(2025, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert (fix.altitude_m, fix.heading_deg) == (12.5, 270.0)
    assert fix.speed_mps == pytest.approx(3.0 * 1852 / 3600)


def test_southern_and_western_hemispheres_are_negative():
    assembler = FixAssembler("gps")
    assembler.feed_line(nmea("GPRMC,235959.50,A,3351.000,S,15112.000,W,0.0,,311224,,"))
    fix = assembler.feed_line(nmea("GPGGA,235959.50,3351.000,S,15112.000,W,2,07,0.8,3.0,M,,M,,"))
    assert (fix.latitude, fix.longitude) == pytest.approx((-33.85, -151.2))
    assert fix.time == datetime(2024, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    "gga, rmc, status",
    [
        ("GPGGA,120005.00,,,,,0,00,99.9,,,,,,", "GPRMC,120005.00,V,,,,,,,010525,,,N", "status V"),
        ("GPGGA,120005.00,3113.824,N,12128.422,E,0,03,5.0,12.5,M,,M,,",
         "GPRMC,120005.00,A,3113.824,N,12128.422,E,0.0,,010525,,,A", "quality 0"),
        ("GPGGA,120005.00,3113.824,N,12128.422,E,1,05,1.0,12.5,M,,M,,",
         "GPRMC,120005.00,A,3113.824,N,12128.422,E,0.0,,010525,,,N", "status V"),  # mode N
    ],
)
def test_receiver_saying_no_fix_gives_no_fix_and_a_reason(gga, rmc, status):
    assembler = FixAssembler("gps")
    assert assembler.feed_line(nmea(gga)) is None and assembler.feed_line(nmea(rmc)) is None
    assert status in assembler.status


# --- NMEA over a real pty -----------------------------------------------------------


@pytest.fixture
def gps_pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_gps_on_a_serial_port_reads_a_fix_from_split_writes(gps_pty):
    master, path = gps_pty
    with NmeaGps(path, 9600) as gps:
        stream = nmea("GPGSV,1,1,01,05,40,083,46") + GGA + RMC
        os.write(master, stream[:30].encode())
        os.write(master, stream[30:].encode())
        fix = gps.read(timeout=5)
    assert fix.source == f"gps {path}" and (fix.latitude, fix.longitude) == pytest.approx(SHANGHAI)


def test_gps_without_lock_times_out_with_the_receivers_reason(gps_pty):
    master, path = gps_pty
    with NmeaGps(path) as gps:
        os.write(master, (nmea("GPGGA,120005.00,,,,,0,00,99.9,,,,,,") + nmea("GPRMC,120005.00,V,,,,,,,010525,,,N")).encode())
        with pytest.raises(NoFix, match="within 0.3 s: receiver reports no fix"):
            gps.read(timeout=0.3)


def test_gps_sending_noise_suggests_the_baud_rate(gps_pty):
    master, path = gps_pty
    with NmeaGps(path) as gps:
        os.write(master, GGA.replace("*", "*0").encode() + b"\xfe\xfe~~\r\n")
        with pytest.raises(NoFix, match="wrong baud rate"):
            gps.read(timeout=0.3)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(LocationCancelled):
            gps.read(cancel=cancel)


def test_gps_passes_over_fixes_older_than_max_age(gps_pty):
    master, path = gps_pty
    clock = ManualClock(start=datetime(2025, 5, 1, 12, 0, 35, tzinfo=UTC))
    later = "".join(nmea(s.split("*")[0][1:].replace("120005", "120030")) for s in (GGA, RMC))
    with NmeaGps(path, clock=clock) as gps:
        os.write(master, (GGA + RMC + later).encode())
        assert gps.read(timeout=5, max_age=10).time.second == 30  # the 12:00:05 fix was skipped
        os.write(master, (GGA + RMC).encode())
        with pytest.raises(StaleFix, match="30 s old") as stale:
            gps.read(timeout=0.3, max_age=10)
        assert stale.value.fix.time.second == 5 and isinstance(stale.value, NoFix)


def test_gps_port_that_does_not_exist_is_unavailable():
    with pytest.raises(LocationUnavailable, match="/dev/ttyNOGPS cannot be opened: is the receiver plugged in"):
        NmeaGps("/dev/ttyNOGPS")


# --- gpsd over real TCP -------------------------------------------------------------


class FakeGpsd:
    """A gpsd stand-in on a real socket: greets, waits for ?WATCH, sends its script."""

    def __init__(self, script: list, close_after: bool = False) -> None:
        self.script = script  # dicts are sent as JSON lines, bytes as they are
        self.close_after = close_after
        self.commands: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            conn.sendall(b'{"class":"VERSION","release":"3.25","proto_major":3,"proto_minor":15}\n')
            command = b""
            while not command.endswith(b"\n"):
                command += conn.recv(1024)
            self.commands.append(command)
            for item in self.script:
                conn.sendall(item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n")
            if not self.close_after:
                self._done.wait(10)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)
        self._server.close()


@pytest.fixture
def gpsd_server():
    servers = []

    def start(script, close_after=False):
        servers.append(FakeGpsd(script, close_after))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


DEVICES = {"class": "DEVICES", "devices": [{"class": "DEVICE", "path": "/dev/ttyACM0"}]}
TPV = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 3, "time": "2025-05-01T12:00:05.000Z",
       "lat": 31.2304, "lon": 121.4737, "altMSL": 12.5, "eph": 7.5, "epx": 4.0, "epy": 6.0,
       "speed": 0.4, "track": 359.9}


def test_gpsd_watch_is_sent_and_a_3d_tpv_becomes_a_fix(gpsd_server):
    line = json.dumps({"class": "TPV", "mode": 1, "time": "2025-05-01T12:00:04.000Z"}).encode() + b"\n"
    server = gpsd_server([DEVICES, {"class": "WATCH", "enable": True, "json": True}, line[:10], line[10:], TPV])
    with GpsdClient("127.0.0.1", server.port) as gpsd:
        fix = gpsd.read(timeout=5)
        assert gpsd.version == "3.25" and gpsd.devices == ["/dev/ttyACM0"]
    [command] = server.commands
    assert command.startswith(b"?WATCH=") and command.endswith(b"\n")
    assert json.loads(command[len("?WATCH="):]) == {"enable": True, "json": True}
    assert (fix.latitude, fix.longitude, fix.accuracy_m, fix.altitude_m) == (31.2304, 121.4737, 7.5, 12.5)
    assert fix.time == datetime(2025, 5, 1, 12, 0, 5, tzinfo=UTC) and fix.heading_deg == 359.9
    assert fix.source == f"gpsd 127.0.0.1:{server.port}"


def test_gpsd_in_mode_1_gives_no_fix_with_the_mode(gpsd_server):
    server = gpsd_server([DEVICES, {"class": "TPV", "mode": 1}])
    with GpsdClient(port=server.port) as gpsd, pytest.raises(NoFix, match=r"gpsd reports no fix \(mode 1\)"):
        gpsd.read(timeout=0.3)


def test_gpsd_without_a_device_says_so(gpsd_server):
    server = gpsd_server([{"class": "DEVICES", "devices": []}])
    with GpsdClient(port=server.port) as gpsd, pytest.raises(NoFix, match="gpsd has no GPS device attached"):
        gpsd.read(timeout=0.3)


def test_gpsd_closing_the_connection_makes_the_source_unavailable(gpsd_server):
    server = gpsd_server([DEVICES], close_after=True)
    with GpsdClient(port=server.port) as gpsd, pytest.raises(LocationUnavailable, match="closed the connection"):
        gpsd.read(timeout=5)


def test_gpsd_not_running_is_unavailable():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # now nobody listens there
    with pytest.raises(LocationUnavailable, match=f"gpsd is not listening on 127.0.0.1:{port}"):
        GpsdClient(port=port)


def test_tpv_accuracy_falls_back_from_eph_to_epx_and_epy():
    received = datetime(2025, 5, 1, tzinfo=UTC)
    tpv = {k: v for k, v in TPV.items() if k != "eph"}
    assert fix_from_tpv(tpv, "gpsd", received).accuracy_m == pytest.approx(math.hypot(4.0, 6.0))
    two_d = fix_from_tpv({"mode": 2, "lat": 1.0, "lon": 2.0, "eph": 20}, "gpsd", received)
    assert (two_d.time, two_d.altitude_m, two_d.accuracy_m) == (received, None, 20.0)
    assert fix_from_tpv({"mode": 3, "lat": None, "lon": 2.0}, "gpsd", received) is None


# --- fixed site, simulated route, Fix ------------------------------------------------


def test_fixed_site_is_dated_by_its_clock_and_checks_its_configuration():
    clock = ManualClock()
    site = FixedSite(31.2304, 121.4737, 15.0, cell_ids=["460-00-6203-21841"], clock=clock)
    clock.advance(60)
    fix = site.read()
    assert (fix.latitude, fix.longitude, fix.accuracy_m, fix.cell_ids) == (31.2304, 121.4737, 15.0, ("460-00-6203-21841",))
    assert fix.time == clock.now() and fix.source == "fixed site"
    with pytest.raises(ValueError, match="latitude: must be a number in"):
        FixedSite(91.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="accuracy_m"):
        FixedSite(0.0, 0.0, 0.0)


METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # along a meridian of the mean sphere


def test_route_walks_away_and_comes_back():
    clock = ManualClock()
    # 0.01 degree due north of the start and back, at 10 m/s.
    route = SimulatedRoute([(31.0, 121.0), (31.01, 121.0)], 10.0, round_trip=True, clock=clock)
    leg_s = 0.01 * METRES_PER_DEGREE / 10.0
    assert route.duration_s == pytest.approx(2 * leg_s)
    start = route.read()
    assert (start.latitude, start.longitude, start.heading_deg) == (31.0, 121.0, pytest.approx(0.0))
    clock.advance(leg_s / 2)
    assert route.read().latitude == pytest.approx(31.005)
    clock.advance(leg_s)
    back = route.read()
    assert back.latitude == pytest.approx(31.005) and back.heading_deg == pytest.approx(180.0)
    clock.advance(leg_s)
    home = route.read()
    assert (home.latitude, home.longitude, home.speed_mps, home.heading_deg) == (31.0, 121.0, 0.0, None)
    assert home.time == clock.now()


def test_looping_route_starts_over_and_restart_goes_home():
    clock = ManualClock()
    route = SimulatedRoute([(0.0, 0.0), (0.0, 0.001)], 1.0, loop=True, clock=clock)
    clock.advance(route.duration_s * 1.25)
    assert route.read().longitude == pytest.approx(0.00025)
    route.restart()
    assert route.read().longitude == 0.0
    with pytest.raises(ValueError, match="speed_mps"):
        SimulatedRoute([(0.0, 0.0)], 0.0)
    with pytest.raises(ValueError, match="longitude"):
        SimulatedRoute([(0.0, 181.0)], 1.0)


def test_fix_is_immutable_and_insists_on_utc():
    fix = Fix(31.0, 121.0, 5.0, "test", datetime(2025, 5, 1, tzinfo=UTC))
    with pytest.raises(AttributeError):
        fix.latitude = 0.0
    with pytest.raises(ValueError, match="time: must be in UTC"):
        Fix(31.0, 121.0, 5.0, "test", datetime(2025, 5, 1, 20, tzinfo=timezone(timedelta(hours=8))))
    with pytest.raises(ValueError, match="time: must be in UTC"):
        Fix(31.0, 121.0, 5.0, "test", datetime(2025, 5, 1))
    assert fix.age(datetime(2025, 5, 1, 0, 1, tzinfo=UTC)) == 60.0
