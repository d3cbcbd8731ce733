"""The risk engine with the default rules, over a real SQLite decision store and a hand-driven
clock: every default rule, freezes and holds, stored reasons, counters across a restart."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from acquirer.risk import DEFAULT_RULES, Action, DecisionStore, Facts, RiskEngine, RuleFile
from acquirer.risk.cli import format_decision
from acquirer.risk.variables import normalise_flag

from .risk_helpers import writes_held

T0 = 1749952800.0  # 2025-06-15 10:00 China Standard Time
MERCHANT = "898440358120001"
TOKEN = "5F3A9C0D11223344AABBCCDDEEFF0011"


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def set_status(text: str, rule_id: str, status: str) -> str:
    new, n = re.subn(rf'(id = "{rule_id}"\nstatus = )"\w+"', rf'\1"{status}"', text)
    assert n == 1, rule_id
    return new


class Bed:
    """An engine over a copy of the default rules in a temporary state directory."""

    def __init__(self, state: Path, clock: Clock | None = None):
        self.state = state
        self.clock = clock or Clock()
        self.path = state / "risk_rules.toml"
        if not self.path.exists():
            shutil.copy(DEFAULT_RULES, self.path)
        self.rules = RuleFile(self.path, check_every_s=0)
        self.store = DecisionStore(state / "risk.db")
        self.engine = RiskEngine(self.rules, self.store, clock=self.clock, holds_every_s=0)
        self.stan = 0

    def edit(self, change) -> None:
        """Rewrite the rules file and make sure its signature changes (same-second writes)."""
        text = change(self.path.read_text())
        self.path.write_text(text)
        st = self.path.stat()
        import os
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def facts(self, amount: int = 1234, **kw) -> Facts:
        self.stan += 1
        kw.setdefault("card_token", TOKEN)
        kw.setdefault("masked_pan", "621498******0304")
        kw.setdefault("device_id", "DEV-5F3A9C")
        return Facts(f"T0000001:000001:{self.stan:06d}", kw.pop("terminal_id", "T0000001"),
                     kw.pop("merchant_id", MERCHANT), amount, **kw)

    def decide(self, amount: int = 1234, **kw):
        return self.engine.decide(self.facts(amount, **kw))

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def bed(tmp_path):
    b = Bed(tmp_path)
    yield b
    b.close()


def outcome(d) -> tuple:
    return d.action.value, d.code


def test_a_small_tap_passes_with_no_hit(bed):
    d = bed.decide(1234)
    assert outcome(d) == ("pass", "") and d.hits == ()


def test_no_pin_limit_steps_up_to_pin_unless_a_pin_or_the_phone_verified(bed):
    d = bed.decide(100_001)
    assert (outcome(d), d.step_up, d.text) == (("step_up", "1A"), "PIN", "PIN required above the no-PIN limit")
    assert outcome(bed.decide(100_000)) == ("pass", "")
    assert outcome(bed.decide(100_001, pin_present=True)) == ("pass", "")
    assert outcome(bed.decide(100_001, cdcvm=True)) == ("pass", "")
    assert outcome(bed.decide(100_001, channel="qr")) == ("pass", "")


def test_single_daily_and_monthly_limits(bed):
    assert outcome(bed.decide(5_000_001, pin_present=True)) == ("decline", "61")
    for _ in range(2):
        assert outcome(bed.decide(4_000_000, pin_present=True)) == ("pass", "")
    d = bed.decide(4_000_000, pin_present=True)  # 120,000 yuan today, above 100,000
    assert outcome(d) == ("decline", "61") and d.text == "card daily limit reached"
    assert d.hits[0].values["card.amount_1d"] == 12_000_000  # this one included
    for day in range(1, 6):  # a new business day each time: 2 x 40,000 a day
        bed.clock.t = T0 + day * 86400
        assert [outcome(bed.decide(4_000_000, pin_present=True)) for _ in range(2)] == [("pass", "")] * 2
    bed.clock.t = T0 + 6 * 86400  # 80,000 + 5 x 80,000 = 480,000 yuan so far this month
    last = bed.decide(4_000_000, pin_present=True)
    assert outcome(last) == ("decline", "61") and last.text == "card monthly limit reached"


def test_declined_amounts_do_not_count_towards_limits(bed):
    for _ in range(3):
        bed.decide(4_000_000, pin_present=True)  # the third is declined
    assert outcome(bed.decide(2_000_000, pin_present=True)) == ("pass", "")  # 80,000 + 20,000


def test_more_than_five_taps_of_a_card_in_a_minute_are_declined(bed):
    results = []
    for _ in range(7):
        bed.clock.advance(5)
        results.append(outcome(bed.decide(1000)))
    assert results == [("pass", "")] * 5 + [("decline", "65")] * 2
    assert outcome(bed.decide(1000, card_token="ANOTHERCARD")) == ("pass", "")
    bed.clock.advance(61)
    assert outcome(bed.decide(1000)) == ("pass", "")


def test_a_relay_flagged_tap_steps_up_to_pin(bed):
    d = bed.decide(500, flags=frozenset({"relay-suspected"}))
    assert (outcome(d), d.step_up, d.hits[0].rule) == (("step_up", "1A"), "PIN", "relay-flagged-tap")
    assert outcome(bed.decide(500, flags=frozenset({"relay-suspected"}), pin_present=True)) == ("pass", "")


def test_location_outside_refused_and_missing_decline_with_g1(bed):
    d = bed.decide(500, location_status="outside", location_offset_m=850.0, location_reason="850 m outside")
    assert outcome(d) == ("decline", "G1") and d.hits[0].rule == "geofence-outside"
    d = bed.decide(500, location_status="refused", location_refusal="replay", location_reason="replayed")
    assert outcome(d) == ("decline", "G1") and (d.hits[0].rule, d.hits[0].status) == ("location-refused", "builtin")
    d = bed.decide(500, location_status="missing", location_required=True)
    assert outcome(d) == ("decline", "G1") and d.hits[0].rule == "location-required"
    assert outcome(bed.decide(500, location_status="missing", location_required=False)) == ("pass", "")
    assert outcome(bed.decide(500, location_status="inside")) == ("pass", "")


def test_blacklisted_cards_and_devices_are_declined(bed):
    bed.edit(lambda t: t.replace('blacklisted_cards = []', f'blacklisted_cards = ["{TOKEN}"]')
             .replace('blacklisted_devices = []', 'blacklisted_devices = ["DEV-STOLEN"]'))
    assert outcome(bed.decide(500)) == ("decline", "62")
    assert outcome(bed.decide(500, card_token="OTHER", device_id="DEV-STOLEN")) == ("decline", "58")
    assert outcome(bed.decide(500, card_token="OTHER")) == ("pass", "")


def test_a_large_amount_at_night_passes_but_holds_the_merchants_settlement(bed):
    bed.clock.t = T0 + 13 * 3600  # 23:00
    d = bed.decide(600_000, pin_present=True)
    assert outcome(d) == ("hold_settlement", "") and not d.blocks
    assert bed.store.settlement_held(MERCHANT)
    assert [(h.merchant_id, h.kind, h.rule_id) for h in bed.store.holds()] == [(MERCHANT, "hold", "night-large-amount")]
    bed.clock.t = T0 + 2 * 3600  # noon
    assert outcome(bed.decide(600_000, pin_present=True)) == ("pass", "")


def test_a_burst_of_round_amounts_on_a_terminal_holds_settlement(bed):
    actions = []
    for i in range(7):
        bed.clock.advance(300)
        actions.append(bed.decide(50_000, card_token=f"CARD{i}").action)
    assert actions == [Action.PASS] * 5 + [Action.HOLD_SETTLEMENT] * 2
    assert outcome(bed.decide(50_001, card_token="X")) == ("pass", "")  # not round


def test_a_live_freeze_declines_the_merchant_until_released(bed):
    bed.edit(lambda t: set_status(t, "merchant-burst-freeze", "live").replace(
        "merchant_burst_per_minute = 60", "merchant_burst_per_minute = 3"))
    grade = dict(merchant_grade="C")
    assert [bed.decide(100, card_token=f"C{i}", **grade).action for i in range(4)] == \
        [Action.PASS] * 3 + [Action.FREEZE_MERCHANT]
    bed.clock.advance(3600)
    d = bed.decide(100, card_token="LATER", **grade)
    assert outcome(d) == ("decline", "59") and d.hits[0].rule == "merchant-frozen"
    assert bed.store.settlement_held(MERCHANT)
    assert outcome(bed.decide(100, merchant_id="898440358120002")) == ("pass", "")
    assert bed.store.release(MERCHANT, "freeze", "risk officer")
    assert outcome(bed.decide(100, card_token="AFTER", **grade)) == ("pass", "")


def test_every_decision_is_stored_with_its_reasons(bed):
    d = bed.decide(150_000, flags=frozenset({normalise_flag("RELAY_SUSPECTED")}))
    stored = bed.engine.explain(d.txn_id)
    assert len(stored) == 1
    s = stored[0]
    assert (s.action, s.code, s.amount, s.card_token, s.facts["masked_pan"]) == \
        ("step_up", "1A", 150_000, TOKEN, "621498******0304")
    assert [(h["rule"], h["status"]) for h in s.hits] == [("relay-flagged-tap", "live"), ("no-pin-limit", "live")]
    assert s.hits[1]["values"] == {"txn.channel": "card", "txn.amount": 150_000, "txn.pin_present": False,
                                   "txn.cdcvm": False, "params.no_pin_limit": 100_000, "step_up": "PIN"}
    text = format_decision(s)
    assert "=> STEP_UP (1A): card answered slowly: enter PIN" in text
    assert "no-pin-limit" in text and "txn.amount=150000" in text
    plain = bed.decide(700)
    assert bed.engine.explain(plain.txn_id)[0].action == "pass"  # buffered passes are flushed for explain


def test_the_month_starts_afresh_on_the_first_in_china_standard_time(bed):
    bed.clock.t = 1751299200.0 - 60  # 2025-06-30 23:59 CST (1751299200 is 2025-07-01 00:00 CST)
    for _ in range(2):
        bed.decide(4_000_000, pin_present=True)
    d = bed.decide(4_000_000, pin_present=True)
    assert d.hits[0].values["card.amount_1d"] == 12_000_000
    bed.clock.advance(120)  # 2025-07-01 00:01 CST: a new day and a new month
    d = bed.decide(4_000_000, pin_present=True)
    assert [h.rule for h in d.hits] == ["night-large-amount"]  # no limit: only the hour shows
    assert d.hits[0].values["txn.amount"] == 4_000_000


def test_counters_are_rebuilt_from_stored_decisions_after_a_restart(tmp_path):
    first = Bed(tmp_path)
    for _ in range(5):
        first.clock.advance(5)
        first.decide(1000)
    first.decide(4_000_000, pin_present=True, card_token="BIG")
    first.decide(4_000_000, pin_present=True, card_token="BIG")
    first.close()
    second = Bed(tmp_path, Clock(first.clock() + 5))
    second.stan = 100
    try:
        assert outcome(second.decide(1000)) == ("decline", "65")  # the 6th tap in the minute
        assert outcome(second.decide(4_000_000, pin_present=True, card_token="BIG")) == ("decline", "61")
    finally:
        second.close()


class _ReferenceCounters:
    """`Counters.add` as a walk through each key's windows from an empty tally (the counting
    before new keys' first events were written out, `Tally.starting`)."""

    def __init__(self):
        from tests.acquirer.test_risk_store import _TallyBefore

        self._new = _TallyBefore
        self._tallies: dict[tuple[str, str], object] = {}

    def add(self, card: str, terminal: str, merchant: str, t: float, amount: int, rnd: int) -> tuple:
        out = []
        for scope, key in (("card", card), ("terminal", terminal), ("merchant", merchant)):
            tally = None
            if key:
                tally = self._tallies.setdefault((scope, key), self._new())
                tally.add(t, amount, rnd)
            out.append(tally)
        return tuple(out)


