"""Windowed counters per card, terminal and merchant, kept in memory.

Each key has a `Tally`: the last 60 s exactly (a deque of events), the last hour in
minute buckets, the calendar day and month (China Standard Time). Running sums make
every read O(1) amortised, which is what lets a decision take microseconds.

Nothing here is written to disk: the decision store holds every decision with its
keys, amount and outcome, and the engine rebuilds the tallies from it when the host
starts (`RiskEngine._rebuild`: the month so far).
"""
from __future__ import annotations

import datetime as dt
from collections import deque
from functools import lru_cache

SCOPES = ("card", "terminal", "merchant")
METRICS = ("count", "amount", "round")
WINDOWS = ("1m", "1h", "1d", "month")
_OFFSET_S = 8 * 3600  # China Standard Time, no daylight saving (as the ledger's BUSINESS_TZ)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
ZERO = (0,) * 12


def stat_index(metric: str, window: str) -> int:
    return METRICS.index(metric) * 4 + WINDOWS.index(window)


def day_of(t: float) -> int:
    return int((t + _OFFSET_S) // 86400)


@lru_cache(maxsize=1024)
def month_of_day(day: int) -> int:
    d = dt.date.fromordinal(_EPOCH_ORDINAL + day)
    return d.year * 12 + d.month - 1


def month_start(t: float) -> float:
    """Epoch seconds of the start of `t`'s business month."""
    d = dt.date.fromordinal(_EPOCH_ORDINAL + day_of(t)).replace(day=1)
    return (d.toordinal() - _EPOCH_ORDINAL) * 86400 - _OFFSET_S


class Tally:
    __slots__ = ("recent", "m", "buckets", "h", "day", "d", "month", "mo", "rolled_at")

    def __init__(self) -> None:
        self.recent: deque = deque()  # (t, amount, round) within the last 60 s
        self.m = [0, 0, 0]  # count, amount, round over `recent`
        self.buckets: deque = deque()  # [minute, count, amount, round] within the last 60 minutes
        self.h = [0, 0, 0]
        self.day, self.d = -1, [0, 0, 0]
        self.month, self.mo = -1, [0, 0, 0]
        self.rolled_at = -1.0

    def _roll(self, t: float) -> None:
        if t == self.rolled_at:
            return
        self.rolled_at = t
        recent, m = self.recent, self.m
        while recent and recent[0][0] <= t - 60:
            _, amount, rnd = recent.popleft()
            m[0] -= 1
            m[1] -= amount
            m[2] -= rnd
        buckets, h, minute = self.buckets, self.h, int(t // 60)
        while buckets and buckets[0][0] <= minute - 60:
            _, c, a, r = buckets.popleft()
            h[0] -= c
            h[1] -= a
            h[2] -= r
        day = int((t + _OFFSET_S) // 86400)
        if day > self.day:  # a clock stepping back must not wipe today
            self.day, self.d = day, [0, 0, 0]
            month = month_of_day(day)
            if month > self.month:
                self.month, self.mo = month, [0, 0, 0]

    def snapshot(self, t: float) -> tuple:
        """(count, amount, round) x (1m, 1h, 1d, month), flattened metric-major."""
        self._roll(t)
        m, h, d, mo = self.m, self.h, self.d, self.mo
        return (m[0], h[0], d[0], mo[0], m[1], h[1], d[1], mo[1], m[2], h[2], d[2], mo[2])

    def add(self, t: float, amount: int, rnd: int) -> None:
        self._roll(t)
        self.recent.append((t, amount, rnd))
        minute = int(t // 60)
        buckets = self.buckets
        if buckets and buckets[-1][0] >= minute:
            b = buckets[-1]
            b[1] += 1
            b[2] += amount
            b[3] += rnd
        else:
            buckets.append([minute, 1, amount, rnd])
        m, h, d, mo = self.m, self.h, self.d, self.mo
        m[0] += 1
        h[0] += 1
        d[0] += 1
        mo[0] += 1
        if amount:
            m[1] += amount
            h[1] += amount
            d[1] += amount
            mo[1] += amount
        if rnd:
            m[2] += 1
            h[2] += 1
            d[2] += 1
            mo[2] += 1

    def idle_since(self, minute: int) -> bool:
        """Nothing in the last hour as of `minute`."""
        return not self.buckets or self.buckets[-1][0] <= minute - 60


class Counters:
    def __init__(self) -> None:
        self._tallies: dict[str, dict[str, Tally]] = {s: {} for s in SCOPES}
        self._day = -1
        self._month = -1

    def tally(self, scope: str, key: str) -> Tally:
        by_key = self._tallies[scope]
        t = by_key.get(key)
        if t is None:
            t = by_key[key] = Tally()
        return t

    def tallies(self, keys: tuple[tuple[str, str], ...], t: float) -> list[Tally | None]:
        """One tally per (scope, key), created if new; None for an unknown key ("" is not one card)."""
        day = int((t + _OFFSET_S) // 86400)
        if day > self._day:
            self._day = day
            month = month_of_day(day)
            if month > self._month:
                self._forget_before(month, int(t // 60))
        return [self.tally(scope, key) if key else None for scope, key in keys]

    def add(self, keys: tuple[tuple[str, str], ...], t: float, amount: int, rnd: int) -> None:
        for tally in self.tallies(keys, t):
            if tally is not None:
                tally.add(t, amount, rnd)

    def _forget_before(self, month: int, minute: int) -> None:
        """At a new month, drop keys with nothing left in any window (bounded memory)."""
        self._month = month
        for by_key in self._tallies.values():
            for key in [k for k, tl in by_key.items() if tl.month < month and tl.idle_since(minute)]:
                del by_key[key]
