"""The acquirer's real-time risk engine (cases 67, 29, 49), separate from the pipeline step
that calls it.

    rules = RuleFile(rules_for_state(state))            # TOML, reloaded without a restart
    engine = RiskEngine(rules, DecisionStore(state / "risk.db"))
    decision = engine.decide(Facts(...))                # pass, step-up, decline, freeze, hold
    RiskAssessor(engine, registry, fences).assess(ctx)  # the pipeline hook CardFlows calls

Layout: `expr` (safe conditions), `variables` (facts and the variable catalogue),
`counters` (windowed), `rules` (the file, lifecycle, reload), `store` (decisions, holds),
`engine`, `assessor` (ISO8583 context <-> facts), `cli`. Details: docs/risk.md.
"""
from .assessor import RiskAssessor
from .engine import Decision, Hit, RiskEngine
from .rules import DEFAULT_RULES, Action, Rule, RuleFile, RulesError, RuleSet, Status, parse_rules, rules_for_state
from .store import DecisionStore, StoredDecision
from .variables import CATALOGUE, Facts

__all__ = [
    "RiskAssessor", "Decision", "Hit", "RiskEngine", "DEFAULT_RULES", "Action", "Rule", "RuleFile", "RulesError",
    "RuleSet", "Status", "parse_rules", "rules_for_state", "DecisionStore", "StoredDecision", "CATALOGUE", "Facts",
]
