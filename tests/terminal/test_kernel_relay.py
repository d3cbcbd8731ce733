"""The relay defence: the timing rule on injected timings, and the slow card end to end."""
from __future__ import annotations

import pytest

from hardware.errors import CardRemoved
from terminal.kernel import ApduTiming, Kernel, Outcome, RelayPolicy, TransactionRequest
from terminal.kernel.decisions import ARQC, TC, ActionCodes, quick_decision
from terminal.kernel.relay import RelayVerdict, TimedCard, assess, in_field_ms
from terminal.kernel.tvr import Tvr

from .kernel_helpers import field55, issuer_checks_arqc

POLICY = RelayPolicy(max_apdu_ms=15, max_crypto_apdu_ms=200, max_tap_ms=500, slow_apdus_to_suspect=2)


def tap_of(*ms: float, gpo_ms: float = 3.0) -> list[ApduTiming]:
    """SELECT PPSE, SELECT AID, GPO, then READ RECORDs, back to back."""
    names = ["SELECT PPSE", "SELECT AID", "GPO"] + ["READ RECORD"] * (len(ms) - 2)
    durations = [ms[0], ms[1], gpo_ms, *ms[2:]]
    out, start = [], 0.0
    for name, d in zip(names, durations, strict=True):
        out.append(ApduTiming(name, d, name == "GPO", start))
        start += d
    return out


def test_a_fast_tap_is_not_suspected():
    assert assess(tap_of(0.1, 0.1, 0.2, 0.2, 0.1, 0.1), POLICY) == RelayVerdict(False)


def test_one_late_answer_is_a_hiccup_two_are_a_relay():
    assert not assess(tap_of(0.1, 40, 0.2, 0.2), POLICY).suspected
    verdict = assess(tap_of(0.1, 40, 31, 0.2), POLICY)
    assert verdict.suspected and verdict.slow_commands == ("SELECT AID", "READ RECORD")
    single = RelayPolicy(max_apdu_ms=15, slow_apdus_to_suspect=1)
    assert assess(tap_of(0.1, 40, 0.2, 0.2), single).suspected


def test_the_threshold_itself_is_not_late():
    assert not assess(tap_of(15, 15, 15, 15), POLICY).suspected
    assert assess(tap_of(15.01, 15.01, 0.1, 0.1), POLICY).suspected


def test_a_signing_command_gets_its_own_longer_limit():
    assert not assess(tap_of(0.1, 0.1, 0.1, gpo_ms=150), POLICY).suspected
    slow_gpo = tap_of(0.1, 16, 0.1, gpo_ms=250)
    assert assess(slow_gpo, POLICY).slow_commands == ("SELECT AID", "GPO")


def test_a_tap_too_long_in_total_is_suspected_even_with_every_answer_in_time():
    timings = tap_of(*([14.0] * 40))
    assert in_field_ms(timings) > 500
    verdict = assess(timings, POLICY)
    assert verdict.suspected and "card in field" in verdict.reason and verdict.slow_commands == ()


def test_the_slow_profile_delay_is_far_above_the_default_threshold():
    slow_card = tap_of(*([30.1] * 6), gpo_ms=31)  # faulty-slow: 30 ms before every answer
    assert assess(slow_card, RelayPolicy()).suspected


@pytest.mark.parametrize("bad", [{"max_apdu_ms": 0}, {"max_tap_ms": -1}, {"slow_apdus_to_suspect": 0},
                                 {"action": "ignore"}, {"max_crypto_apdu_ms": "fast"}])
def test_nonsense_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="relay"):
        RelayPolicy(**bad)


class FakeSession:
    def __init__(self, clock, answers) -> None:
        self.clock, self.answers = clock, list(answers)

    def transmit(self, apdu):
        delay, answer = self.answers.pop(0)
        self.clock.now += int(delay * 1e6)
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    now = 1_000_000

    def __call__(self) -> int:
        return self.now


def test_timed_card_measures_around_transmit_even_when_the_card_vanishes():
    clock = FakeClock()
    card = TimedCard(FakeSession(clock, [(2.0, (b"", 0x9000)), (30.0, CardRemoved("gone"))]), clock=clock)
    card.exchange("SELECT PPSE", b"\x00\xa4\x04\x00")
    with pytest.raises(CardRemoved):
        card.exchange("READ RECORD", b"\x00\xb2\x01\x0c\x00")
    assert [t.ms for t in card.timings] == [2.0, 30.0] and card.in_field_ms == 32.0


def _codes() -> ActionCodes:
    zero = bytes(5)
    return ActionCodes(zero, zero, zero, zero, zero, zero)


@pytest.mark.parametrize("action,cid,expected", [
    ("online", ARQC, Outcome.ONLINE_REQUEST),
    ("online", TC, Outcome.DECLINED),  # a TC cannot go online: a suspect offline approval is refused
    ("decline", ARQC, Outcome.DECLINED),
])
def test_relay_action_per_configuration(action, cid, expected):
    policy = RelayPolicy(action=action)
    decision = quick_decision(cid, Tvr(), _codes(), "verified", b"\x00\x00", "NO_CVM",
                              RelayVerdict(True, "slow"), policy)
    assert decision.outcome is expected
    if expected is Outcome.DECLINED:
        assert "possible relay" in decision.reason


def test_slow_card_is_flagged_goes_online_and_the_flag_reaches_the_issuer(issuer, tap, make_config):
    _, hsm = issuer
    session, _ = tap("faulty-slow")
    config = make_config({"relay.max_apdu_ms": 15.0, "relay.action": "online"})
    result = Kernel(config).run(session, TransactionRequest(amount=2_000))
    assert result.relay_suspected and result.tvr[4] & 0x08
    assert result.outcome is Outcome.ONLINE_REQUEST and result.oda == "fDDA verified"
    # PPSE and SELECT were already late: the TVR sent at GPO says so, under the ARQC.
    assert field55(result)[0x95][4] & 0x08
    issuer_checks_arqc(hsm, "faulty-slow", result)


def test_slow_card_is_declined_when_so_configured(tap, make_config):
    session, _ = tap("faulty-slow")
    result = Kernel(make_config({"relay.action": "decline"})).run(session, TransactionRequest(amount=2_000))
    assert result.relay_suspected and result.outcome is Outcome.DECLINED
    assert result.reason == "card answered too slowly (possible relay attack), declined"


def test_a_suspected_relay_never_gets_an_offline_approval(tap, make_config):
    session, _ = tap("faulty-slow")
    config = make_config({"PBOC_SM4.floor_limit": 20_000, "relay.action": "online"})
    result = Kernel(config).run(session, TransactionRequest(amount=1_000))  # offline-able amount
    assert result.relay_suspected
    assert field55(result)[0x9F66][1] & 0x80  # TTQ: online cryptogram required
    assert result.cryptogram == "ARQC" and result.outcome is Outcome.ONLINE_REQUEST
