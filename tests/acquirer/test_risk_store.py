"""The decision store's compact rows and its transaction lookup, and the counters' single
pass per decision: what `risk explain` reads back is what was decided, stores written by
the earlier layout still answer, a blocked amount leaves the sums."""
from __future__ import annotations

import json
import sqlite3

from acquirer.risk import DecisionStore, Facts
from acquirer.risk.codec import capture, encode_facts, facts_dict
from acquirer.risk.counters import Tally, stat_index
from acquirer.risk.engine import Hit
from acquirer.risk.rules import Action

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
