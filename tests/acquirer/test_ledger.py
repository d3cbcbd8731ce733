"""The host ledger on real SQLite files: journal, projection, de-duplication, refunds,
voids and reversals."""
from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading

import pytest

from acquirer.ledger import (BUSINESS_TZ, AlreadyAnswered, BatchNotOpen, Channel, CommitUnit, DedupConflict, Event, InvalidEntry,
                             JournalEntry, LedgerUnavailable, LedgerWriter, OriginalNotFound, RefundExceedsRemaining, RefundNotAllowed,
                             Rejected, ReversalOutcome, ReversedBeforeArrival, SQLiteLedger, Status, TxnKind,
                             TxnRecord, UnknownTransaction, VoidNotAllowed, request_digest, reversal_outcome)
from acquirer.ledger import apply, schema
from acquirer.protocol import Frame, ResponseCode, mac_input
from acquirer.protocol.examples import framed
from keys.hashes import sm3

from .ledger_helpers import (MID, TID, Clock, decline_unit, record, refund_unit, response_for, reversal_unit,
                             sale_unit, txn, void_unit)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["in-thread", "process"])
def store(tmp_path, clock, request):
    # every rule holds whether group commits are applied here or by the ledger process (as the host runs)
    s = SQLiteLedger(tmp_path / "ledger.db", clock=clock, writer_process=request.param == "process")
    s.open_batch(TID)
    yield s
    s.close()


@pytest.fixture
def local_store(tmp_path, clock):
    s = SQLiteLedger(tmp_path / "ledger.db", clock=clock)
    s.open_batch(TID)
    yield s
    s.close()


def raw(store) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


# --- the journal ----------------------------------------------------------------------
def test_journal_refuses_update_and_delete(store):
    store.commit(sale_unit(store, 1, 1000))
    conn = raw(store)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE journal SET amount = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM journal")
        assert conn.execute("SELECT amount FROM journal").fetchall() == [(1000,)]
    finally:
        conn.close()


def test_ledger_file_is_wal_with_full_synchronous(store):
    assert store._w.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sale_is_journaled_and_projected(store, clock):
    receipt = store.commit(sale_unit(store, 1, 1234))
    t = store.get(txn(store, 1))
    assert (t.status, t.amount, t.kind, t.channel, t.masked_pan) == \
        (Status.APPROVED, 1234, TxnKind.SALE, Channel.CARD, "621234******1234")
    assert t.created_at == clock.now and len(t.rrn) == 12
    [entry] = store.journal(t.txn_id)
    assert (entry.seq, entry.event, entry.amount) == (receipt.seqs[0], Event.AUTHORISED, 1234)
    assert entry.details["rrn"] == t.rrn and entry.details["pan_token"] == "6299000000001234"


def test_card_data_beyond_a_masked_pan_is_refused(store):
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(TID, MID, "000001", "000001", TxnKind.SALE, Channel.CARD, 1, masked_pan="6212341234561234")
    assert err.value.field == "masked_pan"
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(TID, MID, "000001", "000001", TxnKind.SALE, Channel.CARD, 1, extra={"note": "pan 6212341234561234"})
    assert err.value.field == "extra.note"
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(TID, MID, "000001", "12345", TxnKind.SALE, Channel.CARD, 1)
    assert err.value.field == "stan"


def mixed_series(store, clock) -> tuple[str, str]:
    """Sales, a decline, refunds, voids, reversals of each, a batch closed, more after it:
    the batch closed and the one opened."""
    for i, (channel, amount) in enumerate([(Channel.CARD, 1000), (Channel.QR, 2500), (Channel.FACE, 800),
                                           (Channel.CARD, 4000), (Channel.CARD, 600)], start=1):
        store.commit(sale_unit(store, i, amount, channel=channel))
        clock.advance(1)
    store.commit(decline_unit(store, 6, 99_999))
    store.commit(refund_unit(store, 7, 300, txn(store, 1)))
    store.commit(refund_unit(store, 8, 200, txn(store, 1)))
    store.commit(reversal_unit(txn(store, 8)))  # refund 8 undone: 700 refundable again
    store.commit(void_unit(store, 9, txn(store, 2)))
    store.commit(void_unit(store, 10, txn(store, 3)))
    store.commit(reversal_unit(txn(store, 10)))  # void undone: sale 3 stands again
    store.commit(reversal_unit(txn(store, 4)))
    old_batch = store.current_batch(TID)
    new_batch = store.close_batch(TID, old_batch)
    clock.advance(3600)
    store.commit(sale_unit(store, 11, 5000))
    store.commit(refund_unit(store, 12, 100, f"{TID}:{old_batch}:000001"))
    return old_batch, new_batch


