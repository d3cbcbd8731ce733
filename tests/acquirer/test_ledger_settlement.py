"""Batch settlement, batch upload and the merchant report, on a real SQLite ledger."""
from __future__ import annotations

import datetime as dt

import pytest

from acquirer.ledger import (AlreadyAnswered, BatchClose, BatchItem, BatchNotOpen, BatchUpload, Channel,
                             ChannelTotals, CommitUnit, Event, MerchantRate, SQLiteLedger, Status, StoredResponse,
                             Totals, TotalsDifference, TxnKind, UnknownBatch, UploadProblem, request_digest)

from .ledger_helpers import (DAY, MID, TID, Clock, decline_unit, refund_unit, reversal_unit, sale_unit, txn,
                             void_unit)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = SQLiteLedger(tmp_path / "ledger.db", clock=clock)
    s.open_batch(TID)
    yield s
    s.close()


def a_day_of_business(store):
    """Card: sales 1000 + 2000 (+ a voided 500, a reversed 700, a declined 900), refund 300.
    QR: sale 2500. Face: sale 800, refund 800."""
    store.commit(sale_unit(store, 1, 1000))
    store.commit(sale_unit(store, 2, 2000))
    store.commit(sale_unit(store, 3, 500))
    store.commit(void_unit(store, 4, txn(store, 3)))
    store.commit(sale_unit(store, 5, 700))
    store.commit(reversal_unit(txn(store, 5)))
    store.commit(decline_unit(store, 6, 900))
    store.commit(refund_unit(store, 7, 300, txn(store, 1)))
    store.commit(sale_unit(store, 8, 2500, channel=Channel.QR))
    store.commit(sale_unit(store, 9, 800, channel=Channel.FACE))
    store.commit(refund_unit(store, 10, 800, txn(store, 9), channel=Channel.FACE))


EXPECTED = Totals(card=ChannelTotals(2, 3000, 1, 300), qr=ChannelTotals(1, 2500, 0, 0),
                  face=ChannelTotals(1, 800, 1, 800))


def settlement_response(stan: str, batch: str, text: bytes) -> StoredResponse:
    return StoredResponse(TID, batch, stan, request_digest(b"0500|" + stan.encode()), b"0510 " + text)


def test_totals_count_sales_and_refunds_by_channel_leaving_out_voided_reversed_and_declined(store):
    a_day_of_business(store)
    assert store.totals(TID, "000001") == EXPECTED
    with pytest.raises(UnknownBatch):
        store.totals(TID, "000042")


def test_balanced_settlement_closes_the_batch_settles_it_and_opens_the_next(store):
    a_day_of_business(store)
    result = store.settle(TID, "000001", EXPECTED)
    assert result.balanced and result.differences == ()
    receipt = store.commit(CommitUnit(response=settlement_response("000011", "000001", b"BALANCED"),
                                      close=BatchClose(TID, "000001", EXPECTED)))
    assert receipt.next_batch == "000002" == store.current_batch(TID)
    closed = store.batch(TID, "000001")
    assert (closed.balanced, closed.host_totals, closed.terminal_totals) == (True, EXPECTED, EXPECTED)
    statuses = {t.stan: t.status for t in store.transactions(TID, "000001")}
    assert statuses["000001"] is statuses["000004"] is statuses["000007"] is Status.SETTLED
    assert (statuses["000003"], statuses["000005"], statuses["000006"]) == \
        (Status.VOIDED, Status.REVERSED, Status.DECLINED)
    settled = [e for e in store.journal() if e.event is Event.SETTLED]
    assert len(settled) == 7 and set(receipt.seqs) == {e.seq for e in settled}
    with pytest.raises(BatchNotOpen):  # a second close of the same batch
        store.close_batch(TID, "000001")


