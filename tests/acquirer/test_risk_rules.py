"""Risk rules files: every error names the rule and the field, nothing in a file can run code,
a changed file goes live without a restart, a broken one keeps the last good rules, and a
trial rule decides without blocking until it is switched live."""
from __future__ import annotations

import logging

import pytest

from acquirer.risk import DEFAULT_RULES, Facts, RuleFile, RulesError, Status, parse_rules
from acquirer.risk.variables import Snapshot
from tests.acquirer.test_risk_engine import Bed, set_status

BASE = b'[params]\nlimit = 100\n[lists]\nbad = ["A", "B"]\n'


def rule(**fields) -> bytes:
    body = "".join(f'{k} = {v}\n' for k, v in fields.items())
    return BASE + b"[[rule]]\n" + body.encode()


def test_the_default_rules_load():
    rules = parse_rules(DEFAULT_RULES.read_bytes(), "default")
    assert (rules.count(Status.LIVE), rules.count(Status.TRIAL), rules.count(Status.RETIRED)) == (12, 4, 1)
    assert "no-pin-limit-300" not in [r.id for r in rules.active]
    assert rules.params["no_pin_limit"] == 100_000


@pytest.mark.parametrize("fields, message", [
    (dict(id='"x"', when='"card.cnt_1m > 5"', action='"decline"'),
     "rule 'x': field 'when': unknown variable 'card.cnt_1m'"),
    (dict(id='"x"', when='''"__import__('os').system('true')"''', action='"decline"'), "call is not allowed"),
    (dict(id='"x"', when='"(lambda: 1)() == 1"', action='"decline"'), "not allowed"),
    (dict(id='"x"', when='''"'abc'.upper == 1"''', action='"decline"'), "attributes may only follow a name"),
    (dict(id='"x"', when='''"txn.flags[0] == 'a'"''', action='"decline"'), "subscript is not allowed"),
    (dict(id='"x"', when='"card.token > 5"', action='"decline"'), "fails on sample values (TypeError"),
    (dict(id='"x"', when='"txn.amount > params.nope"', action='"decline"'), "unknown constant 'params.nope'"),
    (dict(id='"x"', when='"txn.amount >"', action='"decline"'), "field 'when': syntax error"),
    (dict(id='"x"', status='"liv"', when='"txn.amount > 1"', action='"decline"'),
     "field 'status': 'liv' is not one of trial, live, retired"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"block"'), "field 'action': 'block' is not one of"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"decline"', code='"00"'), "not a refusal response code"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"step_up"', code='"59"'), "a step-up answers 1A"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"step_up"', step_up='"SMS"'), "PIN or PASSCODE"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"pass"', code='"59"'), "only decline, step_up and freeze"),
    (dict(id='"x"', staus='"live"', when='"txn.amount > 1"', action='"decline"'), "unknown field(s) ['staus']"),
    (dict(id='"Not An Id"', when='"txn.amount > 1"', action='"decline"'), "rule #1: field 'id'"),
    (dict(id='"x"', when='"txn.amount > 1"', action='"decline"', text='"' + "x" * 61 + '"'), "field 'text'"),
])
def test_a_bad_rule_is_refused_with_its_name_and_field(fields, message):
    with pytest.raises(RulesError) as exc:
        parse_rules(rule(**fields), "r.toml")
    assert message in str(exc.value)


def test_file_level_errors_are_refused():
    with pytest.raises(RulesError, match="not valid TOML"):
        parse_rules(b"[[rule]\n", "r.toml")
    with pytest.raises(RulesError, match="id 'x' is used twice"):
        parse_rules(rule(id='"x"', when='"txn.amount > 1"', action='"pass"') +
                    b'[[rule]]\nid = "x"\nwhen = "txn.amount > 2"\naction = "pass"\n', "r.toml")
    with pytest.raises(RulesError, match="unknown top-level key"):
        parse_rules(b"rules = 1\n", "r.toml")