def test_a_transactions_journal_is_its_entries_and_those_on_it_as_an_original(store, clock):
    mixed_series(store, clock)  # entries of a transaction share their `at` with others' (clock not moved)
    conn = raw(store)
    try:
        for t in store.transactions():
            for after in (0, 5):
                expected = [seq for (seq,) in conn.execute(
                    "SELECT seq FROM journal WHERE seq > ? AND (txn_id = ? OR original_txn_id = ?) ORDER BY seq",
                    (after, t.txn_id, t.txn_id))]
                assert [e.seq for e in store.journal(t.txn_id, after)] == expected
        sale = txn(store, 1, batch="000001")
        assert [(e.event, e.txn_id[-6:]) for e in store.journal(sale)] == [
            (Event.AUTHORISED, "000001"), (Event.REFUNDED, "000007"), (Event.REFUNDED, "000008"),
            (Event.REVERSED, "000008"), (Event.SETTLED, "000001"), (Event.SETTLED, "000007"),
            (Event.REFUNDED, "000012")]
        statements = []
        store._r().set_trace_callback(statements.append)
        store.journal(sale)
        store._r().set_trace_callback(None)
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statements[-1]}")]
        assert not [p for p in plan if p.startswith("SCAN")], plan
    finally:
        conn.close()


def test_rebuilt_projection_equals_the_live_one_after_a_mixed_series(store, clock):
    old_batch, new_batch = mixed_series(store, clock)

    live = store.transactions()
    assert store.project_journal() == live
    assert {t.stan: t.status for t in live} == {
        "000001": Status.SETTLED, "000002": Status.VOIDED, "000003": Status.SETTLED, "000004": Status.REVERSED,
        "000005": Status.SETTLED, "000006": Status.DECLINED, "000007": Status.SETTLED, "000008": Status.REVERSED,
        "000009": Status.SETTLED, "000010": Status.REVERSED, "000011": Status.APPROVED, "000012": Status.APPROVED}
    assert store.remaining_refundable(f"{TID}:{old_batch}:000001") == 600
    assert new_batch == store.current_batch(TID)

    conn = raw(store)  # damage the projection; the journal alone brings it back
    conn.execute("UPDATE transactions SET status = 'declined', refunded_amount = 0")
    conn.execute("DELETE FROM transactions WHERE stan = '000011'")
    conn.close()
    assert store.transactions() != live
    assert store.rebuild_projection() == len(live)
    assert store.transactions() == live


# --- de-duplication -------------------------------------------------------------------
def test_lookups_in_memory_agree_with_the_file_across_settlement_and_restart(tmp_path, clock):
    # the open batch's answered keys are kept in memory: every answer must match a fresh store's
    path = tmp_path / "cached.db"
    store = SQLiteLedger(path, clock=clock)
    store.open_batch(TID)
    before = store.lookup_response(TID, "000001", "000001")  # loads the (empty) key set of the open batch
    first, second = sale_unit(store, 1, 500), sale_unit(store, 2, 700)
    store.commit(first)
    assert store.lookup_response(TID, "000001", "000002") is None
    store.commit(second)  # lands after the key set was loaded: the commit adds it
    assert store.lookup_response(TID, "000001", "000002") == (second.response.request_digest,
                                                              second.response.response)
    next_batch = store.close_batch(TID, "000001")
    assert next_batch == "000002" and store.current_batch(TID) == "000002"
    reopened = SQLiteLedger(path, clock=clock)
    for s in (store, reopened):
        for unit in (first, second):
            r = unit.response
            assert s.lookup_response(TID, r.batch, r.stan) == (r.request_digest, r.response)  # closed batch: SQL
        assert s.lookup_response(TID, "000002", "000001") is None
    third = sale_unit(store, 1, 900)  # STAN 1 again, in the new batch
    store.commit(third)
    assert store.lookup_response(TID, "000002", "000001") == (third.response.request_digest, third.response.response)
    assert before is None and SQLiteLedger(path, clock=clock).lookup_response(TID, "000002", "000001") is not None
    for s in (store, reopened):
        s.close()


