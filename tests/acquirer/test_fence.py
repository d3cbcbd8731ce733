"""The host's fence check over real SQLite files and real SM2 signatures, with a hand-driven
clock: a walk out of the fence and back, every spoofing attempt, the review list."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from geographiclib.geodesic import Geodesic

from acquirer.fence import FenceMonitor, FencePolicy, FenceStore, FixSource, build
from acquirer.registry import Registry
from keys.sm2 import SM2PrivateKey

MERCHANT, MOBILE = "898440358120001", "898440358120002"
SITE = (31.2304, 121.4737)  # People's Square, Shanghai
T0 = 1749952800.0  # 2025-06-15 10:00 China Standard Time


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Device:
    """A terminal's secure world as far as location goes: its key, its counter, its signatures."""

    terminal_id: str
    key: SM2PrivateKey = field(default_factory=SM2PrivateKey.generate)
    counter: int = 0

    @property
    def device_id(self) -> str:
        return f"DEV-{self.terminal_id}"

    def report(self, point, at: float, accuracy_m: float = 5.0, cells=()) -> bytes:
        self.counter += 1
        return build(self.key.sign, device_id=self.device_id, terminal_id=self.terminal_id, counter=self.counter,
                     fix_time=at, latitude=point[0], longitude=point[1], accuracy_m=accuracy_m,
                     source=FixSource.GNSS, cell_ids=cells)


def moved(point, metres: float, bearing: float = 90.0) -> tuple[float, float]:
    g = Geodesic.WGS84.Direct(point[0], point[1], bearing, metres)
    return g["lat2"], g["lon2"]


def enrol(registry: Registry, terminal_id: str, merchant_id: str, clock: Clock) -> Device:
    device = Device(terminal_id)
    code = registry.add_terminal(terminal_id, merchant_id)
    registry.activate(terminal_id, code, device.device_id, device.key.public_key.to_bytes(), now=clock())
    return device


@dataclass
class Site:
    registry: Registry
    store: FenceStore
    fences: FenceMonitor
    clock: Clock
    a: Device  # terminal 00000001
    b: Device  # terminal 00000002, same merchant

    def terminal(self, device: Device):
        return self.registry.terminal(device.terminal_id)

    def check(self, device: Device, report: bytes | None, txn_id: str = "", **kw):
        return self.fences.check(self.terminal(device), report, txn_id=txn_id, **kw)


@pytest.fixture(params=["own transactions", "grouped"])
def site(tmp_path, request):
    # grouped: as the host runs it, counter advances committed by the ledger writer's flushes
    grouped = request.param == "grouped"
    clock = Clock()
    registry = Registry(tmp_path / "registry.db")
    registry.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1], radius_m=500)
    registry.add_merchant(MOBILE, "Fruit cart", latitude=SITE[0], longitude=SITE[1], radius_m=500, mobile=True,
                          risk_grade="C")
    store = FenceStore(tmp_path / "fence.db", grouped=grouped)
    fences = FenceMonitor(store, clock=clock)
    a, b = enrol(registry, "00000001", MERCHANT, clock), enrol(registry, "00000002", MERCHANT, clock)
    for device in (a, b):
        fences.register_site(device.terminal_id, registry.merchant(MERCHANT))
    yield Site(registry, store, fences, clock, a, b)
    store.close()
    registry.close()


def test_a_fix_at_the_site_is_inside(site):
    verdict = site.check(site.a, site.a.report(moved(SITE, 120), T0))
    assert verdict.status == "inside" and not verdict.blocks
    assert verdict.distance_m == pytest.approx(120, abs=0.01) and verdict.offset_m == pytest.approx(-380, abs=0.01)


