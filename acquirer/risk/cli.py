"""`acquirer risk ...`: explain a decision, show the rules in force, freezes and holds.

Wire it into the `acquirer` parser with `register(sub)`; every command reads the host's
state directory (`--state`): risk.db, risk_rules.toml, and for an RRN registry.db and
ledger.db.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from .rules import RulesError, Status, parse_rules, rules_for_state
from .store import DecisionStore, StoredDecision

_CST = dt.timezone(dt.timedelta(hours=8), "CST")


def register(sub) -> None:
    risk = sub.add_parser("risk", help="risk engine: explain decisions, rules, freezes and holds").add_subparsers(
        dest="risk_command", required=True)
    p = risk.add_parser("explain", help="why a transaction was passed, stepped up or declined")
    p.add_argument("txn", help="transaction id TERMINAL:BATCH:STAN, or its 12-digit RRN")
    p.set_defaults(func=_cmd_explain)
    p = risk.add_parser("rules", help="the rules in force with their status (or why a file is refused)")
    p.add_argument("--file", help="check this file instead of the state's risk_rules.toml")
    p.set_defaults(func=_cmd_rules)
    risk.add_parser("holds", help="frozen merchants and held settlements").set_defaults(func=_cmd_holds)
    p = risk.add_parser("release", help="lift a merchant's freeze or settlement hold")
    p.add_argument("merchant_id")
    p.add_argument("--kind", choices=("freeze", "hold"), required=True)
    p.add_argument("--actor", default="operator")
    p.set_defaults(func=_cmd_release)


def _fail(message: str) -> int:
    print(f"acquirer: {message}", file=sys.stderr)
    return 2


def _store(args) -> DecisionStore:
    return DecisionStore(Path(args.state) / "risk.db")


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, _CST).strftime("%Y-%m-%d %H:%M:%S CST")


def resolve_txn(state: Path, txn: str) -> str | None:
    """A transaction id as given, or the one the ledger holds under this RRN."""
    if ":" in txn or not (len(txn) == 12 and txn.isdigit()):
        return txn
    if not (state / "ledger.db").exists() or not (state / "registry.db").exists():
        return None
    from acquirer.ledger import SQLiteLedger
    from acquirer.registry import Registry

    registry, ledger = Registry(state / "registry.db"), SQLiteLedger(state / "ledger.db")
    try:
        for terminal in registry.terminals():  # the RRN index answers each in one lookup
            found = ledger.find_original(terminal.terminal_id, rrn=txn)
            if found is not None:
                return found.txn_id
        return None
    finally:
        ledger.close()
        registry.close()


def _cmd_explain(args) -> int:
    state = Path(args.state)
    txn_id = resolve_txn(state, args.txn)
    if txn_id is None:
        return _fail(f"no transaction with RRN {args.txn} in the ledger")
    store = _store(args)
    try:
        decisions = store.decisions(txn_id)
    finally:
        store.close()
    if not decisions:
        return _fail(f"no risk decision stored for {txn_id} (a pass is written within half a second)")
    for n, d in enumerate(decisions, 1):
        print(format_decision(d, n, len(decisions)))
    return 0


def format_decision(d: StoredDecision, n: int = 1, of: int = 1) -> str:
    f, loc = d.facts, d.facts.get("location", {})
    lines = [f"{d.txn_id}  {_when(d.at)}" + (f"  (decision {n} of {of})" if of > 1 else ""),
             f"  terminal {d.terminal_id}  merchant {d.merchant_id} (grade {f.get('grade')}, mcc {f.get('mcc', '-')}"
             f"{', mobile' if f.get('mobile') else ''})  device {f.get('device') or '-'}",
             f"  card {f.get('masked_pan') or '-'}  token {d.card_token or '-'}  family {f.get('card_family') or '-'}",
             f"  amount {d.amount / 100:.2f} CNY  channel {f.get('channel')}  entry {f.get('entry_mode') or '-'}  "
             f"PIN {'yes' if f.get('pin') else 'no'}  flags {','.join(f.get('flags', [])) or '-'}"]
    if loc.get("status", "none") != "none":
        where = [loc["status"]]
        if loc.get("status") in ("inside", "outside") and loc.get("distance_m", -1) >= 0:
            where.append(f"{loc['distance_m']:.0f} m from the site, offset {loc.get('offset_m', 0):.0f} m")
        if loc.get("fix_age_s", -1) >= 0:
            where.append(f"fix {loc['fix_age_s']:.0f} s old")
        if loc.get("cells"):
            where.append(f"cells {loc['cells']}")
        if loc.get("refusal"):
            where.append(f"refused ({loc['refusal']}): {loc.get('reason', '')}")
        lines.append("  location " + ", ".join(where))
    outcome = d.action.upper()
    if d.code:
        outcome += f" ({d.code})"
    lines.append(f"  => {outcome}" + (f": {d.text}" if d.text else ""))
    lines.append(f"  rules {d.ruleset}:" if d.hits else f"  no rule hit (rules {d.ruleset})")
    for h in d.hits:
        values = " ".join(f"{k}={v!r}" for k, v in h["values"].items())
        lines.append(f"    {h['status']:7s} {h['rule']:28s} {h['action']:16s} {values}")
    return "\n".join(lines)


def _cmd_rules(args) -> int:
    path = Path(args.file) if args.file else rules_for_state(Path(args.state))
    try:
        rules = parse_rules(path.read_bytes(), str(path))
    except (RulesError, OSError) as exc:
        return _fail(f"rules refused (a running host keeps its last good rules): {exc}")
    print(f"{path}  version {rules.version}: {rules.count(Status.LIVE)} live, {rules.count(Status.TRIAL)} trial, "
          f"{rules.count(Status.RETIRED)} retired")
    for r in rules.rules:
        act = r.action.value + (f" {r.step_up}" if r.step_up else "") + (f" ({r.code})" if r.code else "")
        print(f"  {r.status.value:8s} {r.id:28s} {act:22s} when {r.condition.source}")
    return 0


def _cmd_holds(args) -> int:
    store = _store(args)
    try:
        holds = store.holds()
    finally:
        store.close()
    if not holds:
        print("no merchant frozen, no settlement held")
    for h in holds:
        what = "FROZEN" if h.kind == "freeze" else "settlement held"
        print(f"{h.merchant_id}  {what:16s} since {_when(h.at)}  rule {h.rule_id}  transaction {h.txn_id}")
    return 0


def _cmd_release(args) -> int:
    store = _store(args)
    try:
        released = store.release(args.merchant_id, args.kind, args.actor)
    finally:
        store.close()
    if not released:
        return _fail(f"merchant {args.merchant_id} has no {args.kind} in force")
    print(f"merchant {args.merchant_id}: {args.kind} released by {args.actor}")
    return 0