def test_repeated_request_gets_the_stored_response(store):
    unit = sale_unit(store, 1, 1000)
    store.commit(unit)
    assert store.lookup_response(TID, unit.response.batch, "000001") == (unit.response.request_digest,
                                                                          unit.response.response)
    with pytest.raises(AlreadyAnswered) as err:
        store.commit(unit)  # two copies of a request that both missed the lookup
    assert err.value.response == unit.response.response
    assert len(store.journal()) == 1


def test_same_key_with_different_content_is_a_conflict(store):
    store.commit(sale_unit(store, 1, 1000))
    other = record(store, 1, 2000)
    unit = CommitUnit((JournalEntry.authorised(other),), response_for(other, request=b"0200|000001|2000|other"))
    with pytest.raises(DedupConflict) as err:
        store.commit(unit)
    assert err.value.response_code is ResponseCode.DUPLICATE
    assert store.get(txn(store, 1)).amount == 1000 and len(store.journal()) == 1


def test_lookup_misses_for_an_unknown_key(store):
    assert store.lookup_response(TID, "000001", "000077") is None


def test_reversal_is_kept_apart_from_its_original_under_the_same_stan(store):
    sale = sale_unit(store, 1, 1000)
    store.commit(sale)
    store.commit(reversal_unit(txn(store, 1)))
    assert store.lookup_response(TID, "000001", "000001") == (sale.response.request_digest, sale.response.response)
    assert store.lookup_response(TID, "000001", "000001", reversal=True)[1] == b"reversal ack 000001"


# --- refunds --------------------------------------------------------------------------
def test_partial_refunds_never_exceed_what_remains(store):
    store.commit(sale_unit(store, 1, 1000))
    sale = txn(store, 1)
    store.commit(refund_unit(store, 2, 300, sale))
    store.commit(refund_unit(store, 3, 600, sale))
    assert store.remaining_refundable(sale) == 100
    with pytest.raises(RefundExceedsRemaining) as err:
        store.commit(refund_unit(store, 4, 200, sale))
    assert (err.value.remaining, err.value.response_code) == (100, ResponseCode.ORIGINAL_AMOUNT_INCORRECT)
    assert store.get(txn(store, 4)) is None and store.lookup_response(TID, "000001", "000004") is None
    store.commit(refund_unit(store, 5, 100, sale))
    assert store.remaining_refundable(sale) == 0
    assert store.get(sale).refunded_amount == 1000


def test_two_refunds_racing_for_the_last_amount_through_group_commit(store):
    store.commit(sale_unit(store, 1, 1000))
    sale = txn(store, 1)
    store.commit(refund_unit(store, 2, 600, sale))
    a, b = refund_unit(store, 3, 400, sale), refund_unit(store, 4, 400, sale)
    writer = LedgerWriter(store)

    async def race():
        return await asyncio.gather(writer.commit(a), writer.commit(b), return_exceptions=True)
    try:
        results = asyncio.run(race())
    finally:
        writer.close()
    assert sorted(type(r).__name__ for r in results) == ["Receipt", "RefundExceedsRemaining"]
    assert store.get(sale).refunded_amount == 1000
    assert len([t for t in store.transactions() if t.kind is TxnKind.REFUND]) == 2


