"""The location fence end to end: a real TEE reading a simulated receiver (a position file),
signing every fix; a real host on loopback judging each report; a card tapped through
pcscd and the virtual reader.

The terminal is carried out of its fence and back. Time is simulated: each position is
dated by the receiver, and the host's fence clock runs on the same offset, so a walk of
an hour takes a second and nobody moves faster than a bus.
"""
from __future__ import annotations

import time

import pytest
from geographiclib.geodesic import Geodesic

from acquirer.protocol import ResponseCode
from hardware.location.simfile import write_position
from terminal.app import TerminalApp, TerminalConfig
from terminal.journal import Journal

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import MERCHANT, SITE, TERMINAL

SMALL = 1_200


def moved(point, metres: float, bearing: float = 90.0) -> tuple[float, float]:
    g = Geodesic.WGS84.Direct(point[0], point[1], bearing, metres)
    return g["lat2"], g["lon2"]


@pytest.fixture
def position(tmp_path):
    path = tmp_path / "position.json"
    write_position(path, *SITE)
    return path


@pytest.fixture
def lane_location(position) -> str:  # overrides tee_fixtures': this lane's TEE reads the file
    return f"file:{position}"


class Walk:
    """Moves the receiver and the host's fence clock together."""

    def __init__(self, lane, position):
        self.position = position
        self.shift = 0.0
        lane.host.service.fences.clock = lambda: time.time() + self.shift

    def to(self, point, after_s: float) -> None:
        self.shift += after_s
        write_position(self.position, *point, accuracy_m=10.0, at=time.time() + self.shift)


def terminal_of(lane, position) -> TerminalApp:
    config = TerminalConfig(TERMINAL, MERCHANT, port=lane.host.port, state_dir=lane.state,
                            location=f"file:{position}")
    app = TerminalApp(config, lane.keys, lane.session, Journal(lane.state / "journal.db"))
    lane.session.locate = app.signed_fix
    return app


def card_sale(lane, app: TerminalApp):
    lane.tap()
    outcome = app.tap(SMALL, timeout_s=10)
    return app.complete_card_sale(SMALL, outcome)


def test_carried_out_of_the_fence_the_terminal_refuses_alerts_the_host_and_sells_again_back_home(card_lane, position):
    lane = card_lane
    app = terminal_of(lane, position)
    walk = Walk(lane, position)
    terms = lane.session.fence_terms
    assert terms is not None and terms.radius_m == 500.0  # told at sign-on
    assert (terms.latitude, terms.longitude) == SITE

    gate = app.location_gate()
    assert gate.ok and "inside the fence" in gate.message
    assert card_sale(lane, app).approved

    walk.to(moved(SITE, 4_000), after_s=900)  # 4 km in 15 minutes: a bus ride
    gate = app.location_gate()
    assert not gate.ok
    assert "Outside the location fence since" in gate.message and "4.0 km from the registered site" in gate.message
    assert "acquirer is alerted" in gate.next_step
    assert app.status().location.startswith("OUTSIDE the fence")
    assert lane.session.pending_alerts() == 0  # the queued report reached the host at once
    alerts = lane.host.service.fence_store.alerts(terminal_id=TERMINAL)
    assert [a.kind for a in alerts] == ["outside"] and 3_400 < alerts[0].offset_m < 3_600

    # a cashier who gets past the terminal's own check meets the host's: declined, nothing authorised
    before = len(lane.host.service.ledger.journal())
    sale = card_sale(lane, app)
    assert sale.code == ResponseCode.GEOFENCE_VIOLATION.value and "outside its fence" in sale.message
    assert [e.event.value for e in lane.host.service.ledger.journal()[before:]] in ([], ["DECLINED"])
    assert len(lane.host.service.fence_store.alerts(terminal_id=TERMINAL)) == 2

    walk.to(SITE, after_s=900)
    gate = app.location_gate()
    assert gate.ok, gate.message
    assert card_sale(lane, app).approved
    assert lane.session._get("fence_outside_since") == ""
    review = lane.host.service.fence_store.for_review(0.0, 2)
    assert [r.merchant_id for r in review] == [MERCHANT]  # `acquirer alerts` lists the merchant
    # the cashier's alerts screen: the refusal at the terminal and the host's decline
    kinds = [(a.kind, a.text) for a in app.alerts()]
    assert any(k == "fence" and "Outside the location fence" in t for k, t in kinds)
    assert any(k == "fence" and "G1" in t and "outside its fence" in t for k, t in kinds)


def test_without_a_fix_the_terminal_refuses_and_says_why(card_lane, position):
    app = terminal_of(card_lane, position)
    write_position(position, None)  # the receiver lost its fix
    gate = app.location_gate()
    assert not gate.ok and "No current location fix" in gate.message and "receiver has no fix" in gate.message
    assert "GPS antenna" in gate.next_step


def test_periodic_reports_follow_the_host_interval_and_answer_the_verdict(card_lane, position):
    lane = card_lane
    app = terminal_of(lane, position)
    walk = Walk(lane, position)
    first = app.report_if_due()
    assert first is not None and first.approved and first.text == "inside the fence"
    assert app.report_if_due() is None  # not due again for `terms.report_every_s`
    walk.to(moved(SITE, 2_000, bearing=0.0), after_s=600)
    out = app.report_location()
    assert out.code == ResponseCode.GEOFENCE_VIOLATION.value and "outside its fence" in out.text