def test_a_walk_out_of_the_fence_and_back_is_blocked_alerted_and_allowed_again(site):
    # a cashier walks the terminal 1 km east at 1.4 m/s and back, reporting every minute
    statuses = []
    for minute in range(0, 25):
        there = min(minute, 24 - minute) * 60 * 1.4  # out for 12 minutes, back for 12
        site.clock.t = T0 + minute * 60
        verdict = site.check(site.a, site.a.report(moved(SITE, there), site.clock()), f"00000001:000001:{minute:06d}")
        statuses.append((round(there), verdict.status, verdict.blocks))
    outside = [s for s in statuses if s[1] == "outside"]
    assert [s[0] for s in outside] == [588, 672, 756, 840, 924, 1008, 924, 840, 756, 672, 588]
    assert all(blocks for _, _, blocks in outside)
    assert statuses[-1] == (0, "inside", False) and statuses[0] == (0, "inside", False)
    assert all(s[1] == "inside" and not s[2] for s in statuses if s[0] <= 504)
    alerts = site.store.alerts(terminal_id="00000001")
    assert len(alerts) == 11 and {a.kind for a in alerts} == {"outside"}
    assert alerts[0].txn_id == "00000001:000001:000017" and "m outside its fence" in alerts[0].reason


def test_a_replayed_report_is_refused(site):
    first = site.a.report(SITE, T0)
    assert site.check(site.a, first).status == "inside"
    site.clock.advance(60)
    verdict = site.check(site.a, first)
    assert (verdict.status, verdict.refusal, verdict.blocks) == ("refused", "replay", True)
    assert "counter 1 already used" in verdict.reason
    newer, older = site.a.report(SITE, T0 + 60), site.a.report(SITE, T0 + 60)
    assert site.check(site.a, older).status == "inside"  # counter 3 first
    assert site.check(site.a, newer).refusal == "replay"  # counter 2 after 3: an old report held back


def test_a_payment_may_attach_the_latest_accepted_report_again(site, monkeypatch):
    """"The latest signed fix" rides on every sale: the same report again is judged again
    (freshness, the fence) without a second signature check; an older one, a refused one,
    or a periodic report sent twice is a replay."""
    from acquirer.fence import monitor

    checked, real = [], monitor.verify

    def counted(*a, **kw):
        checked.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(monitor, "verify", counted)
    latest = site.a.report(SITE, T0)
    assert site.check(site.a, latest, "00000001:000001:000001").status == "inside"
    for n in range(2, 5):
        site.clock.advance(100)
        verdict = site.check(site.a, latest, f"00000001:000001:{n:06d}")
        assert (verdict.status, verdict.fix_age_s) == ("inside", 100 * (n - 1))
    assert len(checked) == 1  # the first time only
    assert site.check(site.a, latest).refusal == "replay"  # a periodic report is taken once
    site.clock.advance(1200 - 300 + 1)  # grade B: a fix may be 1200 s old
    assert site.check(site.a, latest, "00000001:000001:000005").refusal == "stale"
    newer = site.a.report(moved(SITE, 20), site.clock())
    assert site.check(site.a, newer, "00000001:000001:000006").status == "inside"
    assert site.check(site.a, latest, "00000001:000001:000007").refusal == "replay"  # no longer the latest
    assert site.check(site.a, newer, "00000001:000001:000008").status == "inside"


def test_a_refused_report_is_not_taken_when_attached_again(site):
    assert site.check(site.a, site.a.report(SITE, T0), "00000001:000001:000001").status == "inside"
    site.clock.advance(60)
    far = site.a.report(moved(SITE, 60_000), site.clock())  # 60 km in a minute
    assert site.check(site.a, far, "00000001:000001:000002").refusal == "speed"
    assert site.check(site.a, far, "00000001:000001:000003").refusal == "replay"
    assert site.check(site.b, site.a.report(SITE, site.clock()), "00000002:000001:000001").refusal == "foreign"


def test_the_latest_report_is_still_known_after_a_host_restart(site, tmp_path):
    latest = site.a.report(moved(SITE, 800), T0)  # outside: judged outside each time
    assert site.check(site.a, latest, "00000001:000001:000001").status == "outside"
    site.fences.store.flush()
    site.store.close()
    site.store = FenceStore(tmp_path / "fence.db", grouped=True)
    site.fences = FenceMonitor(site.store, clock=site.clock)
    verdict = site.check(site.a, latest, "00000001:000001:000002")
    assert verdict.status == "outside" and verdict.blocks
    assert [a.kind for a in site.store.alerts()] == ["outside", "outside"]