def test_two_refunds_racing_from_threads_in_separate_commits(store):
    for n in range(10):
        base = 100 * n + 1
        store.commit(sale_unit(store, base, 1000))
        sale = txn(store, base)
        store.commit(refund_unit(store, base + 1, 950, sale))  # 50 left
        units = [refund_unit(store, base + 2, 50, sale), refund_unit(store, base + 3, 50, sale)]
        gate, results = threading.Barrier(2), []

        def go(unit):
            gate.wait()
            try:
                results.append(store.commit(unit))
            except RefundExceedsRemaining as exc:
                results.append(exc)
        threads = [threading.Thread(target=go, args=(u,)) for u in units]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(type(r).__name__ for r in results) == ["Receipt", "RefundExceedsRemaining"]
        assert store.get(sale).refunded_amount == 1000


def test_refund_of_a_voided_or_unknown_sale_is_refused(store):
    store.commit(sale_unit(store, 1, 1000))
    store.commit(void_unit(store, 2, txn(store, 1)))
    with pytest.raises(RefundNotAllowed):
        store.commit(refund_unit(store, 3, 100, txn(store, 1)))
    with pytest.raises(OriginalNotFound) as err:
        store.commit(refund_unit(store, 4, 100, txn(store, 77)))
    assert err.value.response_code is ResponseCode.ORIGINAL_NOT_FOUND
    with pytest.raises(UnknownTransaction):
        store.remaining_refundable(txn(store, 77))


def test_refund_for_another_merchant_is_refused(store):
    store.commit(sale_unit(store, 1, 1000))
    with pytest.raises(RefundNotAllowed):
        store.commit(refund_unit(store, 2, 100, txn(store, 1), mid="898440358120999"))


# --- voids ----------------------------------------------------------------------------
def test_void_in_the_open_batch_voids_the_sale(store):
    store.commit(sale_unit(store, 1, 1000))
    store.commit(void_unit(store, 2, txn(store, 1)))
    assert store.get(txn(store, 1)).status is Status.VOIDED
    assert store.get(txn(store, 2)).kind is TxnKind.VOID
    assert store.remaining_refundable(txn(store, 1)) == 0
    with pytest.raises(VoidNotAllowed):  # twice
        store.commit(void_unit(store, 3, txn(store, 1)))


def test_void_after_the_batch_closed_is_refused(store):
    store.commit(sale_unit(store, 1, 1000))
    old = store.current_batch(TID)
    sale = txn(store, 1)
    store.close_batch(TID, old)
    with pytest.raises(VoidNotAllowed, match="open batch"):
        store.commit(void_unit(store, 2, sale))
    with pytest.raises(BatchNotOpen) as err:  # nor in the closed batch itself
        store.commit(void_unit(store, 3, sale, batch=old))
    assert err.value.response_code is ResponseCode.SIGN_ON_AGAIN
    assert store.get(sale).status is Status.SETTLED


def test_void_of_a_refunded_sale_or_with_another_amount_is_refused(store):
    store.commit(sale_unit(store, 1, 1000))
    store.commit(sale_unit(store, 2, 500))
    store.commit(refund_unit(store, 3, 100, txn(store, 1)))
    with pytest.raises(VoidNotAllowed, match="refunds"):
        store.commit(void_unit(store, 4, txn(store, 1)))
    rec = record(store, 5, 400, kind=TxnKind.VOID, original=txn(store, 2))
    with pytest.raises(VoidNotAllowed, match="original amount"):
        store.commit(CommitUnit((JournalEntry.voided(rec),), response_for(rec)))


# --- reversals ------------------------------------------------------------------------
def test_reversing_twice_journals_once(store):
    store.commit(sale_unit(store, 1, 1000))
    sale = txn(store, 1)
    first = store.commit(CommitUnit((JournalEntry.reversed(sale),)))
    second = store.commit(CommitUnit((JournalEntry.reversed(sale),)))
    assert first.reversal is ReversalOutcome.REVERSED and len(first.seqs) == 1
    assert second.reversal is ReversalOutcome.ALREADY_REVERSED and second.seqs == ()
    assert [e.event for e in store.journal(sale)] == [Event.AUTHORISED, Event.REVERSED]
    unit = reversal_unit(sale)  # and a resent 0400 gets its first answer again
    store.commit(unit)
    with pytest.raises(AlreadyAnswered):
        store.commit(unit)
    assert [e.event for e in store.journal(sale)] == [Event.AUTHORISED, Event.REVERSED]


