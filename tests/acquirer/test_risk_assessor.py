"""The pipeline's risk step: real ISO8583 requests decoded by the pipeline, signed location
reports in DF03, decisions on the context; then the same step inside a running host."""
from __future__ import annotations

import shutil

import pytest

from acquirer import pipeline
from acquirer.fence import FenceMonitor, FenceStore
from acquirer.fence.report import FixSource, build
from acquirer.pipeline import Context
from acquirer.protocol import Field60, Frame, PrivateTag, ResponseCode, encode, private_fields, read_private
from acquirer.risk import DEFAULT_RULES, DecisionStore, RiskAssessor, RiskEngine, RuleFile
from keys.emv import CardFamily
from keys.tlv import encode_dict
from tests.acquirer.cards import luhn_complete, personalise
from tests.acquirer.test_fence import MERCHANT, SITE, T0, Clock, Device, enrol, moved

R = ResponseCode


class Till:
    """A fenced terminal and the host's risk step, driven request by request."""

    def __init__(self, tmp_path, require_fix=None):
        from acquirer.registry import Registry

        self.clock = Clock()
        self.registry = Registry(tmp_path / "registry.db")
        self.registry.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1], radius_m=500)
        self.device = enrol(self.registry, "00000001", MERCHANT, self.clock)
        self.other = enrol(self.registry, "00000002", MERCHANT, self.clock)
        shutil.copy(DEFAULT_RULES, tmp_path / "risk_rules.toml")
        self.store = DecisionStore(tmp_path / "risk.db")
        self.engine = RiskEngine(RuleFile(tmp_path / "risk_rules.toml", check_every_s=0), self.store,
                                 clock=self.clock)
        self.fence_store = FenceStore(tmp_path / "fence.db")
        self.fences = FenceMonitor(self.fence_store, clock=self.clock)
        for t in ("00000001", "00000002"):
            self.fences.register_site(t, self.registry.merchant(MERCHANT))
        self.assessor = RiskAssessor(self.engine, self.registry, self.fences, clock=self.clock,
                                     require_fix=require_fix)
        self.stan = 0

    def request(self, amount: int, report: bytes | None = None, flags: str = "", pin: bool = False,
                icc: dict | None = None, **ctx_fields) -> Context:
        self.stan += 1
        private = {}
        if report is not None:
            private[PrivateTag.LOCATION] = report
        if flags:
            private[PrivateTag.RISK_FLAGS] = flags.encode()
        doc = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": f"{self.stan:06d}", "22": "072",
               "25": "00", "41": "00000001", "42": MERCHANT, "49": "156", "60": Field60("22", "000001").encode()}
        if private:
            doc["59"] = private_fields(private)
        if pin:
            doc["52"] = "00" * 8
        if icc:
            doc["55"] = encode_dict(icc).hex().upper()
        ctx = Context(Frame(encode(doc)), "test")
        pipeline.step_decode(ctx)
        ctx.terminal = self.registry.terminal("00000001")
        for k, v in ctx_fields.items():
            setattr(ctx, k, v)
        self.assessor.assess(ctx)
        return ctx

    def close(self):
        self.store.close()
        self.fence_store.close()
        self.registry.close()


@pytest.fixture
def till(tmp_path):
    t = Till(tmp_path)
    yield t
    t.close()


def test_a_sale_at_the_site_goes_on_to_the_issuer(till):
    ctx = till.request(500, till.device.report(SITE, T0))
    assert ctx.code is None and not ctx.done
    (stored,) = till.engine.explain("00000001:000001:000001")
    assert stored.facts["location"]["status"] == "inside"


def test_walking_out_of_the_fence_and_back_declines_with_g1_then_allows(till):
    codes = []
    for minute, metres in enumerate((0, 400, 800, 1200, 800, 400, 0)):
        till.clock.t = T0 + minute * 600
        ctx = till.request(500, till.device.report(moved(SITE, metres), till.clock()))
        codes.append(ctx.code.value if ctx.code else "go")
        if metres == 1200:
            assert ctx.text == "terminal 700 m outside its fence, 1.2 km from the site"
    assert codes == ["go", "go", "G1", "G1", "G1", "go", "go"]
    assert [a.kind for a in till.fence_store.alerts()] == ["outside"] * 3


@pytest.mark.parametrize("spoof, reason", [
    ("replay", "already used"), ("forged", "does not verify"), ("foreign", "from terminal 00000002"),
    ("speed", "faster than 300 km/h"),
])
def test_each_spoofing_attempt_is_declined_with_g1_and_its_reason(till, spoof, reason):
    genuine = till.device.report(SITE, T0)
    assert till.request(500, genuine).code is None
    till.clock.advance(60)
    if spoof == "replay":  # an old report held back: a newer one came since (the latest may come again)
        assert till.request(500, till.device.report(SITE, till.clock())).code is None
    report = {"replay": lambda: genuine,
              "forged": lambda: Device("00000001").report(SITE, till.clock()),
              "foreign": lambda: till.other.report(SITE, till.clock()),
              "speed": lambda: till.device.report(moved(SITE, 80_000), till.clock())}[spoof]()
    ctx = till.request(500, report)
    assert ctx.code is R.GEOFENCE_VIOLATION and reason in ctx.text
    (stored,) = till.engine.explain(f"00000001:000001:{till.stan:06d}")
    assert (stored.hits[0]["rule"], stored.hits[0]["values"]["location.refusal"]) == ("location-refused", spoof)