def test_a_rule_without_status_only_watches_and_lists_fold_into_constants():
    rules = parse_rules(rule(id='"x"', when='"card.token in lists.bad and txn.amount > params.limit"',
                             action='"decline"'), "r.toml")
    (only,) = rules.rules
    assert only.status is Status.TRIAL and only.code == "59"
    facts = Facts("T:1:1", "T0000001", "M", 101, card_token="A")
    assert rules.evaluate(facts, Snapshot()) == [0]
    facts.card_token = "C"
    assert rules.evaluate(facts, Snapshot()) == []


def test_a_changed_file_goes_live_without_a_restart(tmp_path):
    bed = Bed(tmp_path)
    try:
        assert bed.decide(100_001).action.value == "step_up"
        bed.edit(lambda t: t.replace("no_pin_limit = 100000", "no_pin_limit = 200000"))
        assert bed.decide(100_001).action.value == "pass"
        assert bed.rules.rules.params["no_pin_limit"] == 200_000
    finally:
        bed.close()


def test_a_broken_file_keeps_the_last_good_rules_and_says_why(tmp_path, caplog):
    bed = Bed(tmp_path)
    good = bed.rules.rules.version
    try:
        with caplog.at_level(logging.ERROR, "acquirer.risk"):
            bed.edit(lambda t: t.replace('when = "txn.amount > params.single_limit"',
                                         'when = "txn.amount > params.singel_limit"'))
            assert bed.decide(5_000_001, pin_present=True).code == "61"  # the old single limit still applies
        assert bed.rules.rules.version == good
        assert "rule 'single-limit': field 'when': unknown constant 'params.singel_limit'" in bed.rules.last_error
        assert "keeping version " + good in caplog.text
        bed.edit(lambda t: t.replace("params.singel_limit", "params.single_limit")
                 .replace("single_limit = 5000000", "single_limit = 9000000"))
        assert bed.decide(5_000_001, pin_present=True).action.value == "pass"
        assert bed.rules.last_error == ""
        bed.path.unlink()  # gone altogether: still the last good rules
        assert bed.decide(9_000_001, pin_present=True).code == "61"
    finally:
        bed.close()


def test_the_file_is_looked_at_no_more_often_than_asked(tmp_path):
    now = [0.0]
    path = tmp_path / "r.toml"
    path.write_bytes(DEFAULT_RULES.read_bytes())
    rules = RuleFile(path, check_every_s=1.0, monotonic=lambda: now[0])
    first = rules.current().version
    path.write_bytes(DEFAULT_RULES.read_bytes() + b"\n# changed\n")
    assert rules.current().version == first
    now[0] = 1.0
    assert rules.current().version != first


def test_a_trial_rule_decides_but_never_blocks_until_switched_live(tmp_path, caplog):
    bed = Bed(tmp_path)
    try:
        grade = dict(merchant_grade="D")
        bed.edit(lambda t: t.replace("merchant_burst_per_minute = 60", "merchant_burst_per_minute = 2"))
        with caplog.at_level(logging.INFO, "acquirer.risk"):
            decisions = [bed.decide(100, card_token=f"C{i}", **grade) for i in range(3)]
        assert [d.action.value for d in decisions] == ["pass"] * 3
        assert [h.rule for h in decisions[2].trial_hits] == ["merchant-burst-freeze"]
        assert "trial rule merchant-burst-freeze would freeze_merchant" in caplog.text
        assert bed.store.holds() == []  # a trial freeze freezes nothing
        stored = bed.engine.explain(decisions[2].txn_id)[0]
        assert [(h["rule"], h["status"]) for h in stored.hits] == [("merchant-burst-freeze", "trial")]
        bed.edit(lambda t: set_status(t, "merchant-burst-freeze", "live"))
        assert bed.decide(100, card_token="C9", **grade).action.value == "freeze_merchant"
        bed.edit(lambda t: set_status(t, "merchant-burst-freeze", "retired"))
        assert bed.decide(100, card_token="C10", merchant_id="898440358120002", **grade).action.value == "pass"
    finally:
        bed.close()


def test_docs_list_every_variable():
    from pathlib import Path

    from acquirer.risk import CATALOGUE
    from acquirer.risk.variables import scope_of

    text = (Path(__file__).parents[2] / "docs" / "risk.md").read_text()
    missing = [n for n in CATALOGUE if scope_of(n) is None and f"`{n}`" not in text]
    assert missing == []