def test_reversing_an_unknown_or_voided_transaction_is_a_typed_outcome(store):
    assert store.commit(reversal_unit(txn(store, 77))).reversal is ReversalOutcome.NOT_FOUND
    store.commit(sale_unit(store, 1, 1000))
    store.commit(void_unit(store, 2, txn(store, 1)))
    assert reversal_outcome(store.get(txn(store, 1))) is ReversalOutcome.ORIGINAL_VOIDED
    assert store.commit(reversal_unit(txn(store, 1))).reversal is ReversalOutcome.ORIGINAL_VOIDED
    store.commit(decline_unit(store, 3, 500))
    assert store.commit(reversal_unit(txn(store, 3))).reversal is ReversalOutcome.ORIGINAL_DECLINED
    assert [e.event for e in store.journal()] == [Event.AUTHORISED, Event.VOIDED, Event.DECLINED]


def test_reversed_refund_gives_its_amount_back_and_reversed_void_restores_the_sale(store):
    store.commit(sale_unit(store, 1, 1000))
    store.commit(refund_unit(store, 2, 400, txn(store, 1)))
    store.commit(reversal_unit(txn(store, 2)))
    assert store.remaining_refundable(txn(store, 1)) == 1000
    store.commit(sale_unit(store, 3, 700))
    store.commit(void_unit(store, 4, txn(store, 3)))
    store.commit(reversal_unit(txn(store, 4)))
    assert store.get(txn(store, 3)).status is Status.APPROVED


def test_request_arriving_after_its_reversal_is_refused(store):
    assert store.commit(reversal_unit(txn(store, 5))).reversal is ReversalOutcome.NOT_FOUND
    with pytest.raises(ReversedBeforeArrival):
        store.commit(sale_unit(store, 5, 1000))
    assert store.get(txn(store, 5)) is None


# --- queries, batches, RRNs -----------------------------------------------------------
def test_find_original_by_batch_and_stan_by_stan_or_by_rrn(store):
    store.commit(sale_unit(store, 1, 1000))
    t = store.get(txn(store, 1))
    assert store.find_original(TID, batch=t.batch, stan="000001") == t
    assert store.find_original(TID, stan="000001") == t
    assert store.find_original(TID, rrn=t.rrn) == t
    assert store.find_original("T0000002", rrn=t.rrn) is None
    with pytest.raises(InvalidEntry):
        store.find_original(TID)


