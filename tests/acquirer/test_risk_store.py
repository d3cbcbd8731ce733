"""The decision store's compact rows and its transaction lookup, and the counters' single
pass per decision: what `risk explain` reads back is what was decided, stores written by
the earlier layout still answer, a blocked amount leaves the sums."""
from __future__ import annotations

import json
import sqlite3
from collections import deque

from acquirer.risk import DecisionStore, Facts
from acquirer.risk.codec import capture, encode_facts, encode_hits, facts_dict, hits_dicts
from acquirer.risk.counters import Counters, Tally, day_of, month_of_day, stat_index
from acquirer.risk.engine import Hit
from acquirer.risk.rules import Action

from .risk_helpers import writes_held

T0 = 1749952800.0  # 2025-06-15 10:00 China Standard Time


def row(txn_id: str, at: float = T0, facts: Facts | None = None, hits: tuple = ()) -> tuple:
    f = facts or Facts(txn_id, "T0000001", "898440358120001", 1234, at)
    return (txn_id, at, f.terminal_id, f.merchant_id, f.card_token, f.amount, 0, "pass", "", "", "rules@0",
            capture(f), f.flags, hits)


def test_facts_read_back_as_the_dictionary_explain_shows():
    f = Facts("T0000001:000001:000001", "T0000001", "898440358120001", 150_000, T0, device_id="DEV-1",
              merchant_grade="C", merchant_mcc="5812", masked_pan="621498******0304", pin_present=True,
              entry_mode="071", flags=frozenset({"relay-suspected", "rooted"}), location_status="outside",
              location_offset_m=712.345, location_distance_m=1212.345, location_fix_age_s=4.25,
              location_refusal="", location_reason="700 m outside", location_cells="mismatch")
    assert facts_dict(encode_facts(capture(f), f.flags)) == {
        "channel": "card", "kind": "sale", "grade": "C", "device": "DEV-1", "masked_pan": "621498******0304",
        "mcc": "5812", "pin": True, "entry_mode": "071", "flags": ["relay-suspected", "rooted"],
        "location": {"status": "outside", "offset_m": 712.3, "distance_m": 1212.3, "fix_age_s": 4.2,
                     "reason": "700 m outside", "cells": "mismatch"}}
    plain = Facts("T0000001:000001:000002", "T0000001", "898440358120001", 100, T0)
    assert facts_dict(encode_facts(capture(plain), plain.flags)) == {"channel": "card", "kind": "sale", "grade": "B"}


def test_a_transaction_is_found_before_and_after_the_lookup_table_catches_up(tmp_path):
    store = DecisionStore(tmp_path / "risk.db", flush_after_s=3600)  # the upkeep thread stays out of it
    try:
        hit = Hit("single-limit", "live", Action.DECLINE, "61", "over the limit", {"txn.amount": 6_000_000})
        store.record(row("T0000001:000001:000001"))
        store.record(row("T0000002:000001:000001", hits=(hit,)))
        store.record(row("T0000001:000001:000001", T0 + 1))  # decided twice: both kept, oldest first
        found = store.decisions("T0000001:000001:000001")  # from the unindexed tail
        assert [d.at for d in found] == [T0, T0 + 1]
        store.index_txns(chunk=2)
        assert store.decisions("T0000001:000001:000001") == found
        assert store._db.execute("SELECT value FROM store_meta").fetchone()[0] == 3
        store.record(row("T0000001:000001:000001", T0 + 2))  # one indexed pair, one in the tail
        assert [d.at for d in store.decisions("T0000001:000001:000001")] == [T0, T0 + 1, T0 + 2]
        [declined] = store.decisions("T0000002:000001:000001")
        assert declined.hits == [{"rule": "single-limit", "status": "live", "action": "decline", "code": "61",
                                  "text": "over the limit", "values": {"txn.amount": 6_000_000}}]
        assert store.decisions("T0000003:000001:000001") == []
    finally:
        store.close()


