"""Risk rules: a TOML file, checked whole before it is used, reloaded while the host runs.

    [params]                      # named numbers, used as params.NAME
    [lists]                       # named lists (blacklists), used as lists.NAME
    [[rule]]
    id = "card-velocity"          # unique, lower-case letters, digits and dashes
    status = "live"               # trial (decide and log only) | live | retired; default trial
    when = "card.count_1m > params.taps_per_card_minute"
    action = "decline"            # pass | step_up | decline | freeze_merchant | hold_settlement
    code = "65"                   # response code for decline/freeze (default 59)
    step_up = "PIN"               # PIN | PASSCODE, for step_up
    text = "too many taps"        # for the cashier (ASCII, 60 characters at most)
    description = "..."

A file with any error is refused as a whole and the rules in force stay; the error names
the rule and the field. `RuleFile` looks at the file's size, inode and modification time
at most every `check_every_s` and reloads when they change.
"""
from __future__ import annotations

import enum
import hashlib
import logging
import os
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from acquirer.protocol import ResponseCode

from .expr import Condition, ExpressionError, compile_all, compile_condition
from .variables import CATALOGUE, HELPERS, Snapshot, sample_facts, scope_of

log = logging.getLogger("acquirer.risk")

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_RULE_KEYS = {"id", "status", "when", "action", "code", "step_up", "text", "description"}
_SOURCES = {name: v.source for name, v in CATALOGUE.items()}


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the rule and the field."""


class Status(str, enum.Enum):
    TRIAL = "trial"
    LIVE = "live"
    RETIRED = "retired"


class Action(str, enum.Enum):
    """Hot paths read a member's `_value_` (the plain string): `.value` is a Python-level
    property, and a dictionary keyed by members calls the enum's Python `__hash__`."""

    PASS = "pass"
    HOLD_SETTLEMENT = "hold_settlement"  # the transaction goes on; the merchant's money waits
    STEP_UP = "step_up"
    DECLINE = "decline"
    FREEZE_MERCHANT = "freeze_merchant"  # decline, and every later transaction of the merchant

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def blocks(self) -> bool:
        return self in BLOCKING


# module constants, not `Action.X` inside the properties: an enum's class attribute costs
# a lookup through its metaclass (about 150 ns), and `blocks` is read on every decision
BLOCKING = (Action.STEP_UP, Action.DECLINE, Action.FREEZE_MERCHANT)
_SEVERITY = {Action.PASS: 0, Action.HOLD_SETTLEMENT: 1, Action.STEP_UP: 2, Action.DECLINE: 3,
             Action.FREEZE_MERCHANT: 4}
_DEFAULT_CODE = {Action.STEP_UP: ResponseCode.STEP_UP_REQUIRED, Action.DECLINE: ResponseCode.SUSPECTED_FRAUD,
                 Action.FREEZE_MERCHANT: ResponseCode.SUSPECTED_FRAUD}


@dataclass(frozen=True)
class Rule:
    id: str
    status: Status
    action: Action
    condition: Condition
    code: str = ""  # response code when the rule blocks
    step_up: str = ""  # PIN or PASSCODE
    text: str = ""
    description: str = ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]  # file order, every status
    active: tuple[Rule, ...]  # trial and live, evaluated on every decision
    evaluate: Callable[[Any, Any], list[int]]  # (facts, snapshot) -> positions in `active` of the rules that fired
    scopes: tuple[str, ...]  # the counter scopes the active rules read
    version: str  # sha256 of the file's bytes, 12 hex digits
    source: str
    params: dict[str, Any]
    label: str  # file@version: what decisions record as the rules that decided them

    def count(self, status: Status) -> int:
        return sum(1 for r in self.rules if r.status is status)


def parse_rules(data: bytes, source: str = "<rules>") -> RuleSet:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"version", "params", "lists", "rule"}
    if unknown:
        raise RulesError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    constants = _constants(doc, source)
    rules, seen = [], set()
    for n, raw in enumerate(doc.get("rule", []), 1):
        rule = _rule(raw, n, constants, source)
        if rule.id in seen:
            raise RulesError(f"{source}: rule #{n}: id {rule.id!r} is used twice")
        seen.add(rule.id)
        rules.append(rule)
    active = tuple(r for r in rules if r.status is not Status.RETIRED)
    version = hashlib.sha256(data).hexdigest()[:12]
    names = list(dict.fromkeys(name for r in active for name in r.condition.variables))
    scopes = tuple(s for s in ("card", "terminal", "merchant") if any(scope_of(n) == s for n in names))
    params = {k.split(".", 1)[1]: v for k, v in constants.items() if k.startswith("params.")}
    evaluate = compile_all([r.condition.tree for r in active], HELPERS, f"{source}:all")
    return RuleSet(tuple(rules), active, evaluate, scopes, version, source, params, f"{Path(source).name}@{version}")


