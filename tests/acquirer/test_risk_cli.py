"""`acquirer risk ...` over a real state directory: explain by transaction id and by RRN,
the rules in force or why a file is refused, freezes and holds released by an operator."""
from __future__ import annotations

import argparse
import shutil

from acquirer.cli import build_parser
from acquirer.fence import cli as fence_cli
from acquirer.risk import DEFAULT_RULES, DecisionStore, RiskAssessor, RiskEngine, RuleFile, cli
from tests.acquirer.test_risk_engine import MERCHANT, Bed


def run(state, *argv) -> int:
    parser = argparse.ArgumentParser(prog="acquirer")
    parser.add_argument("--state")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--state", str(state), *argv])
    return args.func(args)


def test_the_commands_fit_into_the_acquirer_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, module in (("risk", cli), ("alerts", fence_cli)):
        if name not in sub.choices:  # once `acquirer.cli` wires them, they are already there
            module.register(sub)
    assert {"risk", "alerts", "fence"} <= set(sub.choices)
    assert parser.parse_args(["risk", "explain", "T0000001:000001:000001"]).txn == "T0000001:000001:000001"
    assert parser.parse_args(["alerts", "--review"]).review


def test_explain_shows_the_decision_and_every_rule_with_its_values(tmp_path, capsys):
    bed = Bed(tmp_path)
    d = bed.decide(150_000, location_status="inside", location_distance_m=120.0, location_fix_age_s=35.0)
    bed.close()
    assert run(tmp_path, "risk", "explain", d.txn_id) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("T0000001:000001:000001  2025-06-15 10:00:00 CST")
    assert "card 621498******0304" in out and "location inside, 120 m from the site" in out
    assert "=> STEP_UP (1A): PIN required above the no-PIN limit" in out
    assert "live    no-pin-limit" in out and "params.no_pin_limit=100000" in out
    assert run(tmp_path, "risk", "explain", "T0000001:000001:999999") == 2
    assert "no risk decision stored for T0000001:000001:999999" in capsys.readouterr().err


def test_explain_finds_a_transaction_by_its_rrn(lane, capsys):
    from tests.acquirer.conftest import TERMINAL

    svc = lane.host.service
    shutil.copy(DEFAULT_RULES, svc.state / "risk_rules.toml")
    store = DecisionStore(svc.state / "risk.db")
    svc.host.card_flows.risk = RiskAssessor(RiskEngine(RuleFile(svc.state / "risk_rules.toml"), store), svc.registry)
    out = lane.session.sale(700, lane.card_data(700))
    store.close()
    assert out.approved
    assert run(svc.state, "risk", "explain", out.rrn) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{TERMINAL}:{out.batch}:{out.stan}") and "=> PASS" in text
    assert lane.card.pan not in text
    assert run(svc.state, "risk", "explain", "999999999999") == 2


def test_rules_lists_statuses_or_says_why_a_file_is_refused(tmp_path, capsys):
    assert run(tmp_path, "risk", "rules") == 0  # the defaults are copied into the state
    out = capsys.readouterr().out
    assert "12 live, 4 trial, 1 retired" in out
    assert "trial    merchant-burst-freeze" in out and "retired  no-pin-limit-300" in out
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rule]]\nid = "x"\nwhen = "txn.amout > 1"\naction = "decline"\n')
    assert run(tmp_path, "risk", "rules", "--file", str(broken)) == 2
    assert "rule 'x': field 'when': unknown variable 'txn.amout'" in capsys.readouterr().err


def test_holds_are_listed_and_released_by_an_operator(tmp_path, capsys):
    bed = Bed(tmp_path)
    bed.clock.t += 13 * 3600  # 23:00: a large amount holds settlement
    bed.decide(600_000, pin_present=True)
    bed.close()
    assert run(tmp_path, "risk", "holds") == 0
    assert f"{MERCHANT}  settlement held" in capsys.readouterr().out
    assert run(tmp_path, "risk", "release", MERCHANT, "--kind", "hold", "--actor", "officer 7") == 0
    assert "hold released by officer 7" in capsys.readouterr().out
    assert run(tmp_path, "risk", "release", MERCHANT, "--kind", "hold") == 2
    assert run(tmp_path, "risk", "holds") == 0
    assert "no merchant frozen, no settlement held" in capsys.readouterr().out