def test_a_forged_signature_is_refused(site):
    thief = Device("00000001")  # same names, another key: a fake secure world
    verdict = site.check(site.a, thief.report(SITE, T0))
    assert (verdict.status, verdict.refusal) == ("refused", "forged")
    tampered = bytearray(site.a.report(moved(SITE, 5000), T0))
    tampered[30] ^= 0x40  # a field changed after signing
    assert site.check(site.a, bytes(tampered)).refusal == "forged"
    assert [a.kind for a in site.store.alerts()] == ["forged", "forged"]


def test_another_terminals_report_is_refused(site):
    theirs = site.b.report(SITE, T0)  # genuine, at the right place, but terminal 2's
    verdict = site.check(site.a, theirs)
    assert (verdict.status, verdict.refusal) == ("refused", "foreign")
    assert verdict.reason == "report is from terminal 00000002, not 00000001"
    assert site.check(site.b, theirs).status == "inside"  # still good for its own terminal


def test_a_jump_faster_than_anyone_can_travel_is_refused(site):
    assert site.check(site.a, site.a.report(SITE, T0)).status == "inside"
    site.clock.advance(600)
    far = site.a.report(moved(SITE, 60_000), site.clock())  # 60 km in 10 minutes: 360 km/h
    verdict = site.check(site.a, far)
    assert (verdict.status, verdict.refusal) == ("refused", "speed")
    assert "moved 60.0 km in 600 s (360 km/h), faster than 300 km/h" == verdict.reason
    assert site.check(site.a, far).refusal == "replay"  # its counter is spent all the same
    site.clock.advance(60)  # the last plausible fix is still the site: back there is fine
    assert site.check(site.a, site.a.report(moved(SITE, 50), site.clock())).status == "inside"


def test_a_jump_at_the_same_instant_is_refused_even_if_short(site):
    assert site.check(site.a, site.a.report(SITE, T0)).status == "inside"
    verdict = site.check(site.a, site.a.report(moved(SITE, 2000), T0))
    assert verdict.refusal == "speed" and "instantly" in verdict.reason


def test_a_stale_or_future_fix_is_refused_by_the_grade_limit(site):
    # grade B: a report every 600 s, so a fix may be 1200 s old at most
    site.clock.advance(1201)
    verdict = site.check(site.a, site.a.report(SITE, T0))
    assert (verdict.refusal, verdict.reason) == ("stale", "fix is 1201 s old (limit 1200 s)")
    verdict = site.check(site.a, site.a.report(SITE, site.clock() + 300))
    assert verdict.refusal == "future"


def test_a_missing_fix_declines_when_required_and_alerts(site):
    verdict = site.check(site.a, None, "00000001:000001:000001")
    assert (verdict.status, verdict.required, verdict.blocks) == ("missing", True, True)
    assert site.store.alerts()[0].kind == "missing"
    relaxed = site.check(site.a, None, required=False)
    assert (relaxed.status, relaxed.blocks) == ("missing", False)
    assert len(site.store.alerts()) == 1


def test_an_unfenced_terminal_passes_but_its_reports_are_still_verified(site, tmp_path):
    c = enrol(site.registry, "00000003", MERCHANT, site.clock)
    assert site.check(c, None).status == "unfenced"
    assert site.check(c, c.report(moved(SITE, 90_000), T0)).status == "unfenced"
    assert site.check(c, Device("00000003").report(SITE, T0)).refusal == "forged"


def test_the_counter_survives_a_host_restart(site, tmp_path):
    first = site.a.report(SITE, T0)
    site.check(site.a, first)
    site.store.close()
    site.store = FenceStore(tmp_path / "fence.db")
    site.fences = FenceMonitor(site.store, clock=site.clock)
    assert site.check(site.a, first).refusal == "replay"


def test_report_frequency_follows_risk_grade_and_mobility(site):
    policy = FencePolicy()
    assert [policy.report_interval_s(g) for g in "ABCD"] == [900, 600, 300, 120]
    assert policy.report_interval_s("C", mobile=True) == 150
    assert policy.report_interval_s("unheard-of") == 120  # the strictest
    assert site.fences.report_interval_s("00000001") == 600
    assert site.fences.report_interval_s("00000001", site.registry.merchant(MOBILE)) == 150