def test_spoofed_reports_are_refused_by_the_host(card_lane, position):
    """Replay, forgery, another terminal's report, another device's report, an impossible jump."""
    from terminal.secure.keystore import SecureKeys
    from terminal.secure.sealed import SealedStore
    from hardware.location import FixedSite

    lane = card_lane
    app = terminal_of(lane, position)
    walk = Walk(lane, position)
    old = lane.keys.location_report(TERMINAL)
    assert lane.session.report_location(lane.keys.location_report(TERMINAL)).approved
    fence = lane.host.service.fence_store

    def refused(report: bytes) -> str:
        out = lane.session.report_location(report)
        assert out.code == ResponseCode.GEOFENCE_VIOLATION.value, out
        return max(fence.alerts(terminal_id=TERMINAL), key=lambda a: a.seq).kind

    assert refused(old) == "replay"
    forged = bytearray(lane.keys.location_report(TERMINAL))
    forged[-1] ^= 0x01
    assert refused(bytes(forged)) == "forged"
    assert refused(lane.keys.location_report("T0000002")) == "foreign"  # signed, but for another terminal
    stranger = SecureKeys(SealedStore(lane.state / "stranger"))
    assert refused(stranger.location_report(TERMINAL, FixedSite(*SITE, 10.0).read(1.0), "fixed")) == "foreign"
    walk.to(moved(SITE, 1_000_000), after_s=60)  # 1,000 km in a minute
    assert refused(lane.keys.location_report(TERMINAL)) == "speed"
    assert not app.location_gate().ok  # and the terminal itself knows it is far away


async def test_the_cashier_sees_the_refusal_and_the_alerts_screen(card_lane, position, tmp_path):
    """In the UI: the demo's `m` carries the terminal away; a sale is refused before any card is
    asked for, with how far and what to do; the alerts screen lists it; back home, sales go on."""
    from terminal.demo import Customer
    from terminal.ui.app import CashierApp
    from terminal.ui.collect import CollectScreen
    from terminal.ui.screens import AlertsScreen
    from .test_ui import screen_text, shown_result, wait_for

    customer = Customer(None, tmp_path, (tmp_path, tmp_path), position_file=position, site=SITE)
    app = CashierApp(terminal_of(card_lane, position), customer=customer, tap_timeout=10)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "Demo: m carries the terminal" in screen_text(app))
        await pilot.press("m")
        await wait_for(pilot, lambda: "carried 4 km away" in screen_text(app))
        await pilot.press("s", "1", "2", "enter")
        await shown_result(pilot)
        text = screen_text(app)
        assert "NOT APPROVED" in text and "Outside the location fence since" in text and "km from the registered" \
            in text and "return the terminal to the shop" in text
        await pilot.press("escape", "a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen)
                       and app.screen.query_one("DataTable").row_count >= 1
                       and "Waiting for the host: 0 location alert(s)" in screen_text(app))
        table = app.screen.query_one("DataTable")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert any(r[1] == "fence" and "Outside the location fence" in r[2] for r in rows)
        await pilot.press("escape", "m")
        await wait_for(pilot, lambda: "back in the shop" in screen_text(app))
        await pilot.press("s", "1", "2", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.press("escape")
    alerts = card_lane.host.service.fence_store.alerts(terminal_id=TERMINAL)
    assert [a.kind for a in alerts] == ["outside"]  # the terminal's queued report reached the host


def test_a_standing_terminal_attaches_its_latest_fix_and_a_move_is_signed_at_once(card_lane, position):
    """Payments attach "the latest signed fix": the TEE gives its last report again while
    the terminal stands where it was and the report is younger than one report interval;
    the host takes it again without a second signature check. A move, or an interval
    gone by, is signed anew; periodic reports are always new."""
    from acquirer.fence.report import parse

    lane = card_lane
    app = terminal_of(lane, position)
    walk = Walk(lane, position)
    every = lane.session.fence_terms.report_every_s
    store = lane.host.service.fence_store
    first = app.signed_fix()
    walk.to(SITE, after_s=60)
    assert app.signed_fix() == first
    assert card_sale(lane, app).approved and card_sale(lane, app).approved  # the gate and both sales: one report
    assert store.last_fix(TERMINAL).counter == parse(first)[0].counter

    walk.to(moved(SITE, 100), after_s=60)  # still inside the fence, but somewhere else
    here = app.signed_fix()
    assert here != first and parse(here)[0].counter > parse(first)[0].counter
    assert card_sale(lane, app).approved
    assert store.last_fix(TERMINAL).counter == parse(here)[0].counter

    walk.to(moved(SITE, 100), after_s=every + 1)  # an interval later: a new signature for the same place
    assert app.signed_fix() != here
    assert app.report_location().approved  # periodic: a new report of its own, the latest from now on
    periodic = store.last_fix(TERMINAL).counter
    assert periodic > parse(here)[0].counter and parse(app.signed_fix())[0].counter == periodic
    assert card_sale(lane, app).approved and store.last_fix(TERMINAL).counter == periodic