def test_a_terminals_or_a_batchs_transactions_are_a_range_of_ids_searched_not_scanned(tmp_path, clock):
    path = tmp_path / "ledger.db"
    with SQLiteLedger(path, clock=clock):
        pass
    conn = sqlite3.connect(path)  # a file from before: an index on (terminal_id, batch), one on the journal's txn_id
    conn.execute("CREATE INDEX transactions_batch ON transactions (terminal_id, batch)")
    conn.execute("CREATE INDEX journal_txn ON journal (txn_id)")
    conn.close()
    with SQLiteLedger(path, clock=clock) as s:
        terminals = ("T1", "T10", "T1;", "T0")  # neighbours of T1 in the ids' order
        for tid in terminals:
            s.open_batch(tid)
        for tid in terminals:
            s.commit(sale_unit(s, 1, 100, tid=tid))
        s.close_batch("T1", "000001")
        clock.advance(60)
        s.commit(sale_unit(s, 1, 200, tid="T1"))
        s.commit(sale_unit(s, 2, 300, tid="T1"))
        index_names = {r[0] for r in s._r().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert not index_names & {"transactions_batch", "journal_txn"}  # each cost a page written per sale
        assert {"journal_at", "journal_changes"} <= index_names
        statements = []
        s._r().set_trace_callback(statements.append)
        assert [t.amount for t in s.transactions("T1")] == [100, 200, 300]
        assert [t.amount for t in s.transactions("T1", "000002")] == [200, 300]
        assert [t.terminal_id for t in s.transactions(batch="000001")] == ["T0", "T10", "T1", "T1;"]
        assert s.find_original("T1", stan="000001").amount == 200  # the latest
        t10 = s.get(txn(s, 1, tid="T10"))
        assert s.find_original("T10", rrn=t10.rrn) == t10 and s.find_original("T1", rrn=t10.rrn) is None
        assert s.find_original("T1", stan="000003") is None
        s._r().set_trace_callback(None)
        assert s.close_batch("T1", "000002") == "000003"
        assert [t.status for t in s.transactions("T1")] == [Status.SETTLED] * 3
        assert s.get(t10.txn_id).status is Status.APPROVED
        plans = [row[3] for sql in statements if "terminal_id" in sql and "batch = '000001'" not in sql
                 for row in s._r().execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert plans and not [p for p in plans if p.startswith("SCAN")], plans


def test_a_file_made_with_the_events_in_list_check_is_given_the_equivalent_one_and_keeps_its_rows(tmp_path, clock):
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)  # a file from before: the journal's event CHECK as an IN list
    conn.executescript(schema.SCHEMA.replace(schema.EVENTS_CHECK, schema.OLD_EVENTS_CHECK))
    conn.close()
    with SQLiteLedger(path, clock=clock) as s:
        s.open_batch(TID)
        s.commit(sale_unit(s, 1, 100))
    conn = sqlite3.connect(path)
    journal_sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'journal'").fetchone()[0]
    conn.close()
    assert schema.OLD_EVENTS_CHECK not in journal_sql and schema.EVENTS_CHECK in journal_sql
    with SQLiteLedger(path, clock=clock) as s:  # opened again: nothing left to change
        assert not schema.upgrade_events_check(s._w)
        assert s._w.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [t.amount for t in s.transactions(TID)] == [100]
        s.commit(sale_unit(s, 2, 200))
        assert [e.event for e in s.journal()] == [Event.AUTHORISED, Event.AUTHORISED]
        for event in (*schema.EVENTS, "BOGUS", "authorised", None):  # the same values pass as with the IN list
            ok = event in schema.EVENTS
            try:
                s._w.execute("SAVEPOINT probe")
                s._w.execute("INSERT INTO journal (txn_id, event, amount, at, details) VALUES ('x', ?, 0, 0, '{}')",
                             (event,))
                passed = True
            except sqlite3.IntegrityError:
                passed = False
            finally:
                s._w.execute("ROLLBACK TO probe")
                s._w.execute("RELEASE probe")
            assert passed == ok, event


def test_a_file_that_cannot_be_changed_keeps_its_in_list_check_and_still_reads(tmp_path):
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema.SCHEMA.replace(schema.EVENTS_CHECK, schema.OLD_EVENTS_CHECK))
    conn.execute("PRAGMA query_only = ON")  # as a read-only file: the upgrade's write is refused
    assert not schema.upgrade_events_check(conn)
    assert not conn.in_transaction and conn.execute("SELECT count(*) FROM journal").fetchone() == (0,)
    assert schema.OLD_EVENTS_CHECK in conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'journal'").fetchone()[0]
    conn.close()


def test_a_plain_units_journal_row_builds_no_table_per_row(tmp_path, clock):
    # the IN list of the event CHECK was an ephemeral table built for every row inserted, and an
    # INSERT ... SELECT a statement journal per row: the plain insert has neither now
    with SQLiteLedger(tmp_path / "ledger.db", clock=clock) as s:
        ops = [r[1] for r in s._w.execute("EXPLAIN " + apply._PLAIN_JOURNAL, (None,) * 10)]
    assert "OpenEphemeral" not in ops and "InitCoroutine" not in ops


def test_sale_in_a_batch_the_host_has_not_open_is_refused(store):
    with pytest.raises(BatchNotOpen):
        store.commit(sale_unit(store, 1, 1000, batch="000042"))
    store.commit(decline_unit(store, 2, 1000, batch="000042"))  # declines are kept whatever the batch


def test_open_batch_is_idempotent_and_closing_opens_the_next(store):
    assert store.open_batch(TID) == "000001" == store.current_batch(TID)
    assert store.close_batch(TID, "000001") == "000002" == store.current_batch(TID)
    assert store.open_batch(TID) == "000002"
    assert store.batch(TID, "000001").closed_at is not None
    assert store.current_batch("T0000009") is None