def test_a_mobile_merchant_gets_a_wider_circle_and_a_corridor(site):
    d = enrol(site.registry, "00000004", MOBILE, site.clock)
    route = (SITE, moved(SITE, 10_000, 0), moved(moved(SITE, 10_000, 0), 10_000, 90))  # north, then east
    fence = site.fences.register_site(d.terminal_id, site.registry.merchant(MOBILE), corridor=route,
                                      corridor_width_m=400)
    assert fence.radius_m == 3000  # max(500 x 4, 3000)
    assert site.check(d, d.report(moved(SITE, 2900, 200), T0)).status == "inside"  # the base circle
    site.clock.advance(3600)
    on_route = moved(moved(SITE, 10_000, 0), 150, 180)  # 150 m south of the corner, 10 km out
    assert site.check(d, d.report(on_route, site.clock())).status == "inside"
    site.clock.advance(600)
    off_route = moved(moved(SITE, 10_000, 0), 900, 0)  # 900 m beyond the corner: 700 m beyond the corridor
    verdict = site.check(d, d.report(off_route, site.clock()))
    assert verdict.status == "outside" and verdict.offset_m == pytest.approx(700, abs=2)


def test_a_polygon_fence(site):
    ring = (moved(SITE, 1000, 0), moved(SITE, 1000, 90), moved(SITE, 1000, 180), moved(SITE, 1000, 270))
    site.fences.register_site("00000001", site.registry.merchant(MERCHANT), radius_m=0, polygon=ring)
    inside = site.check(site.a, site.a.report(moved(SITE, 600, 45), T0))
    assert inside.status == "inside" and inside.offset_m < 0
    site.clock.advance(600)
    verdict = site.check(site.a, site.a.report(moved(SITE, 1500, 0), site.clock()))
    assert verdict.status == "outside" and verdict.offset_m == pytest.approx(500, rel=0.01)


def test_a_merchant_without_coordinates_gets_its_first_fix_as_the_site(site):
    site.registry.add_merchant("898440358120003", "New shop")
    e = enrol(site.registry, "00000005", "898440358120003", site.clock)
    assert not site.fences.register_site(e.terminal_id, site.registry.merchant("898440358120003")).has_area
    assert site.check(e, e.report(moved(SITE, 3000), T0)).status == "inside"
    assert site.fences.fence(e.terminal_id).registered_by == "first-fix"
    site.clock.advance(3600)
    assert site.check(e, e.report(SITE, site.clock())).status == "outside"


def test_the_error_bar_counts_but_only_up_to_the_cap(site):
    assert site.check(site.a, site.a.report(moved(SITE, 560), T0, accuracy_m=80)).status == "inside"
    site.clock.advance(60)
    # claiming a 5 km error bar buys 100 m, no more
    assert site.check(site.a, site.a.report(moved(SITE, 650), site.clock(), accuracy_m=5000)).status == "outside"


def test_cells_are_compared_when_both_sides_know_them(site):
    site.fences.register_site("00000001", site.registry.merchant(MERCHANT), cell_ids=("460-00-6212-13011",))
    assert site.check(site.a, site.a.report(SITE, T0, cells=("460-00-6212-13011",))).cells == "match"
    site.clock.advance(60)
    assert site.check(site.a, site.a.report(SITE, site.clock(), cells=("460-01-9999-1",))).cells == "mismatch"
    site.clock.advance(60)
    assert site.check(site.a, site.a.report(SITE, site.clock())).cells == "unknown"


def test_merchants_with_repeated_alerts_are_listed_for_review(site):
    site.registry.add_merchant("898440358120009", "Quiet shop", latitude=SITE[0], longitude=SITE[1])
    q = enrol(site.registry, "00000009", "898440358120009", site.clock)
    site.fences.register_site(q.terminal_id, site.registry.merchant("898440358120009"))
    site.check(q, None)  # one alert only
    for _ in range(3):
        site.clock.advance(60)
        site.check(site.a, site.a.report(moved(SITE, 5000), site.clock()))  # outside
    site.check(site.b, site.a.report(SITE, site.clock()))  # foreign
    review = site.store.for_review(since=T0 - 1, threshold=3)
    assert [(r.merchant_id, r.alerts, r.terminals) for r in review] == [(MERCHANT, 4, 2)]
    assert review[0].kinds == {"outside": 3, "foreign": 1}


