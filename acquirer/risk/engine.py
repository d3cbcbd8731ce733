"""The risk engine: facts in, a decision with its reasons out, in microseconds.

It knows nothing of ISO8583 or of the pipeline (`assessor.py` translates both ways), so
it can be called from the card flow, a QR or face flow, or a benchmark alike.

One decision:
  1. built-in gates that are not a policy choice: a frozen merchant, a location report
     refused as forged/replayed/foreign/impossible/stale, a required fix missing, a
     decision store that cannot keep what it decides (96: no approval without its reasons);
  2. every trial and live rule, evaluated in one call over the variables they read
     (the counters have already counted this transaction: one pass per tally);
  3. the most severe live hit wins (freeze > decline > step-up > hold > pass; file
     order breaks ties); trial hits are recorded and logged, never acted on;
  4. a blocked transaction's amount leaves the counters (its count stays), freezes
     and holds are placed, and the decision is stored with every hit and its values
     (`codec.capture` takes the facts; the store encodes them when a batch fills).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from acquirer.protocol import ResponseCode

from .codec import capture
from .counters import Counters, month_start
from .rules import BLOCKING, Action, Rule, RuleFile, RuleSet, Status
from .store import FREEZE, HOLD, DecisionStore, StoredDecision
from .variables import CATALOGUE, HELPERS, ROUND_UNIT, Facts, Snapshot, sample_facts

log = logging.getLogger("acquirer.risk")

BUILTIN = "builtin"
_G1 = ResponseCode.GEOFENCE_VIOLATION.value
_FRAUD = ResponseCode.SUSPECTED_FRAUD.value
_SYSTEM = ResponseCode.SYSTEM_ERROR.value
_TRIAL = Status.TRIAL.value
# members read on every decision, looked up once (an enum class attribute costs ~150 ns)
_PASS, _STEP_UP, _DECLINE = Action.PASS, Action.STEP_UP, Action.DECLINE
_FREEZE_MERCHANT, _HOLD_SETTLEMENT = Action.FREEZE_MERCHANT, Action.HOLD_SETTLEMENT
_DECLINE_SEVERITY = _DECLINE.severity
_HOLDING = (_FREEZE_MERCHANT, _HOLD_SETTLEMENT)


@dataclass(slots=True)  # not frozen, as `Decision`: a frozen dataclass's __init__ costs ~1 us more per hit
class Hit:
    rule: str
    status: str  # live, trial or builtin
    action: Action
    code: str
    text: str
    values: dict[str, Any]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "status": self.status, "action": self.action.value, "code": self.code,
                "text": self.text, "values": self.values}


@dataclass(slots=True)  # not frozen: a frozen dataclass costs microseconds per instance here
class Decision:
    txn_id: str
    at: float
    action: Action
    code: str  # the response code when the decision blocks; "" when the transaction goes on
    text: str
    step_up: str  # PIN or PASSCODE for a step-up
    hits: tuple[Hit, ...]
    ruleset: str

    @property
    def blocks(self) -> bool:
        return self.action in BLOCKING

    @property
    def trial_hits(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.status == _TRIAL)


def _jsonable(value: Any) -> Any:
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def _default_text(action: Action, code: str, step_up: str) -> str:
    if action is Action.STEP_UP:
        return f"{'PIN' if step_up == 'PIN' else 'payment passcode'} required"
    if action is Action.FREEZE_MERCHANT:
        return "merchant frozen by risk control"
    return ResponseCode(code).meaning if code else ""


class _Plan:
    """What a hit of one active rule holds besides its values, worked out once per rules
    version rather than per hit (status string, default text, severity: enum lookups)."""

    __slots__ = ("rule", "status", "action", "code", "text", "severity", "live", "values")

    def __init__(self, rule: Rule):
        self.rule, self.status, self.action, self.code = rule.id, rule.status.value, rule.action, rule.code
        self.text = rule.text or _default_text(rule.action, rule.code, rule.step_up)
        self.severity = rule.action.severity
        self.live = rule.status is not Status.TRIAL
        self.values = _values_function(rule)


def _values_function(rule: Rule) -> Callable[[Facts, Snapshot], dict[str, Any]]:
    """`Hit.values` of a rule as one dictionary display: each variable its condition reads
    (the catalogue's own expression; a set as a sorted list), then the params it uses (a
    list constant, a blacklist, is not copied into every hit), then its step-up; in that
    order, as `risk explain` has always shown them."""
    static = {name: c for name, c in rule.condition.constants if not isinstance(c, list)}
    if rule.step_up:
        static["step_up"] = rule.step_up
    sample, empty = sample_facts(), Snapshot()
    items = []
    for name in rule.condition.variables:
        variable = CATALOGUE[name]
        source = variable.source
        if isinstance(variable.get(sample, empty), (set, frozenset)):
            source = f"_jsonable({source})"
        items.append(f"{name!r}: {source}")
    if static:
        items.append("**_static")
    scope = {**HELPERS, "__builtins__": {}, "_jsonable": _jsonable, "_static": static}
    return eval(f"lambda f, s: {{{', '.join(items)}}}", scope)  # noqa: S307 - our catalogue's expressions


class RiskEngine:
    def __init__(self, rules: RuleFile | RuleSet, store: DecisionStore, *, clock=time.time,
                 monotonic=time.monotonic, holds_every_s: float = 1.0):
        self._rules = rules
        self.store = store
        self.clock = clock
        self._monotonic = monotonic
        self._holds_every_s = holds_every_s
        self._next_holds = 0.0
        self._holds: set[tuple[str, str]] = set()  # (merchant, freeze|hold) in force
        self.counters = Counters()
        self._plans: tuple[_Plan, ...] = ()
        self._planned: RuleSet | None = None  # the rules `_plans` were made for
        # the counter values the rules read, refilled per decision (decisions are made one at a
        # time, and nothing keeps the snapshot once `decide` returns)
        self._snap = Snapshot()
        self._rebuild(clock())

    @property
    def rules(self) -> RuleSet:
        return self._rules.current() if isinstance(self._rules, RuleFile) else self._rules

    def _rebuild(self, now: float) -> None:
        """Counters from stored decisions: the month so far (and the last hour across a month start)."""
        for at, terminal, merchant, token, amount, rnd, action in self.store.since(min(month_start(now), now - 3600)):
            self.counters.add(token, terminal, merchant, at, 0 if Action(action).blocks else amount, rnd)

    def _refresh_holds(self, now: float) -> None:
        # holds may be released from the CLI in another process: look again now and then
        self._next_holds = now + self._holds_every_s
        self._holds = {(h.merchant_id, h.kind) for h in self.store.holds()}

    def _plan(self, rs: RuleSet) -> tuple[_Plan, ...]:
        self._plans, self._planned = tuple(_Plan(r) for r in rs.active), rs
        return self._plans

    # --- one decision -----------------------------------------------------------------
    def decide(self, f: Facts) -> Decision:
        rules = self._rules
        rs = rules.current() if isinstance(rules, RuleFile) else rules
        plans = self._plans if self._planned is rs else self._plan(rs)
        now = self._monotonic()
        if now >= self._next_holds:
            self._refresh_holds(now)
        at = f.at
        if not at:
            at = f.at = self.clock()
        amount = f.amount
        rnd = 1 if amount >= ROUND_UNIT and amount % ROUND_UNIT == 0 else 0
        # counted first (the rules see this transaction included); a blocked amount is taken back below
        tallies = card, terminal, merchant = self.counters.add(f.card_token, f.terminal_id, f.merchant_id, at,
                                                               amount, rnd)
        snap = self._snap
        if card and terminal and merchant:
            snap.card, snap.terminal, snap.merchant = card.v, terminal.v, merchant.v
        else:
            alone = (1, 1, 1, 1, amount, amount, amount, amount, rnd, rnd, rnd, rnd)
            snap.card = card.v if card else alone
            snap.terminal = terminal.v if terminal else alone
            snap.merchant = merchant.v if merchant else alone
        try:
            fired = rs.evaluate(f, snap)
        except Exception:  # one rule failing at run time must not silence the others
            fired = self._one_by_one(rs, f, snap)
        hits = self._builtins(f)
        # the most severe live hit wins, the first of equals; the built-in gates (live
        # declines) come first, and a live `pass` rule that fires is a winner too
        winner, severity = (hits[0], _DECLINE_SEVERITY) if hits else (None, -1)
        for i in fired:
            p = plans[i]
            hit = Hit(p.rule, p.status, p.action, p.code, p.text, p.values(f, snap))
            hits.append(hit)
            if p.live and p.severity > severity:
                winner, severity = hit, p.severity
        if winner is None:
            action, code, text, step_up = _PASS, "", "", ""
        else:
            action, text, code = winner.action, winner.text, ""
            step_up = winner.values.get("step_up", "") if action is _STEP_UP else ""
            if action in BLOCKING:
                code = winner.code
                for tally in tallies:  # the amount of a blocked transaction does not count
                    if tally is not None:
                        tally.uncount_amount(amount)
            self._side_effects(f, hits)
        hits = tuple(hits)
        decision = Decision(f.txn_id, at, action, code, text, step_up, hits, rs.version)
        self.store.record((f.txn_id, at, f.terminal_id, f.merchant_id, f.card_token, amount, rnd, action._value_,
                           code, text, rs.label, capture(f), f.flags, hits))
        if hits and log.isEnabledFor(logging.INFO):  # nothing to build for a log line nobody keeps
            self._log(decision)
        return decision

    def _one_by_one(self, rs: RuleSet, f: Facts, snap: Snapshot) -> list[int]:
        out = []
        for i, rule in enumerate(rs.active):
            try:
                if rule.condition.fn(f, snap):
                    out.append(i)
            except Exception as exc:
                log.error("risk rule %s failed, counted as not hit: %s: %s", rule.id, type(exc).__name__, exc)
        return out

    def _builtins(self, f: Facts) -> list[Hit]:
        hits = []
        if self._holds and (f.merchant_id, FREEZE) in self._holds:
            hits.append(Hit("merchant-frozen", BUILTIN, _DECLINE, _FRAUD, "merchant frozen by risk control",
                            {"merchant.id": f.merchant_id}))
        status = f.location_status
        if status == "refused":
            hits.append(Hit("location-refused", BUILTIN, _DECLINE, _G1, f.location_reason[:60],
                            {"location.refusal": f.location_refusal, "location.reason": f.location_reason}))
        elif status == "missing" and f.location_required:
            hits.append(Hit("location-required", BUILTIN, _DECLINE, _G1, "no signed location: fix required",
                            {"location.status": "missing", "location.required": True}))
        if self.store.backlogged:  # its reasons could not be kept: no approval without them (risk/store.py)
            hits.append(Hit("risk-store-backlogged", BUILTIN, _DECLINE, _SYSTEM, "risk records cannot be written",
                            {"risk.unwritten": self.store.max_unwritten}))
        return hits

    def _side_effects(self, f: Facts, hits: list[Hit]) -> None:
        for h in hits:
            if h.status == _TRIAL or h.action not in _HOLDING:
                continue
            kind = FREEZE if h.action is _FREEZE_MERCHANT else HOLD
            if (f.merchant_id, kind) in self._holds:
                continue  # already in force: nothing to write
            self._holds.add((f.merchant_id, kind))
            if self.store.place_hold(f.merchant_id, kind, h.rule, f.txn_id, f.at):
                log.warning("merchant %s %s by risk rule %s (transaction %s)", f.merchant_id,
                            "frozen" if kind == FREEZE else "settlement held", h.rule, f.txn_id)

    @staticmethod
    def _log(d: Decision) -> None:
        for h in d.trial_hits:
            log.info("risk %s: trial rule %s would %s", d.txn_id, h.rule, h.action.value)
        if d.action is not _PASS:
            rules = ",".join(h.rule for h in d.hits if h.status != _TRIAL and h.action is d.action)
            log.info("risk %s: %s %s (%s)", d.txn_id, d.action.value, d.code, rules)

    def explain(self, txn_id: str) -> list[StoredDecision]:
        return self.store.decisions(txn_id)

    def flush(self) -> None:
        self.store.flush()