def test_a_missing_fix_is_declined_when_required_and_passes_during_a_roll_out(till, tmp_path):
    ctx = till.request(500)
    assert ctx.code is R.GEOFENCE_VIOLATION and ctx.text == "no signed location attached: fix required"
    (tmp_path / "rollout").mkdir()
    relaxed = Till(tmp_path / "rollout", require_fix=False)
    try:
        assert relaxed.request(500).code is None
    finally:
        relaxed.close()


def test_a_step_up_tells_the_terminal_what_to_ask_for(till):
    ctx = till.request(150_000, till.device.report(SITE, T0))
    assert (ctx.code, ctx.text) == (R.STEP_UP_REQUIRED, "PIN required above the no-PIN limit")
    private = read_private({"59": ctx.reply_fields["59"]})
    assert private[PrivateTag.STEP_UP] == b"PIN"
    till.clock.advance(30)
    assert till.request(150_000, till.device.report(SITE, till.clock()), pin=True).code is None
    till.clock.advance(30)
    phone = {0x9F6C: bytes([0x00, 0x80])}  # CTQ: the phone verified its holder
    assert till.request(150_000, till.device.report(SITE, till.clock()), icc=phone).code is None


def test_terminal_flags_and_the_card_token_reach_the_rules(till):
    ctx = till.request(500, till.device.report(SITE, T0), flags="RELAY_SUSPECTED")
    assert ctx.code is R.STEP_UP_REQUIRED and ctx.notes == ["risk step_up: relay-flagged-tap"]
    codes = []
    for _ in range(6):
        till.clock.advance(5)
        ctx = till.request(500, till.device.report(SITE, till.clock()), pan_token="TOKEN-A",
                           masked_pan="621498******0304")
        codes.append(ctx.code)
    assert codes == [None] * 5 + [R.EXCEEDS_FREQUENCY]
    (stored,) = till.engine.explain(f"00000001:000001:{till.stan:06d}")
    assert (stored.card_token, stored.facts["masked_pan"]) == ("TOKEN-A", "621498******0304")


# --- inside a running host --------------------------------------------------------------------
def test_the_risk_step_in_a_running_host(lane, tmp_path):
    """The assessor plugged into the host's CardFlows: a real TCP sale carries DF03."""
    from tests.acquirer.conftest import MERCHANT as LANE_MERCHANT, TERMINAL

    svc = lane.host.service
    shutil.copy(DEFAULT_RULES, tmp_path / "risk_rules.toml")
    store, fence_store = DecisionStore(tmp_path / "risk.db"), FenceStore(tmp_path / "fence.db")
    fences = FenceMonitor(fence_store)
    fences.register_site(TERMINAL, svc.registry.merchant(LANE_MERCHANT))
    svc.host.card_flows.risk = RiskAssessor(RiskEngine(RuleFile(tmp_path / "risk_rules.toml"), store), svc.registry,
                                            fences)
    site = (31.23, 121.47)
    counter = [0]
    attach = {}

    def report(point, age_s: float) -> bytes:
        import time as _time
        counter[0] += 1
        return build(lane.keys.sign, device_id=lane.keys.device_id, terminal_id=TERMINAL, counter=counter[0],
                     fix_time=_time.time() - age_s, latitude=point[0], longitude=point[1], accuracy_m=5,
                     source=FixSource.FIXED)

    real = lane.session._exchange

    def with_location(fields, maced):  # what the terminal will do: DF03 in field 59, under the MAC
        if "location" in attach:
            private = read_private(fields) if "59" in fields else {}
            private[PrivateTag.LOCATION] = attach["location"]
            fields["59"] = private_fields(private)
        return real(fields, maced)

    lane.session._exchange = with_location
    lane.session.locate = None  # this test attaches its own reports
    second_card = personalise(svc.hsm, svc.issuer, CardFamily.PBOC_SM4, luhn_complete("621498000000001"))  # the first
    # card is at the velocity limit by then
    try:
        first = report(site, 1100)
        outcomes = []
        for amount, location, card in ((500, first, None), (150_000, report(site, 1000), None),
                                       (500, report(moved(site, 2000), 600), None), (500, report(site, 0), None),
                                       (500, first, None), (500, None, second_card)):
            attach.pop("location", None)
            if location is not None:
                attach["location"] = location
            outcomes.append(lane.session.sale(amount, lane.card_data(amount, card)))
        codes = [(o.code, o.text) for o in outcomes]
        assert codes[0][0] == "00" and codes[3][0] == "00"
        assert codes[1] == ("1A", "PIN required above the no-PIN limit")
        assert read_private(outcomes[1].fields)[PrivateTag.STEP_UP] == b"PIN"
        assert codes[2][0] == "G1" and "m outside its fence" in codes[2][1]
        assert codes[4] == ("G1", "report counter 1 already used (last 4): replayed")
        assert codes[5] == ("G1", "no signed location attached: fix required")
    finally:
        lane.session._exchange = real
        store.close()
        fence_store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(("risk.db", "fence.db")))
    assert lane.card.pan.encode() not in raw  # no full PAN in anything risk or fence keeps
