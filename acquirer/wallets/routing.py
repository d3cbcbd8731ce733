"""Which provider route a wallet payment takes, and why (after case 44's routing robot).

Several provider channels reach each wallet. A decision walks the priority chain
designated > whitelist > product > channel (business source: pos, face, online) > pipe
(every channel of the wallet); the first layer with a usable candidate decides. A
candidate is usable when it is enabled (manual switch), its breaker is not open, its
score is at least 50, and the amount fits its per-transaction, daily and monthly
limits. Among the usable ones the best priority wins, and equal priorities share the
traffic in proportion to their scores (smooth weighted round-robin: deterministic, so
a lowered score means a lower hit rate, as in the case, without dice). Every decision
is kept and logged as one structured record with each candidate's verdict.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from .clock import cst
from .codes import Wallet
from .routing_state import RoutingState
from .scoring import AlertKind, CallResult, ChannelHealth, ScorePolicy

log = logging.getLogger("acquirer.wallets.routing")

LAYERS = ("designated", "whitelist", "product", "channel", "pipe")


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    wallet: Wallet
    priority: int = 1  # lower is preferred (cost, contract)
    products: frozenset[str] = frozenset({"micropay", "precreate"})
    per_txn_max: int | None = None  # fen
    daily_max: int | None = None
    monthly_max: int | None = None


@dataclass
class RoutingRules:
    whitelist: dict[str, tuple[str, ...]] = field(default_factory=dict)  # merchant id -> channels
    products: dict[str, tuple[str, ...]] = field(default_factory=dict)  # product -> channels
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # business channel -> channels


@dataclass(frozen=True)
class RouteRequest:
    order_id: str
    wallet: Wallet
    amount: int
    merchant_id: str = ""
    product: str = "micropay"
    source: str = "pos"
    designated: str | None = None
    exclude: frozenset[str] = frozenset()  # channels this order already failed on, not delivered


@dataclass(frozen=True)
class Verdict:
    layer: str
    channel: str
    usable: bool
    reason: str
    cause: str = ""  # why not: config, order, switch, health or limit


@dataclass(frozen=True)
class RoutingDecision:
    order_id: str
    wallet: str
    amount: int
    at: float
    chosen: str | None
    layer: str | None
    verdicts: tuple[Verdict, ...]
    outcome: str  # "routed", "over_limit" or "no_usable_channel"

    def record(self) -> dict:
        return asdict(self)


class Router:
    def __init__(self, channels: Iterable[ChannelSpec], rules: RoutingRules | None = None, *,
                 policy: ScorePolicy = ScorePolicy(), clock: Callable[[], float] = time.time,
                 state: RoutingState | None = None, keep: int = 1000):
        self.channels = {c.name: c for c in channels}
        self.rules = rules or RoutingRules()
        self.policy, self.clock = policy, clock
        self.state = state or RoutingState()
        self.health = {name: ChannelHealth(name, policy, clock) for name in self.channels}
        self.decisions: deque[RoutingDecision] = deque(maxlen=keep)
        self._weights: dict[frozenset[str], dict[str, int]] = {}

    # --- decisions ---------------------------------------------------------------------
    def choose(self, req: RouteRequest) -> RoutingDecision:
        disabled = self.state.disabled()
        verdicts: list[Verdict] = []
        chosen = layer_used = None
        for layer in LAYERS:
            candidates = self._candidates(layer, req)
            if not candidates:
                continue
            usable = []
            for name in candidates:
                ok, reason, cause = self._judge(name, req, disabled)
                verdicts.append(Verdict(layer, name, ok, reason, cause))
                if ok:
                    usable.append(name)
            if usable:
                chosen, layer_used = self._pick(usable), layer
                break
        if chosen:
            outcome = "routed"
        elif verdicts and all(v.cause in ("limit", "config") for v in verdicts) and \
                any(v.cause == "limit" for v in verdicts):
            outcome = "over_limit"
        else:
            outcome = "no_usable_channel"
        decision = RoutingDecision(req.order_id, req.wallet.value, req.amount, self.clock(), chosen, layer_used,
                                   tuple(verdicts), outcome)
        self.decisions.append(decision)
        log.info("route %s", json.dumps(decision.record(), ensure_ascii=False))
        return decision

    def _candidates(self, layer: str, req: RouteRequest) -> tuple[str, ...]:
        if layer == "designated":
            return (req.designated,) if req.designated else ()
        if layer == "whitelist":
            return self.rules.whitelist.get(req.merchant_id, ())
        if layer == "product":
            return self.rules.products.get(req.product, ())
        if layer == "channel":
            return self.rules.sources.get(req.source, ())
        return tuple(sorted(self.channels))

    def _judge(self, name: str, req: RouteRequest, disabled: dict[str, str]) -> tuple[bool, str, str]:
        spec = self.channels.get(name)
        if spec is None:
            return False, "unknown channel", "config"
        if spec.wallet is not req.wallet:
            return False, f"reaches {spec.wallet.value}, not {req.wallet.value}", "config"
        if req.product not in spec.products:
            return False, f"does not offer {req.product}", "config"
        if name in req.exclude:
            return False, "already failed for this order (not delivered)", "order"
        if name in disabled:
            return False, "disabled by operator" + (f": {disabled[name]}" if disabled[name] else ""), "switch"
        ok, reason = self.health[name].usable()
        if not ok:
            return False, reason, "health"
        if spec.per_txn_max is not None and req.amount > spec.per_txn_max:
            return False, f"per-transaction limit: {req.amount} > {spec.per_txn_max}", "limit"
        for limit, period, label in ((spec.daily_max, self._day(), "daily"), (spec.monthly_max, self._month(), "monthly")):
            if limit is not None:
                used = self.state.usage(name, period)
                if used + req.amount > limit:
                    return False, f"{label} limit: {used} used + {req.amount} > {limit}", "limit"
        return True, reason + f", priority {spec.priority}", ""

    def _pick(self, usable: list[str]) -> str:
        best = min(self.channels[n].priority for n in usable)
        group = sorted(n for n in usable if self.channels[n].priority == best)
        if len(group) == 1:
            return group[0]
        current = self._weights.setdefault(frozenset(group), {n: 0 for n in group})
        weights = {n: self.health[n].score for n in group}
        for n in group:
            current[n] += weights[n]
        chosen = max(group, key=lambda n: (current[n], -group.index(n)))
        current[chosen] -= sum(weights.values())
        return chosen

    def _day(self) -> str:
        return "D" + cst(self.clock()).strftime("%Y-%m-%d")

    def _month(self) -> str:
        return "M" + cst(self.clock()).strftime("%Y-%m")

    # --- feedback ----------------------------------------------------------------------
    def record(self, channel: str, result: CallResult) -> list[AlertKind]:
        """How one call on `channel` went: feeds its monitor (score) and its breaker."""
        if channel not in self.health:
            return []
        raised = self.health[channel].record(result)
        for kind in raised:
            log.warning("channel %s: %s alert, score now %d", channel, kind.value, self.health[channel].score)
        return raised

    def count_payment(self, channel: str, amount: int) -> None:
        """A payment that went through on `channel` counts against its daily and monthly limits."""
        self.state.add_usage(channel, (self._day(), self._month()), amount)

    def alert(self, channel: str, kind: AlertKind) -> None:
        """An alert from outside (the monitoring platform), applied as the monitor's own."""
        self.health[channel].alert(kind)
        log.warning("channel %s: external %s alert, score now %d", channel, kind.value, self.health[channel].score)

    def score(self, channel: str) -> int:
        return self.health[channel].score

    def disable(self, channel: str, reason: str = "", actor: str = "operator") -> None:
        if channel not in self.channels:
            raise KeyError(f"no channel named {channel!r}")
        self.state.set_switch(channel, True, reason, actor, self.clock())

    def enable(self, channel: str, reason: str = "", actor: str = "operator") -> None:
        if channel not in self.channels:
            raise KeyError(f"no channel named {channel!r}")
        self.state.set_switch(channel, False, reason, actor, self.clock())