def test_unbalanced_settlement_then_batch_upload_names_every_difference(store):
    store.commit(sale_unit(store, 1, 1000))
    store.commit(sale_unit(store, 2, 2000))
    store.commit(sale_unit(store, 3, 3000))
    store.commit(sale_unit(store, 5, 500, channel=Channel.QR))
    terminal = Totals(card=ChannelTotals(3, 6500, 0, 0))  # the terminal believes otherwise
    result = store.settle(TID, "000001", terminal)
    assert not result.balanced
    assert result.differences == (TotalsDifference(Channel.CARD, "sale_amount", 6000, 6500),
                                  TotalsDifference(Channel.QR, "sale_count", 1, 0),
                                  TotalsDifference(Channel.QR, "sale_amount", 500, 0))
    first = [BatchItem("000001", TxnKind.SALE, Channel.CARD, 1000), BatchItem("000002", TxnKind.SALE, Channel.CARD,
                                                                              2500)]
    second = [BatchItem("000004", TxnKind.SALE, Channel.CARD, 3000), BatchItem("000005", TxnKind.REFUND,
                                                                               Channel.QR, 500)]
    store.commit(CommitUnit(upload=BatchUpload(TID, "000001", first)))  # first 0320, stored with its 0330
    diffs = store.batch_upload(TID, "000001", second)  # the last 0320: compared with everything uploaded
    assert [(d.stan, d.problem) for d in diffs] == [
        ("000002", UploadProblem.AMOUNT_DIFFERS), ("000003", UploadProblem.MISSING_AT_TERMINAL),
        ("000004", UploadProblem.MISSING_AT_HOST), ("000005", UploadProblem.KIND_DIFFERS)]
    assert (diffs[0].host.amount, diffs[0].terminal.amount) == (2000, 2500)
    store.commit(CommitUnit(upload=BatchUpload(TID, "000001", second),
                            close=BatchClose(TID, "000001", terminal, diffs)))
    closed = store.batch(TID, "000001")
    assert closed.balanced is False and not closed.is_open
    assert [d["problem"] for d in closed.differences] == [d.problem.value for d in diffs]
    assert store.current_batch(TID) == "000002"


def test_settlement_response_and_close_are_one_unit_so_a_retry_replays(store):
    store.commit(sale_unit(store, 1, 1000))
    unit = CommitUnit(response=settlement_response("000002", "000001", b"BALANCED"),
                      close=BatchClose(TID, "000001", Totals(card=ChannelTotals(1, 1000))))
    store.commit(unit)
    with pytest.raises(AlreadyAnswered) as err:
        store.commit(unit)
    assert err.value.response == b"0510 BALANCED"
    assert store.current_batch(TID) == "000002"


def test_merchant_report_counts_the_day_and_charges_the_merchant_rate(store, clock):
    a_day_of_business(store)
    clock.advance(24 * 3600)  # the next day does not count
    store.commit(sale_unit(store, 20, 99_000))
    rates = {Channel.CARD: MerchantRate(38, fixed_fen=10), Channel.QR: MerchantRate(30),
             Channel.FACE: MerchantRate(60, fixed_fen=5)}
    report = store.merchant_report(MID, DAY, rates)
    rows = {r.channel: r for r in report.rows}
    card = rows[Channel.CARD]
    # sales 1000 -> 3.8 -> 4 + 10, 2000 -> 7.6 -> 8 + 10; refund 300 -> 1.14 -> 1 given back
    assert (card.sale_count, card.sale_amount, card.refund_count, card.refund_amount, card.fee) == \
        (2, 3000, 1, 300, 31)
    assert card.net == 3000 - 300 - 31
    assert (rows[Channel.QR].fee, rows[Channel.QR].count) == (8, 1)  # 2500 * 0.30 % = 7.5 -> 8
    assert rows[Channel.FACE].fee == 5 + 5 - 5  # 800 * 0.60 % = 4.8 -> 5, + 5 fixed, 5 back on the refund
    assert report.total.fee == 31 + 8 + 5 and report.total.sale_amount == 6300
    flat = store.merchant_report(MID, DAY + dt.timedelta(days=1), MerchantRate(100))
    assert [(r.channel, r.sale_amount, r.fee) for r in flat.rows] == [(Channel.CARD, 99_000, 990)]
    assert store.merchant_report("898440358120999", DAY, MerchantRate(38)).rows == ()
