"""write_transaction: all of a unit or nothing, and the connection ready for the next one."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from acquirer.sqlite_tx import write_transaction


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    yield conn
    conn.close()


def test_a_unit_that_raises_leaves_nothing_and_the_next_unit_commits(db):
    with pytest.raises(sqlite3.IntegrityError):
        with write_transaction(db) as tx:
            tx.execute("INSERT INTO t VALUES ('a', 1)")
            tx.execute("INSERT INTO t VALUES ('a', 2)")  # the second write fails: the first goes too
    assert not db.in_transaction and db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    lock = threading.Lock()
    with write_transaction(db, lock) as tx:
        assert lock.locked()
        tx.execute("INSERT INTO t VALUES ('a', 3)")
    assert not lock.locked() and db.execute("SELECT v FROM t").fetchall() == [(3,)]


def test_a_return_inside_the_unit_commits_what_it_wrote(db):
    def write() -> str:
        with write_transaction(db) as tx:
            tx.execute("INSERT INTO t VALUES ('b', 1)")
            return "done"
    assert write() == "done" and db.execute("SELECT k FROM t").fetchall() == [("b",)]
    assert not db.in_transaction
