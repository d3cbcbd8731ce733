"""The signed location report, the wire contract the TEE builds and the host verifies:
layout pinned by a known answer, real SM2 signatures, every refusal with its reason."""
from __future__ import annotations

import datetime as dt

import pytest

from acquirer.fence.report import (FixSource, LocationReportError, build, encode_body, parse, verify)
from keys.sm2 import SM2PrivateKey

FIELDS = dict(device_id="DEV-5F3A9C", terminal_id="00000001", counter=42, fix_time=1749952800.5,
              latitude=31.2304, longitude=121.4737, accuracy_m=8.5, source=FixSource.GNSS,
              cell_ids=["460-00-6212-13011"])
# docs/fence.md shows this same body: the terminal's implementation can test against it
KNOWN_BODY = ("4C4F43310A4445562D3546334139433030303030303031000000000000002A000001977150A6F4129D618048676A68"
              "000003520101113436302D30302D363231322D3133303131")


@pytest.fixture(scope="module")
def key():
    return SM2PrivateKey.generate()


def signed(key, **overrides) -> bytes:
    return build(key.sign, **{**FIELDS, **overrides})


def test_the_signed_body_has_the_documented_layout():
    assert encode_body(**FIELDS).hex().upper() == KNOWN_BODY


def test_a_report_round_trips_under_the_device_key(key):
    report = verify(signed(key), key.public_key.to_bytes(), terminal_id="00000001", device_id="DEV-5F3A9C")
    assert (report.counter, report.latitude, report.longitude, report.accuracy_m, report.source, report.cell_ids) == \
        (42, 31.2304, 121.4737, 8.5, FixSource.GNSS, ("460-00-6212-13011",))
    assert report.fix_time == 1749952800.5


def test_fix_time_may_be_an_aware_datetime(key):
    when = dt.datetime(2025, 6, 15, 2, 0, tzinfo=dt.timezone.utc)
    report, _, _ = parse(signed(key, fix_time=when))
    assert report.fix_time == when.timestamp()
    with pytest.raises(LocationReportError, match="time zone"):
        signed(key, fix_time=when.replace(tzinfo=None))


@pytest.mark.parametrize("offset", [0, 30, 60, -1])  # magic, terminal id, latitude, signature
def test_any_changed_byte_is_refused_as_forged_or_malformed(key, offset):
    data = bytearray(signed(key))
    data[offset] ^= 0x01
    with pytest.raises(LocationReportError) as exc:
        verify(bytes(data), key.public_key, terminal_id="00000001", device_id="DEV-5F3A9C")
    assert exc.value.reason in ("forged", "malformed", "foreign")


def test_a_report_signed_by_another_device_key_is_forged(key):
    other = SM2PrivateKey.generate()
    with pytest.raises(LocationReportError, match="does not verify") as exc:
        verify(signed(other), key.public_key, terminal_id="00000001", device_id="DEV-5F3A9C")
    assert exc.value.reason == "forged"


def test_another_terminals_report_is_refused_by_name(key):
    with pytest.raises(LocationReportError, match="from terminal 00000002, not 00000001") as exc:
        verify(signed(key, terminal_id="00000002"), key.public_key, terminal_id="00000001", device_id="DEV-5F3A9C")
    assert exc.value.reason == "foreign"
    with pytest.raises(LocationReportError, match="from device DEV-OTHER"):
        verify(signed(key, device_id="DEV-OTHER"), key.public_key, terminal_id="00000001", device_id="DEV-5F3A9C")


def test_freshness_is_checked_when_asked(key):
    data = signed(key)
    kw = dict(terminal_id="00000001", device_id="DEV-5F3A9C", max_age_s=600)
    assert verify(data, key.public_key, now=FIELDS["fix_time"] + 599, **kw).counter == 42
    with pytest.raises(LocationReportError, match="601 s old") as exc:
        verify(data, key.public_key, now=FIELDS["fix_time"] + 601, **kw)
    assert exc.value.reason == "stale"
    with pytest.raises(LocationReportError, match="in the future") as exc:
        verify(data, key.public_key, now=FIELDS["fix_time"] - 120, **kw)
    assert exc.value.reason == "future"


@pytest.mark.parametrize("bad, message", [
    (dict(latitude=91.0), "latitude"), (dict(longitude=float("nan")), "longitude"),
    (dict(counter=0), "counter"), (dict(terminal_id="T1"), "terminal id"), (dict(accuracy_m=0), "accuracy"),
    (dict(cell_ids=["x"] * 9), "cell ids"), (dict(device_id=""), "device id"),
])
def test_build_refuses_what_the_host_would_refuse(key, bad, message):
    with pytest.raises(LocationReportError, match=message):
        signed(key, **bad)


def test_truncated_or_padded_reports_are_malformed(key):
    data = signed(key)
    for broken in (data[:-1], data + b"\x00", data[:20], b"ATT1" + data[4:]):
        with pytest.raises(LocationReportError) as exc:
            parse(broken)
        assert exc.value.reason == "malformed"
