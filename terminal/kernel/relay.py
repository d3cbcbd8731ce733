"""The relay ("through-object") defence: time every card answer and judge the timings.

A relay carries the card's radio exchange over a network to a victim card somewhere
else; every round trip then costs tens of milliseconds more than a card in the field,
which answers a SELECT or READ RECORD in a few milliseconds. The rule below is a pure
function over measured timings so that it can be tested with injected numbers; the
thresholds and why they are what they are: docs/kernel.md, "Relay defence".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

ACTION_ONLINE, ACTION_DECLINE = "online", "decline"


@dataclass(frozen=True)
class RelayPolicy:
    """Thresholds (ms) and what to do when they are crossed."""

    max_apdu_ms: float = 15.0  # a plain command: SELECT, READ RECORD, GET DATA
    max_crypto_apdu_ms: float = 200.0  # GPO / GENERATE AC: the chip signs or MACs first
    max_tap_ms: float = 500.0  # first APDU sent to last answer received
    slow_apdus_to_suspect: int = 2  # one late answer can be a scheduler hiccup; a relay slows all
    action: str = ACTION_ONLINE  # "online": go online with the flag; "decline": decline

    def __post_init__(self) -> None:
        for name in ("max_apdu_ms", "max_crypto_apdu_ms", "max_tap_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"relay.{name}: must be a number of milliseconds above 0")
        if isinstance(self.slow_apdus_to_suspect, bool) or not isinstance(self.slow_apdus_to_suspect, int) \
                or self.slow_apdus_to_suspect < 1:
            raise ValueError("relay.slow_apdus_to_suspect: must be a whole number, 1 or more")
        if self.action not in (ACTION_ONLINE, ACTION_DECLINE):
            raise ValueError(f"relay.action: must be {ACTION_ONLINE!r} or {ACTION_DECLINE!r}")


@dataclass(frozen=True)
class ApduTiming:
    """One command and the time its answer took (around `transmit`, GET RESPONSE included)."""

    command: str  # "SELECT PPSE", "SELECT AID", "GPO", "READ RECORD", "GENERATE AC", ...
    ms: float
    crypto: bool = False  # the card computes a cryptogram or a signature before answering
    start_ms: float = 0.0  # since the first APDU of the tap


@dataclass(frozen=True)
class RelayVerdict:
    suspected: bool
    reason: str = ""  # for logs and docs; the cashier sees a plainer text
    slow_commands: tuple[str, ...] = ()


def in_field_ms(timings: Sequence[ApduTiming]) -> float:
    """First command sent to last answer received; 0 with no command."""
    if not timings:
        return 0.0
    return max(t.start_ms + t.ms for t in timings) - min(t.start_ms for t in timings)


def assess(timings: Sequence[ApduTiming], policy: RelayPolicy) -> RelayVerdict:
    """Relay suspected when enough answers are late for their kind, or the tap is too long."""
    slow = tuple(t.command for t in timings
                 if t.ms > (policy.max_crypto_apdu_ms if t.crypto else policy.max_apdu_ms))
    total = in_field_ms(timings)
    if len(slow) >= policy.slow_apdus_to_suspect:
        return RelayVerdict(True, f"{len(slow)} card answers over their time limit", slow)
    if total > policy.max_tap_ms:
        return RelayVerdict(True, f"card in field {total:.0f} ms, limit {policy.max_tap_ms:.0f} ms", slow)
    return RelayVerdict(False, "", slow)


@dataclass
class TimedCard:
    """The card session with a stopwatch around every exchange.

    `session` is anything with `transmit(apdu) -> (data, sw)` (a `CardSession`).
    Errors from `transmit` (CardRemoved, ...) pass through untouched.
    """

    session: object
    clock: Callable[[], int] = time.perf_counter_ns
    timings: list[ApduTiming] = field(default_factory=list)
    _origin: int | None = None

    def exchange(self, command: str, apdu: bytes, crypto: bool = False) -> tuple[bytes, int]:
        start = self.clock()
        if self._origin is None:
            self._origin = start
        try:
            data, sw = self.session.transmit(apdu)
        finally:
            # A command the card never answered still took its time in the field.
            end = self.clock()
            self.timings.append(ApduTiming(command, (end - start) / 1e6, crypto, (start - self._origin) / 1e6))
        return bytes(data), int(sw)

    @property
    def in_field_ms(self) -> float:
        return in_field_ms(self.timings)
