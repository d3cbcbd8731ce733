"""The terminal's own history (terminal/journal.py), on a real SQLite file."""
from __future__ import annotations

import sqlite3

import pytest

from terminal.journal import Journal


def test_a_failed_record_leaves_nothing_and_the_journal_usable(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    try:
        sale = journal.record(batch="000001", stan="000001", kind="sale", channel="CD", amount=1000, code="00")
        with pytest.raises(sqlite3.Error):  # a value SQLite cannot bind: the statement fails mid-transaction
            journal.record(batch="000001", stan="000002", kind="refund", channel="CD", amount=object(), code="00",
                           original=sale)
        assert [e.stan for e in journal.entries()] == ["000001"] and journal.get(sale.id).refunded == 0
        refund = journal.record(batch="000001", stan="000003", kind="refund", channel="CD", amount=400, code="00",
                                original=sale)  # the connection is not left inside the failed transaction
        assert refund.amount == 400 and journal.get(sale.id).refundable == 600
    finally:
        journal.close()