def test_rrns_are_twelve_digits_and_unique_across_restarts(tmp_path, clock):
    seen = []
    for _ in range(3):
        with SQLiteLedger(tmp_path / "l.db", clock=clock, rrn_block=5) as s:
            seen += [s.next_rrn() for _ in range(12)]
    assert len(set(seen)) == len(seen) == 36
    assert all(len(r) == 12 and r.isdigit() for r in seen)


def test_a_refused_unit_stores_nothing_while_the_rest_of_its_group_commits(store):
    store.commit(sale_unit(store, 1, 100))
    units = [sale_unit(store, 2, 200), refund_unit(store, 3, 500, txn(store, 1)), sale_unit(store, 4, 400)]
    results = store.commit_many(units)
    assert [type(r).__name__ for r in results] == ["Receipt", "RefundExceedsRemaining", "Receipt"]
    assert isinstance(results[1], Rejected)
    assert sorted(t.stan for t in store.transactions()) == ["000001", "000002", "000004"]
    assert store.lookup_response(TID, "000001", "000003") is None


def test_a_transaction_twice_in_a_group_or_again_later_is_a_duplicate_before_anything_else(store):
    # a group is applied whole without looking for existing transactions first: the refusals must
    # still be the precise ones, in their order (a duplicate before a closed batch)
    first = sale_unit(store, 1, 100)
    again = CommitUnit(first.entries)  # the same transaction, no response kept
    results = store.commit_many([first, sale_unit(store, 2, 200), again, sale_unit(store, 3, 300)])
    assert [type(r).__name__ for r in results] == ["Receipt", "Receipt", "DuplicateTransaction", "Receipt"]
    assert [r.seqs for r in results if not isinstance(r, Exception)] == [(1,), (2,), (3,)]
    store.close_batch(TID, "000001")
    results = store.commit_many([sale_unit(store, 4, 400), again])
    assert [type(r).__name__ for r in results] == ["Receipt", "DuplicateTransaction"]
    assert sorted(t.stan for t in store.transactions()) == ["000001", "000002", "000003", "000004"]
    assert store.project_journal() == store.transactions()


def test_request_digest_is_sm3_of_the_message_without_its_mac():
    message = Frame.decode_body(framed()["sale-request"][2:]).message
    body, mac = mac_input(message)
    remaced = body + bytes(b ^ 0xFF for b in mac)  # e.g. resent under a new TAK after signing on again
    assert request_digest(message) == request_digest(remaced) == sm3(body)
    other = Frame.decode_body(framed()["void-request"][2:]).message
    assert request_digest(other) != request_digest(message)


def test_a_full_disk_fails_the_group_with_system_error_and_loses_nothing_stored(local_store):
    local_store.commit(sale_unit(local_store, 1, 1000))
    before = local_store.transactions()
    pages = local_store._w.execute("PRAGMA page_count").fetchone()[0]
    local_store._w.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: SQLITE_FULL
    units = [sale_unit(local_store, i, 100) for i in range(2, 400)]
    results = local_store.commit_many(units)
    assert results and all(isinstance(r, LedgerUnavailable) for r in results)
    assert results[0].response_code is ResponseCode.SYSTEM_ERROR and "full" in str(results[0])
    assert local_store.transactions() == before and len(local_store.journal()) == 1
    assert local_store.lookup_response(TID, "000001", "000002") is None
    local_store._w.execute("PRAGMA max_page_count = 1073741823")
    local_store.commit(units[0])
    assert len(local_store.transactions()) == 2


def test_rrns_follow_the_business_day_across_midnight(tmp_path, clock):
    with SQLiteLedger(tmp_path / "l.db", clock=clock, rrn_block=5) as s:
        clock.now = dt.datetime(2025, 11, 24, 23, 59, 59, tzinfo=BUSINESS_TZ).timestamp()
        before = [s.next_rrn() for _ in range(3)]
        clock.advance(1)  # midnight in China: day 329 -> 330
        after = s.next_rrn()
    assert [r[:4] for r in before] == ["5328"] * 3 and after[:4] == "5329"
    assert int(after[4:]) == 1  # each day counts from 1
