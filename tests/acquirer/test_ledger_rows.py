"""Plain units as rows (acquirer.ledger.rows): a group applied a run at a time stores
exactly what applying its units one by one stores, and refuses the same units."""
from __future__ import annotations

import sqlite3

import pytest

from acquirer.ledger import Channel, CommitUnit, JournalEntry, Receipt, SQLiteLedger, TxnRecord, apply, rows
from acquirer.sqlite_tx import write_transaction

from .ledger_helpers import (TID, Clock, decline_unit, record, refund_unit, response_for, reversal_unit,
                             sale_unit, txn)

TABLES = {"journal": "seq", "transactions": "txn_id", "responses": "terminal_id, batch, stan, reversal"}


def dump(path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY {order}").fetchall() for t, order in TABLES.items()}
    finally:
        conn.close()


def first_sale(store) -> CommitUnit:
    return sale_unit(store, 1, 1_000)


def mixed_group(store) -> list[CommitUnit]:
    """Plain units around ones that are not: a refund and a reversal between runs of sales
    (after `first_sale`)."""
    wallet = record(store, 4, 300, channel=Channel.QR)
    wallet = TxnRecord(**{**wallet.__dict__, "extra": {"order": "W-1", "n": 2}})
    no_response = sale_unit(store, 5, 500)
    return [sale_unit(store, 2, 200), decline_unit(store, 3, 250),
            CommitUnit((JournalEntry.authorised(wallet),), response_for(wallet)),
            refund_unit(store, 6, 100, txn(store, 1)), CommitUnit(no_response.entries),
            CommitUnit((), response_for(record(store, 7, 0))), reversal_unit(txn(store, 2)), sale_unit(store, 8, 800)]


@pytest.mark.parametrize("writer_process", [False, True])
def test_a_group_stores_what_its_units_applied_one_by_one_store(tmp_path, writer_process):
    grouped = SQLiteLedger(tmp_path / "grouped.db", clock=Clock(), writer_process=writer_process)
    single = SQLiteLedger(tmp_path / "single.db", clock=Clock())
    try:
        for s in (grouped, single):
            s.open_batch(TID)
        first = first_sale(grouped)
        for s in (grouped, single):
            assert s.commit(first).seqs == (1,)
        units = mixed_group(grouped)
        assert [type(rows.to_row(u)) for u in units].count(tuple) == 6  # the refund and the reversal are not
        results = grouped.commit_many(units, at=1_000.5)
        with write_transaction(single._w) as w:
            expected = [apply.apply_unit(w, u, 1_000.5) for u in units]
        assert results == expected and all(type(r) is Receipt for r in results)
        assert dump(grouped.path) == dump(single.path)
    finally:
        grouped.close()
        single.close()


def test_plain_units_come_back_whole_from_their_rows(tmp_path):
    store = SQLiteLedger(tmp_path / "l.db", clock=Clock())
    try:
        store.open_batch(TID)
        store.commit(first_sale(store))
        for unit in mixed_group(store):
            row = rows.to_row(unit)
            assert rows.to_unit(row) == unit
            if type(row) is tuple:  # what crosses the pipe: no dataclass, no enum
                assert all(type(v) in (str, int, bytes, dict, type(None)) for e in row[1] for v in e)
    finally:
        store.close()


@pytest.mark.parametrize("writer_process", [False, True])
def test_a_refused_plain_unit_mid_run_is_refused_as_alone_and_the_run_commits(tmp_path, writer_process):
    store = SQLiteLedger(tmp_path / "l.db", clock=Clock(), writer_process=writer_process)
    try:
        store.open_batch(TID)
        store.commit(reversal_unit(txn(store, 3)))  # the terminal reversed STAN 3 before it arrived
        other = record(store, 4, 400, tid="T0000002", batch="000001")  # a batch never opened
        results = store.commit_many([sale_unit(store, 1, 100), sale_unit(store, 3, 300),
                                     CommitUnit((JournalEntry.authorised(other),), response_for(other)),
                                     sale_unit(store, 2, 200), sale_unit(store, 1, 150)])
        assert [type(r).__name__ for r in results] == ["Receipt", "ReversedBeforeArrival", "BatchNotOpen", "Receipt",
                                                       "DedupConflict"]
        assert [r.seqs for r in results if type(r) is Receipt] == [(1,), (2,)]
        assert sorted(t.stan for t in store.transactions()) == ["000001", "000002"]
        assert store.project_journal() == store.transactions()
    finally:
        store.close()