class _FullCheckEveryTime(FenceMonitor):
    """The monitor without its shortcut for a report attached again: the reference."""

    def _remember(self, *args) -> None:
        pass


def test_the_shortcut_for_a_report_attached_again_gives_the_full_checks_verdicts(tmp_path, monkeypatch):
    """Sale after sale with the same latest report, while what the verdict depends on changes
    under it (time, the merchant's grade, the fence, the policy, a newer report): every
    verdict, every counter and every alert is what the full check gives."""
    clock = Clock()
    registry = Registry(tmp_path / "registry.db")
    registry.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1], radius_m=500)
    device = enrol(registry, "00000001", MERCHANT, clock)
    sides = []
    for name, kind in (("fast", FenceMonitor), ("full", _FullCheckEveryTime)):
        store = FenceStore(tmp_path / f"{name}.db", grouped=True)
        monitor = kind(store, clock=clock)
        monitor.register_site("00000001", registry.merchant(MERCHANT))
        sides.append(monitor)
    merchant, terminal = registry.merchant(MERCHANT), registry.terminal("00000001")
    shortcuts = []
    real_current = FenceMonitor.current

    def verdicts(report, n, **kw):
        out = []
        for monitor in sides:
            calls = len(shortcuts)
            v = monitor.check(terminal, report, merchant=merchant, txn_id=f"00000001:000001:{n:06d}", **kw)
            out.append((v.status, v.reason, v.required, v.refusal, v.report, v.distance_m, v.offset_m, v.fix_age_s,
                        v.cells, v.alert_id is None))
            if monitor is sides[0] and len(shortcuts) == calls:
                shortcuts.append(n)  # the full check never asked `current`: the shortcut answered
        assert out[0] == out[1], n
        return out[0]

    def counting_current(self, *a):
        if self is sides[0]:
            shortcuts.append(None)
        return real_current(self, *a)

    monkeypatch.setattr(FenceMonitor, "current", counting_current)
    try:
        latest = device.report(moved(SITE, 100), T0)
        n = 0
        for step in range(60):
            n += 1
            clock.advance(37)  # grade B: the fix goes stale after 1200 s, at sale 33
            if step == 10:
                merchant = registry.merchant(MERCHANT)  # the assessor's merchant cache renewed: a new object
            if step == 15:  # the site is moved 400 m: the same fix is now outside
                for monitor in sides:
                    monitor.register_site("00000001", merchant, latitude=moved(SITE, 400)[0],
                                          longitude=moved(SITE, 400)[1], radius_m=200)
            if step == 20:  # back, and a stricter policy
                for monitor in sides:
                    monitor.register_site("00000001", merchant)
                    monitor.policy = FencePolicy(max_future_s=10.0)
            if step == 25:
                verdicts(latest, n, required=True)
                n += 1
            if step == 40:  # a new report: the old one is a replay from now on
                newer = device.report(moved(SITE, 50), clock())
                assert verdicts(newer, n)[0] == "inside"
                n += 1
                assert verdicts(latest, n)[3] == "replay"
                latest = newer
                n += 1
            verdicts(latest, n)
        used = [s for s in shortcuts if s is not None]
        assert len(used) > 30  # most sales took the shortcut
        for monitor in sides:
            monitor.store.flush()
        fast, full = sides
        assert fast.store.last_fix("00000001") == full.store.last_fix("00000001")
        assert [(a.kind, a.reason, a.txn_id, a.counter) for a in fast.store.alerts()] == \
            [(a.kind, a.reason, a.txn_id, a.counter) for a in full.store.alerts()]
        assert {a.kind for a in fast.store.alerts()} >= {"outside", "stale"}
    finally:
        for monitor in sides:
            monitor.store.close()
        registry.close()
