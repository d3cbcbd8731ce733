"""A provider channel's health: its score, the alerts that lower it, its circuit breaker.

After the Suning routing robot (case 44): every channel starts at 100; a success-rate
alert takes 20, a timeout alert 10; below 50 the channel is not used; once it has been
quiet (no alert) for a quiet period it gets 10 back, step by step, up to 100. Alerts
come from the built-in monitor (success rate over a sliding window, timeouts counted in
it) or from outside (`ChannelHealth.alert`, for an operations platform). The breaker is
separate and faster: consecutive channel failures open it for a while, then one result
decides whether it closes again. Everything reads the injected clock, so a test can walk
a channel down and back up without waiting.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ScorePolicy:
    start: int = 100
    success_rate_penalty: int = 20
    timeout_penalty: int = 10
    usable_from: int = 50  # a channel below this is not routed to
    recovery_step: int = 10
    quiet_period: float = 300.0  # seconds without an alert that earn one recovery step
    window: float = 60.0  # the success-rate window, seconds
    min_samples: int = 5  # no success-rate verdict on fewer calls than this
    success_threshold: float = 0.9  # below this success rate: an alert
    timeouts_for_alert: int = 3  # timeouts inside the window that make a timeout alert
    breaker_failures: int = 5  # consecutive channel failures that open the breaker
    breaker_open_seconds: float = 30.0


class AlertKind(str, enum.Enum):
    SUCCESS_RATE = "success_rate"
    TIMEOUT = "timeout"


class CallResult(str, enum.Enum):
    """How the channel itself did, whatever the customer's answer was.

    A decline for insufficient funds is OK here: the channel worked.
    """

    OK = "ok"
    FAILED = "failed"  # system error, 5xx, bad signature, unreachable
    TIMEOUT = "timeout"


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class ScorePoint:
    at: float
    score: int
    why: str


class ChannelHealth:
    def __init__(self, name: str, policy: ScorePolicy, clock: Callable[[], float]):
        self.name, self.policy, self.clock = name, policy, clock
        self._score = policy.start
        self._quiet_since = clock()
        self.trajectory: list[ScorePoint] = [ScorePoint(clock(), policy.start, "start")]
        self._samples: deque[tuple[float, bool]] = deque()
        self._timeouts: deque[float] = deque()
        self._failures = 0
        self._breaker = BreakerState.CLOSED
        self._opened_at = 0.0

    # --- score -------------------------------------------------------------------------
    @property
    def score(self) -> int:
        self._recover()
        return self._score

    def _recover(self) -> None:
        p, now = self.policy, self.clock()
        while self._score < p.start and now - self._quiet_since >= p.quiet_period:
            self._quiet_since += p.quiet_period
            self._score = min(p.start, self._score + p.recovery_step)
            self.trajectory.append(ScorePoint(self._quiet_since, self._score, "quiet: recovered"))
        if self._score >= p.start:
            self._quiet_since = max(self._quiet_since, now - p.quiet_period)

    def alert(self, kind: AlertKind) -> None:
        self._recover()
        penalty = (self.policy.success_rate_penalty if kind is AlertKind.SUCCESS_RATE
                   else self.policy.timeout_penalty)
        self._score = max(0, self._score - penalty)
        self._quiet_since = self.clock()
        self.trajectory.append(ScorePoint(self.clock(), self._score, f"{kind.value} alert"))

    # --- monitor and breaker ----------------------------------------------------------
    def record(self, result: CallResult) -> list[AlertKind]:
        """Count one call; returns the alerts it raised (already applied to the score)."""
        p, now = self.policy, self.clock()
        while self._samples and self._samples[0][0] < now - p.window:
            self._samples.popleft()
        while self._timeouts and self._timeouts[0] < now - p.window:
            self._timeouts.popleft()
        self._samples.append((now, result is CallResult.OK))
        raised = []
        if result is CallResult.TIMEOUT:
            self._timeouts.append(now)
            if len(self._timeouts) >= p.timeouts_for_alert:
                self._timeouts.clear()
                raised.append(AlertKind.TIMEOUT)
        ok = sum(1 for _, good in self._samples if good)
        if len(self._samples) >= p.min_samples and ok / len(self._samples) < p.success_threshold:
            self._samples.clear()  # the next verdict is on fresh calls
            raised.append(AlertKind.SUCCESS_RATE)
        for kind in raised:
            self.alert(kind)
        self._breaker_record(result is CallResult.OK)
        return raised

    @property
    def breaker(self) -> BreakerState:
        if self._breaker is BreakerState.OPEN and self.clock() - self._opened_at >= self.policy.breaker_open_seconds:
            self._breaker = BreakerState.HALF_OPEN  # let one call find out whether it is back
        return self._breaker

    def _breaker_record(self, ok: bool) -> None:
        state = self.breaker
        if ok:
            self._failures = 0
            self._breaker = BreakerState.CLOSED
            return
        self._failures += 1
        if state is BreakerState.HALF_OPEN or self._failures >= self.policy.breaker_failures:
            self._breaker, self._opened_at = BreakerState.OPEN, self.clock()

    def usable(self) -> tuple[bool, str]:
        if self.breaker is BreakerState.OPEN:
            return False, "circuit breaker open"
        score = self.score
        if score < self.policy.usable_from:
            return False, f"score {score} below {self.policy.usable_from}"
        return True, f"score {score}" + (", breaker half-open" if self._breaker is BreakerState.HALF_OPEN else "")