def test_random_traffic_gets_the_decisions_and_rows_the_reference_counting_gives(tmp_path):
    """The same random sales (new and returning cards, busy terminals, large and round amounts,
    PINs, relay flags, days and a month going by) through an engine with the counters as they
    are and one with the reference counting: the same decisions, the same counter values, the
    same stored rows."""
    import random

    (tmp_path / "now").mkdir()
    (tmp_path / "ref").mkdir()
    now, ref = Bed(tmp_path / "now"), Bed(tmp_path / "ref")
    ref.engine.counters = _ReferenceCounters()
    rng = random.Random(19)
    try:
        for n in range(1500):
            step = rng.choice((0.05, 0.4, 3, 70, 3000)) if rng.random() > 0.01 else 86_400 * rng.choice((1, 17))
            now.clock.advance(step)
            ref.clock.advance(step)
            roll = rng.random()  # a new card every few sales, a few regulars all month, now and then none
            card = rng.randrange(n // 3, n // 3 + 6) if roll > 0.3 else rng.randrange(3) if roll > 0.05 else None
            kw = {"card_token": "" if card is None else f"{card:032X}",
                  "terminal_id": f"T{rng.randrange(4):07d}", "merchant_grade": rng.choice("ABCD"),
                  "pin_present": rng.random() < 0.2,
                  "flags": frozenset({"relay-suspected"}) if rng.random() < 0.03 else frozenset()}
            amount = rng.choice((1234, 99_00, 10_000 * rng.randrange(1, 30), 150_000, 4_000_000, 6_000_000))
            a, b = now.decide(amount, **kw), ref.decide(amount, **kw)
            assert (a.action, a.code, a.text, a.step_up, [h.as_dict() for h in a.hits]) == \
                (b.action, b.code, b.text, b.step_up, [h.as_dict() for h in b.hits]), n
            # every counter the rules could have read, not only those of the rules that fired
            assert [list(getattr(now.engine._snap, s)) for s in ("card", "terminal", "merchant")] == \
                [list(getattr(ref.engine._snap, s)) for s in ("card", "terminal", "merchant")], n
        now.store.flush()
        ref.store.flush()
        rows = "SELECT txn_id, at, terminal_id, merchant_id, card_token, amount, round, action, code, text, facts," \
               " hits FROM decisions ORDER BY seq"
        assert now.store._db.execute(rows).fetchall() == ref.store._db.execute(rows).fetchall()
    finally:
        now.close()
        ref.close()


def test_no_approval_while_the_store_cannot_keep_decisions_then_decisions_go_on(bed):
    """A decision store whose file takes no writes fills to its cap; from then on every
    transaction is declined 96 (a built-in gate, not a rule) rather than approved without its
    reasons kept. Once the file takes writes again, the backlog is written and sales pass."""
    bed.store.max_unwritten, bed.store.flush_every = 3, 1  # each decision a batch for the store's thread
    with writes_held(bed.store):  # another writer holds the file
        kept = [bed.decide(500) for _ in range(3)]
        assert [outcome(d) for d in kept] == [("pass", "")] * 3 and bed.store.backlogged
        refused = bed.decide(500)
        assert outcome(refused) == ("decline", "96")
        assert [h.rule for h in refused.hits] == ["risk-store-backlogged"]
        assert refused.text == "risk records cannot be written"
    bed.store.flush()
    assert not bed.store.backlogged
    after = bed.decide(500)
    assert outcome(after) == ("pass", "")
    assert [len(bed.engine.explain(d.txn_id)) for d in (*kept, refused, after)] == [1, 1, 1, 0, 1]