def test_a_store_written_by_the_earlier_layout_is_read_and_moved_over(tmp_path):
    path = tmp_path / "risk.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE decisions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL, at REAL NOT NULL,
            terminal_id TEXT NOT NULL, merchant_id TEXT NOT NULL, card_token TEXT NOT NULL,
            amount INTEGER NOT NULL, round INTEGER NOT NULL, action TEXT NOT NULL, code TEXT NOT NULL,
            text TEXT NOT NULL, ruleset TEXT NOT NULL, facts TEXT NOT NULL, hits TEXT NOT NULL);
        CREATE INDEX decisions_txn ON decisions (txn_id);
        CREATE INDEX decisions_at ON decisions (at);""")
    facts = {"channel": "qr", "kind": "sale", "grade": "A", "location": {"status": "inside", "offset_m": -5.0}}
    hits = [{"rule": "no-pin-limit", "status": "live", "action": "step_up", "code": "1A", "text": "PIN",
             "values": {"txn.amount": 150_000}}]
    old.execute("INSERT INTO decisions VALUES (NULL, 'T0000009:000001:000007', ?, 'T0000009', 'M', 'TOK', 150000,"
                " 0, 'step_up', '1A', 'PIN', 'r@1', ?, ?)", (T0, json.dumps(facts), json.dumps(hits)))
    old.commit()
    old.close()
    store = DecisionStore(path)
    try:
        [d] = store.decisions("T0000009:000001:000007")
        assert (d.facts, d.hits, d.action, d.card_token) == (facts, hits, "step_up", "TOK")
        names = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
        assert "decisions_txn" not in names and "decisions_by_txn" in names
        assert store._db.execute("SELECT txn_id, seq FROM decisions_by_txn").fetchall() == [
            ("T0000009:000001:000007", 1)]
        assert list(store.since(T0)) == [(T0, "T0000009", "M", "TOK", 150000, 0, "step_up")]
    finally:
        store.close()


def test_a_tally_counts_once_per_event_and_takes_a_blocked_amount_back():
    count_1m, count_1h, amount_1m, amount_1d = (stat_index("count", "1m"), stat_index("count", "1h"),
                                                stat_index("amount", "1m"), stat_index("amount", "1d"))
    t = Tally()
    t.add(T0, 500, 0)
    v = t.add(T0 + 30, 70_000, 1)
    assert (v[count_1m], v[amount_1m], v[amount_1d], v[stat_index("round", "1h")]) == (2, 70_500, 70_500, 1)
    t.uncount_amount(70_000)  # declined: still an attempt, no longer money
    assert (t.v[count_1m], t.v[amount_1m], t.v[amount_1d]) == (2, 500, 500)
    v = t.add(T0 + 75, 100, 0)  # the first event left the minute; the blocked one stays counted, at 0
    assert (v[count_1m], v[amount_1m], v[count_1h], v[stat_index("amount", "1h")]) == (2, 100, 3, 600)
    v = t.add(T0 + 3600 + 80, 1, 0)  # an hour on: only this one in the minute and the hour
    assert (v[count_1m], v[count_1h], v[amount_1d], v[stat_index("count", "month")]) == (1, 1, 601, 4)


def _json_row(values: tuple, flags: frozenset) -> str:
    """A row as the versions before marshalled rows wrote it."""
    return json.dumps(values if not flags else (*values, sorted(flags)), separators=(",", ":"))


def test_marshalled_rows_read_back_as_the_json_rows_of_before():
    f = Facts("T0000001:000001:000001", "T0000001", "898440358120001", 150_000, T0, device_id="DEV-1",
              merchant_grade="C", masked_pan="621498******0304", pin_present=True, entry_mode="071",
              flags=frozenset({"rooted", "relay-suspected"}), location_status="inside", location_required=True,
              location_offset_m=-380.25, location_distance_m=119.75, location_fix_age_s=35.000123,
              location_cells="match")
    hit = Hit("relay-flagged-tap", "live", Action.STEP_UP, "1A", "enter PIN",
              {"txn.flags": ["relay-suspected", "rooted"], "txn.pin_present": False, "step_up": "PIN"})
    for facts in (f, Facts("T0000001:000001:000002", "T0000001", "898440358120001", 100, T0)):
        stored = encode_facts(capture(facts), facts.flags)
        assert isinstance(stored, bytes)
        assert facts_dict(stored) == facts_dict(_json_row(capture(facts), facts.flags))
    stored = encode_hits((hit,))
    assert isinstance(stored, bytes)
    assert hits_dicts(stored) == hits_dicts(json.dumps([["relay-flagged-tap", "live", "step_up", "1A", "enter PIN",
                                                         hit.values]]))
    assert hits_dicts(encode_hits(())) == hits_dicts("[]") == []


def test_a_value_marshal_cannot_take_is_stored_as_json_text(tmp_path):
    class Grade(str):  # a str subclass in a fact: marshal refuses it, JSON writes the string
        pass

    f = Facts("T0000001:000001:000001", "T0000001", "898440358120001", 100, T0, merchant_grade=Grade("D"))
    stored = encode_facts(capture(f), f.flags)
    assert isinstance(stored, str) and facts_dict(stored)["grade"] == "D"
    store = DecisionStore(tmp_path / "risk.db", flush_after_s=3600)
    try:
        store.record(row("T0000001:000001:000001", facts=f))
        store.record(row("T0000001:000001:000002"))
        assert [d.facts["grade"] for d in store.decisions("T0000001:000001:000001")] == ["D"]
        assert [d.facts["grade"] for d in store.decisions("T0000001:000001:000002")] == ["B"]
    finally:
        store.close()


def test_a_store_with_json_rows_reads_them_beside_marshalled_ones(tmp_path):
    path = tmp_path / "risk.db"
    hit = Hit("single-limit", "live", Action.DECLINE, "61", "over the limit", {"txn.amount": 6_000_000})
    f = Facts("T0000001:000001:000001", "T0000001", "898440358120001", 6_000_000, T0, location_status="inside",
              location_fix_age_s=12.5)
    store = DecisionStore(path, flush_after_s=3600)
    store.record(row("T0000001:000001:000001", facts=f, hits=(hit,)))
    store.close()
    db = sqlite3.connect(path)  # the same decision again, as the JSON text an earlier version wrote
    db.execute("INSERT INTO decisions (txn_id, at, terminal_id, merchant_id, card_token, amount, round, action, code,"
               " text, ruleset, facts, hits) SELECT txn_id, at + 1, terminal_id, merchant_id, card_token, amount,"
               " round, action, code, text, ruleset, ?, ? FROM decisions",
               (_json_row(capture(f), f.flags), json.dumps([["single-limit", "live", "decline", "61",
                                                            "over the limit", {"txn.amount": 6_000_000}]])))
    db.commit()
    db.close()
    store = DecisionStore(path)
    try:
        new, old = store.decisions("T0000001:000001:000001")
        assert (new.facts, new.hits) == (old.facts, old.hits)
        assert new.facts["location"] == {"status": "inside", "offset_m": 0.0, "distance_m": -1.0, "fix_age_s": 12.5}
    finally:
        store.close()


class _TallyBefore(Tally):
    """`Tally.count` as it was before the hour window's roll moved into the new-minute branch:
    old minutes looked for at every event, a new key's first event counted by this same walk
    through the windows (the reference for the tests below)."""

    def __init__(self) -> None:
        super().__init__()
        self.minutes = deque()

    def count(self, t: float, minute: int, day: int, amount: int, rnd: int) -> list[int]:
        v, recent = self.v, self.recent
        while recent and recent[0][0] <= t - 60:
            _, a, r = recent.popleft()
            v[0] -= 1
            v[4] -= a
            v[8] -= r
        minutes, old = self.minutes, minute - 60
        if minute > self.minute:
            if self.minute >= 0:
                minutes.append((self.minute, self.minute_count, self.minute_amount, self.minute_round))
            self.minute, self.minute_count, self.minute_amount, self.minute_round = minute, 1, amount, rnd
        else:
            self.minute_count += 1
            self.minute_amount += amount
            self.minute_round += rnd
        while minutes and minutes[0][0] <= old:
            _, c, a, r = minutes.popleft()
            v[1] -= c
            v[5] -= a
            v[9] -= r
        if day > self.day:
            self.day = day
            v[2] = v[6] = v[10] = 0
            month = month_of_day(day)
            if month > self.month:
                self.month = month
                v[3] = v[7] = v[11] = 0
        recent.append((t, amount, rnd))
        for i, add in ((0, 1), (1, 1), (2, 1), (3, 1), (4, amount), (5, amount), (6, amount), (7, amount),
                       (8, rnd), (9, rnd), (10, rnd), (11, rnd)):
            v[i] += add
        return v


def test_the_windows_count_as_they_did_whatever_the_clock_does():
    """Every window after every event, over random traffic with the clock stepping back now
    and then and blocked amounts taken back, against the counting as it was."""
    import random

    rng = random.Random(3)
    now, before, clock = Tally(), _TallyBefore(), T0
    for n in range(5000):
        clock += rng.choice((0.5, 3, 20, 61, 400, 3000, 86_400)) if rng.random() > 0.05 else -rng.choice((5, 90, 4000))
        amount, rnd = rng.randrange(0, 5000), int(rng.random() < 0.2)
        assert now.add(clock, amount, rnd) == before.add(clock, amount, rnd), n
        if rng.random() < 0.05:
            now.uncount_amount(amount)
            before.uncount_amount(amount)
        assert _state(now) == _state(before), n


def _state(tally: Tally) -> tuple:
    return (tally.v, tally.minute, tally.minute_count, tally.minute_amount, tally.minute_round, tally.day, tally.month,
            list(tally.minutes or ()), list(tally.recent))


def test_a_new_keys_first_event_counts_as_walking_the_windows_would():
    """`Tally.starting` (what `Counters` makes for a key it has not seen) against a new tally's
    `count`, for odd inputs too (no amount, a round flag, a time before 1970), and both go on alike."""
    import random

    rng = random.Random(11)
    for n, t in enumerate([T0, 0.0, 59.9, -0.5, -86_400.0 * 40, T0 + 0.25] + [rng.uniform(0, 2e9) for _ in range(200)]):
        amount, rnd = rng.choice((0, 1, 9_999, 10_000, 123_456)), rng.choice((0, 1))
        minute, day = int(t // 60), day_of(t)
        new, before = Tally.starting(t, minute, day, amount, rnd), _TallyBefore()
        before.count(t, minute, day, amount, rnd)
        assert _state(new) == _state(before), n
        for step in (0.5, 61, 3600, -30, 86_400 * 31):
            t += step
            assert new.add(t, amount, rnd) == before.add(t, amount, rnd), (n, step)
            assert _state(new) == _state(before), (n, step)


def test_the_counters_of_many_keys_count_as_new_tallies_walked_through_would():
    """`Counters.add` over random traffic (new cards every few sales, a few busy terminals and
    merchants, blocked amounts taken back) against one reference tally per key."""
    import random

    rng = random.Random(7)
    counters, reference, clock = Counters(), {}, T0
    for n in range(4000):
        clock += rng.choice((0.01, 0.3, 2, 45, 700)) if rng.random() > 0.02 else -rng.choice((5, 90))
        keys = (f"card{rng.randrange(n // 4 + 1, n // 4 + 8)}" if rng.random() > 0.1 else "",
                f"T{rng.randrange(5)}", f"M{rng.randrange(2)}")
        amount = rng.choice((0, 100, 20_000, 1_234))
        rnd = 1 if amount >= 10_000 and amount % 10_000 == 0 else 0
        got = counters.add(*keys, clock, amount, rnd)
        for scope, key, tally in zip(("card", "terminal", "merchant"), keys, got):
            if not key:
                assert tally is None
                continue
            want = reference.setdefault((scope, key), _TallyBefore())
            assert tally.v == want.add(clock, amount, rnd), n
            if rng.random() < 0.05:
                tally.uncount_amount(amount)
                want.uncount_amount(amount)
            assert _state(tally) == _state(want), n


def _rows_in(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT txn_id FROM decisions ORDER BY seq")]


def test_a_full_batch_is_written_by_the_stores_thread_in_the_order_decided(tmp_path):
    import time

    store = DecisionStore(tmp_path / "risk.db", flush_every=4, flush_after_s=3600)
    try:
        ids = [f"T0000001:000001:{n:06d}" for n in range(1, 11)]
        for txn in ids:
            store.record(row(txn))
        deadline = time.monotonic() + 10
        while len(_rows_in(tmp_path / "risk.db")) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)  # two full batches: written without anyone calling flush
        assert _rows_in(tmp_path / "risk.db") == ids[:8]
        store.flush()  # the two still filling a batch
        assert _rows_in(tmp_path / "risk.db") == ids
    finally:
        store.close()


def test_a_batch_that_cannot_be_written_waits_and_goes_first_later(tmp_path, caplog):
    import time

    store = DecisionStore(tmp_path / "risk.db", flush_every=2, flush_after_s=3600)
    try:
        ids = [f"T0000001:000001:{n:06d}" for n in range(1, 6)]
        with writes_held(store):  # another writer holds the file
            for txn in ids[:4]:
                store.record(row(txn))
            deadline = time.monotonic() + 10
            while "upkeep failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "database is locked" in caplog.text
        store.record(row(ids[4]))
        store.flush()
        assert _rows_in(tmp_path / "risk.db") == ids
    finally:
        store.close()


def test_a_store_that_cannot_write_keeps_no_more_than_its_cap_and_goes_on_once_it_can(tmp_path, caplog):
    """Disk trouble must not turn into memory trouble: past `max_unwritten` decisions waiting,
    the store is backlogged and keeps nothing more (the engine declines meanwhile); the ones
    it kept are written in order once the file takes writes again, and it keeps rows again.
    What was written before the trouble stays as it was."""
    import time

    store = DecisionStore(tmp_path / "risk.db", flush_every=2, flush_after_s=3600, max_unwritten=6)
    try:
        before = [f"T0000001:000001:{n:06d}" for n in range(1, 3)]
        for txn in before:
            store.record(row(txn))
        store.flush()
        ids = [f"T0000001:000001:{n:06d}" for n in range(3, 13)]
        with writes_held(store):  # another writer holds the file: no batch can be written
            for txn in ids[:5]:
                store.record(row(txn))
            assert not store.backlogged
            store.record(row(ids[5]))  # the sixth waiting
            assert store.backlogged and store.refused == 0
            for txn in ids[6:8]:
                store.record(row(txn))
            assert store.refused == 2
            deadline = time.monotonic() + 10
            while "upkeep failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "database is locked" in caplog.text and "declining until they are written" in caplog.text
            assert _rows_in(tmp_path / "risk.db") == before
        store.flush()
        assert not store.backlogged and "the backlog is written (2 decisions refused" in caplog.text
        assert _rows_in(tmp_path / "risk.db") == before + ids[:6]
        for txn in ids[8:]:
            store.record(row(txn))
        store.flush()
        assert _rows_in(tmp_path / "risk.db") == before + ids[:6] + ids[8:]
    finally:
        store.close()