def _constants(doc: dict, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for space, kinds in (("params", (int, float, str, bool)), ("lists", (list,))):
        table = doc.get(space, {})
        if not isinstance(table, dict):
            raise RulesError(f"{source}: [{space}] must be a table")
        for key, value in table.items():
            if isinstance(value, list) and any(not isinstance(x, (int, str)) for x in value):
                raise RulesError(f"{source}: {space}.{key}: lists hold strings or whole numbers only")
            if not isinstance(value, kinds):
                raise RulesError(f"{source}: {space}.{key}: must be {'a list' if space == 'lists' else 'a value'}")
            out[f"{space}.{key}"] = value
    return out


def _rule(raw: Any, n: int, constants: dict, source: str) -> Rule:
    where = f"{source}: rule #{n}"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a table ([[rule]])")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise RulesError(f"{where}: field 'id': lower-case letters, digits and dashes, 48 at most")
    where = f"{source}: rule {rule_id!r}"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {sorted(unknown)}")

    def choice(name: str, enum_type, default=None):
        value = raw.get(name, default)
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(e.value for e in enum_type)
            raise RulesError(f"{where}: field {name!r}: {value!r} is not one of {allowed}") from None

    status = choice("status", Status, Status.TRIAL.value)  # a new rule without a status only watches
    action = choice("action", Action)
    try:
        condition = compile_condition(raw.get("when", ""), _SOURCES, constants, HELPERS, f"{source}:{rule_id}")
    except ExpressionError as exc:
        raise RulesError(f"{where}: field 'when': {exc}") from None
    try:
        condition.fn(sample_facts(), Snapshot())
    except Exception as exc:  # e.g. comparing a string with a number: refused now, not at 3 a.m.
        raise RulesError(f"{where}: field 'when': fails on sample values ({type(exc).__name__}: {exc})") from None
    code = raw.get("code", _DEFAULT_CODE[action].value if action in _DEFAULT_CODE else "")
    if action.blocks and (code not in ResponseCode._value2member_map_ or code == ResponseCode.APPROVED.value):
        raise RulesError(f"{where}: field 'code': {code!r} is not a refusal response code")
    if action is Action.STEP_UP and code != ResponseCode.STEP_UP_REQUIRED.value:
        raise RulesError(f"{where}: field 'code': a step-up answers 1A")
    if not action.blocks and "code" in raw:
        raise RulesError(f"{where}: field 'code': only decline, step_up and freeze_merchant answer a code")
    step_up = raw.get("step_up", "PIN" if action is Action.STEP_UP else "")
    if action is Action.STEP_UP and step_up not in ("PIN", "PASSCODE"):
        raise RulesError(f"{where}: field 'step_up': PIN or PASSCODE")
    text = raw.get("text", "")
    if not isinstance(text, str) or len(text) > 60 or not text.isascii():
        raise RulesError(f"{where}: field 'text': ASCII, 60 characters at most (it goes to field 44)")
    return Rule(rule_id, status, action, condition, code if action.blocks else "", step_up, text,
                str(raw.get("description", "")))


class RuleFile:
    """The rules in force, from a file watched for changes (no restart needed)."""

    def __init__(self, path: str | os.PathLike, *, check_every_s: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._monotonic = monotonic
        self._signature = self._stat()
        self.rules = parse_rules(self.path.read_bytes(), str(self.path))  # no good rules yet: fail loudly
        self.last_error = ""
        self.loaded_at = time.time()
        self._next_check = monotonic() + check_every_s

    def _stat(self):
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> RuleSet:
        now = self._monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_every_s
            self.reload_if_changed()
        return self.rules

    def reload_if_changed(self) -> bool:
        """True if new rules went live; a broken file keeps the old ones and says why once."""
        try:
            signature = self._stat()
        except OSError as exc:
            if self.last_error != str(exc):
                self.last_error = str(exc)
                log.error("risk rules %s unreadable, keeping version %s: %s", self.path, self.rules.version, exc)
            return False
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            rules = parse_rules(self.path.read_bytes(), str(self.path))
        except (RulesError, OSError) as exc:
            self.last_error = str(exc)
            log.error("risk rules refused, keeping version %s: %s", self.rules.version, exc)
            return False
        self.rules, self.last_error, self.loaded_at = rules, "", time.time()
        log.info("risk rules %s version %s in force: %d live, %d trial, %d retired", self.path, rules.version,
                 rules.count(Status.LIVE), rules.count(Status.TRIAL), rules.count(Status.RETIRED))
        return True


def rules_for_state(state: str | os.PathLike) -> Path:
    """The host's rules file in its state directory, created from the defaults once."""
    path = Path(state) / "risk_rules.toml"
    if not path.exists():
        path.write_bytes(DEFAULT_RULES.read_bytes())
    return path
