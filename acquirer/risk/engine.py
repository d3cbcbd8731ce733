"""The risk engine: facts in, a decision with its reasons out, in microseconds.

It knows nothing of ISO8583 or of the pipeline (`assessor.py` translates both ways), so
it can be called from the card flow, a QR or face flow, or a benchmark alike.

One decision:
  1. built-in gates that are not a policy choice: a frozen merchant, a location report
     refused as forged/replayed/foreign/impossible/stale, a required fix missing;
  2. every trial and live rule, evaluated in one call over the variables they read
     (the counters have already counted this transaction: one pass per tally);
  3. the most severe live hit wins (freeze > decline > step-up > hold > pass; file
     order breaks ties); trial hits are recorded and logged, never acted on;
  4. a blocked transaction's amount leaves the counters (its count stays), freezes
     and holds are placed, and the decision is stored with every hit and its values
     (`codec.capture` takes the facts; the store encodes them at its batch flush).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from acquirer.protocol import ResponseCode

from .codec import capture
from .counters import Counters, month_start
from .rules import Action, RuleFile, RuleSet, Status
from .store import FREEZE, HOLD, DecisionStore, StoredDecision
from .variables import CATALOGUE, ROUND_UNIT, Facts, Snapshot

log = logging.getLogger("acquirer.risk")

BUILTIN = "builtin"
_G1 = ResponseCode.GEOFENCE_VIOLATION.value
_FRAUD = ResponseCode.SUSPECTED_FRAUD.value
_TRIAL = Status.TRIAL.value


@dataclass(frozen=True)
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
        return self.action.blocks

    @property
    def trial_hits(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.status == Status.TRIAL.value)


def _jsonable(value: Any) -> Any:
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def _default_text(action: Action, code: str, step_up: str) -> str:
    if action is Action.STEP_UP:
        return f"{'PIN' if step_up == 'PIN' else 'payment passcode'} required"
    if action is Action.FREEZE_MERCHANT:
        return "merchant frozen by risk control"
    return ResponseCode(code).meaning if code else ""


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
        self._rebuild(clock())

    @property
    def rules(self) -> RuleSet:
        return self._rules.current() if isinstance(self._rules, RuleFile) else self._rules

    def _rebuild(self, now: float) -> None:
        """Counters from stored decisions: the month so far (and the last hour across a month start)."""
        for at, terminal, merchant, token, amount, rnd, action in self.store.since(min(month_start(now), now - 3600)):
            self.counters.add(token, terminal, merchant, at, 0 if Action(action).blocks else amount, rnd)

    def _refresh_holds(self) -> None:
        # holds may be released from the CLI in another process: look again now and then
        now = self._monotonic()
        if now >= self._next_holds:
            self._next_holds = now + self._holds_every_s
            self._holds = {(h.merchant_id, h.kind) for h in self.store.holds()}

    # --- one decision -----------------------------------------------------------------
    def decide(self, f: Facts) -> Decision:
        rs = self.rules
        self._refresh_holds()
        if not f.at:
            f.at = self.clock()
        at, amount = f.at, f.amount
        rnd = 1 if amount >= ROUND_UNIT and amount % ROUND_UNIT == 0 else 0
        # counted first (the rules see this transaction included); a blocked amount is taken back below
        tallies = card, terminal, merchant = self.counters.add(f.card_token, f.terminal_id, f.merchant_id, at,
                                                               amount, rnd)
        alone = None if card and terminal and merchant else (1, 1, 1, 1, amount, amount, amount, amount,
                                                               rnd, rnd, rnd, rnd)
        snap = Snapshot(card.v if card else alone, terminal.v if terminal else alone,
                        merchant.v if merchant else alone)
        try:
            fired = rs.evaluate(f, snap)
        except Exception:  # one rule failing at run time must not silence the others
            fired = self._one_by_one(rs, f, snap)
        hits = self._builtins(f)
        for i in fired:
            hits.append(self._hit(rs.active[i], f, snap))
        winner = None
        for h in hits:  # the most severe live hit; the first of equals
            if h.status != _TRIAL and (winner is None or h.action.severity > winner.action.severity):
                winner = h
        if winner is None:
            action, code, text, step_up = Action.PASS, "", "", ""
        else:
            action, text, code = winner.action, winner.text, ""
            step_up = winner.values.get("step_up", "") if action is Action.STEP_UP else ""
            if action.blocks:
                code = winner.code
                for tally in tallies:  # the amount of a blocked transaction does not count
                    if tally is not None:
                        tally.uncount_amount(amount)
            self._side_effects(f, hits)
        hits = tuple(hits)
        decision = Decision(f.txn_id, at, action, code, text, step_up, hits, rs.version)
        self.store.record((f.txn_id, at, f.terminal_id, f.merchant_id, f.card_token, amount, rnd, action.value,
                           code, text, rs.label, capture(f), f.flags, hits))
        if hits:
            self._log(decision)
        return decision

    @staticmethod
    def _hit(rule, f: Facts, snap: Snapshot) -> Hit:
        values = {n: _jsonable(CATALOGUE[n].get(f, snap)) for n in rule.condition.variables}
        # params show with their values; a blacklist is not copied into every hit
        values.update((k, c) for k, c in rule.condition.constants if not isinstance(c, list))
        if rule.step_up:
            values["step_up"] = rule.step_up
        return Hit(rule.id, rule.status.value, rule.action, rule.code,
                   rule.text or _default_text(rule.action, rule.code, rule.step_up), values)

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
        if (f.merchant_id, FREEZE) in self._holds:
            hits.append(Hit("merchant-frozen", BUILTIN, Action.DECLINE, _FRAUD, "merchant frozen by risk control",
                            {"merchant.id": f.merchant_id}))
        if f.location_status == "refused":
            hits.append(Hit("location-refused", BUILTIN, Action.DECLINE, _G1, f.location_reason[:60],
                            {"location.refusal": f.location_refusal, "location.reason": f.location_reason}))
        elif f.location_status == "missing" and f.location_required:
            hits.append(Hit("location-required", BUILTIN, Action.DECLINE, _G1, "no signed location: fix required",
                            {"location.status": "missing", "location.required": True}))
        return hits

    def _side_effects(self, f: Facts, hits: list[Hit]) -> None:
        for h in hits:
            if h.status == _TRIAL or h.action not in (Action.FREEZE_MERCHANT, Action.HOLD_SETTLEMENT):
                continue
            kind = FREEZE if h.action is Action.FREEZE_MERCHANT else HOLD
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
        if d.action is not Action.PASS:
            rules = ",".join(h.rule for h in d.hits if h.status != Status.TRIAL.value and h.action is d.action)
            log.info("risk %s: %s %s (%s)", d.txn_id, d.action.value, d.code, rules)

    def explain(self, txn_id: str) -> list[StoredDecision]:
        return self.store.decisions(txn_id)

    def flush(self) -> None:
        self.store.flush()

