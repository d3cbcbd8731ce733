"""Windowed counters per card, terminal and merchant, kept in memory.

Each key has a `Tally`: the last 60 s exactly (a deque of events), the last hour in
minute buckets, the calendar day and month (China Standard Time). Running sums make
every read O(1) amortised, which is what lets a decision take microseconds. A decision
touches each of its three tallies once (`Counters.add`: roll the windows and count, in
one call) and the rules read the tally's own list of sums; a blocked transaction's
amount is taken back afterwards (`Tally.uncount_amount`).

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
    """One key's windows as one flat list `v`, laid out as `stat_index` reads it:
    count, amount, round x 1m, 1h, 1d, month. The engine hands `v` itself to the rules
    (no copy per decision), so it always holds the values as of the last event."""

    __slots__ = ("v", "recent", "minutes", "minute", "minute_count", "minute_amount", "minute_round", "day",
                 "month")

    def __init__(self) -> None:
        self.v = [0] * 12
        self.recent: deque = deque()  # (t, amount, round) within the last 60 s
        # The hour in minute buckets: the newest minute's sums in the slots below (an event adds to
        # them, no tuple made per event), the minutes before it as (minute, count, amount, round),
        # oldest first; tuples, not lists: a tuple of numbers drops out of the garbage collector's
        # sight, and a month of keys holds many. None until a second minute begins: most cards are
        # tapped within one minute and never need it (an empty deque is 600 bytes).
        self.minutes: deque | None = None
        self.minute = -1  # the newest minute with an event; -1: none yet
        self.minute_count = self.minute_amount = self.minute_round = 0
        self.day = self.month = -1

    @classmethod
    def starting(cls, t: float, minute: int, day: int, amount: int, rnd: int) -> Tally:
        """A new key's tally with its first event counted: what `Tally().count(...)` gives,
        written out (a new card is a new key every few sales, and its first event rolls
        nothing, so the state is known without walking the windows)."""
        if minute < 0 or day < 0:  # before 1970: `count`'s "nothing yet" marks would differ
            tally = cls()
            tally.count(t, minute, day, amount, rnd)
            return tally
        tally = cls.__new__(cls)
        one = 1 if rnd else 0  # as `count` adds it to `v`
        tally.v = [1, 1, 1, 1, amount, amount, amount, amount, one, one, one, one]
        tally.recent = deque(((t, amount, rnd),))
        tally.minutes = None
        tally.minute, tally.minute_count, tally.minute_amount, tally.minute_round = minute, 1, amount, rnd
        tally.day, tally.month = day, month_of_day(day)
        return tally

    def add(self, t: float, amount: int, rnd: int) -> list[int]:
        """Move the windows to `t` and count one event in them; returns `v`.

        One call per key and decision: rolling and counting together, before the rules
        read the values (they include the transaction being decided)."""
        return self.count(t, int(t // 60), day_of(t), amount, rnd)

    def count(self, t: float, minute: int, day: int, amount: int, rnd: int) -> list[int]:
        """`add`, with `t`'s minute and business day worked out once for a decision's three keys."""
        v, recent = self.v, self.recent
        cut = t - 60
        while recent and recent[0][0] <= cut:
            _, a, r = recent.popleft()
            v[0] -= 1
            v[4] -= a
            v[8] -= r
        if minute > self.minute:  # the newest minute closes (a clock stepping back counts into it)
            minutes, old = self.minutes, minute - 60
            if self.minute >= 0:
                if minutes is None:
                    minutes = self.minutes = deque()
                minutes.append((self.minute, self.minute_count, self.minute_amount, self.minute_round))
            self.minute, self.minute_count, self.minute_amount, self.minute_round = minute, 1, amount, rnd
            # minutes leave the hour only here: in the same (or an earlier) minute as the newest,
            # everything this could drop was dropped when the newest minute began
            while minutes and minutes[0][0] <= old:
                _, c, a, r = minutes.popleft()
                v[1] -= c
                v[5] -= a
                v[9] -= r
        else:
            self.minute_count += 1
            self.minute_amount += amount
            self.minute_round += rnd
        if day > self.day:  # a clock stepping back must not wipe today
            self.day = day
            v[2] = v[6] = v[10] = 0
            month = month_of_day(day)
            if month > self.month:
                self.month = month
                v[3] = v[7] = v[11] = 0
        recent.append((t, amount, rnd))
        v[0] += 1
        v[1] += 1
        v[2] += 1
        v[3] += 1
        if amount:
            v[4] += amount
            v[5] += amount
            v[6] += amount
            v[7] += amount
        if rnd:
            v[8] += 1
            v[9] += 1
            v[10] += 1
            v[11] += 1
        return v

    def uncount_amount(self, amount: int) -> None:
        """The last event's transaction was blocked: its amount leaves the sums (its count stays)."""
        if not amount:
            return
        t, _, rnd = self.recent[-1]
        self.recent[-1] = (t, 0, rnd)
        self.minute_amount -= amount
        v = self.v
        v[4] -= amount
        v[5] -= amount
        v[6] -= amount
        v[7] -= amount

    def idle_since(self, minute: int) -> bool:
        """Nothing in the last hour as of `minute`."""
        return self.minute <= minute - 60


class Counters:
    def __init__(self) -> None:
        self._tallies: dict[str, dict[str, Tally]] = {s: {} for s in SCOPES}
        self._cards, self._terminals, self._merchants = (self._tallies[s] for s in SCOPES)
        self._day = -1
        self._month = -1

    def add(self, card: str, terminal: str, merchant: str, t: float, amount: int,
            rnd: int) -> tuple[Tally | None, Tally | None, Tally | None]:
        """Count one event for each key, in `SCOPES` order; returns their tallies (created
        if new; None for an unknown key: "" is not one card)."""
        day = int((t + _OFFSET_S) // 86400)
        if day > self._day:
            self._day = day
            month = month_of_day(day)
            if month > self._month:
                self._forget_before(month, int(t // 60))
        minute = int(t // 60)
        return (_count(self._cards, card, t, minute, day, amount, rnd),
                _count(self._terminals, terminal, t, minute, day, amount, rnd),
                _count(self._merchants, merchant, t, minute, day, amount, rnd))

    def _forget_before(self, month: int, minute: int) -> None:
        """At a new month, drop keys with nothing left in any window (bounded memory)."""
        self._month = month
        for by_key in self._tallies.values():
            for key in [k for k, tl in by_key.items() if tl.month < month and tl.idle_since(minute)]:
                del by_key[key]


def _count(by_key: dict[str, Tally], key: str, t: float, minute: int, day: int, amount: int,
           rnd: int) -> Tally | None:
    if not key:
        return None
    tally = by_key.get(key)
    if tally is None:
        tally = by_key[key] = Tally.starting(t, minute, day, amount, rnd)
    else:
        tally.count(t, minute, day, amount, rnd)
    return tally
