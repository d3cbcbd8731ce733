"""Group commit and durability of the host ledger, with real SQLite files and real processes."""
from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from acquirer.ledger import LedgerClosed, LedgerUnavailable, LedgerWriter, Receipt, SQLiteLedger
from acquirer.ledger.companion import GroupedWrites
from acquirer.protocol import ResponseCode

from .ledger_helpers import TID, refund_unit, sale_unit, txn

ROOT = Path(__file__).resolve().parents[2]


class GatedLedger(SQLiteLedger):
    """Holds its first group commit until the test opens the gate, and records group sizes."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.entered, self.gate, self.groups = threading.Event(), threading.Event(), []

    def commit_many(self, units):
        self.groups.append(len(units))
        self.entered.set()
        self.gate.wait()
        return super().commit_many(units)


@pytest.fixture
def store(tmp_path):
    s = SQLiteLedger(tmp_path / "ledger.db")
    s.open_batch(TID)
    yield s
    s.close()


@pytest.fixture
def gated(tmp_path):
    s = GatedLedger(tmp_path / "gated.db")
    s.open_batch(TID)
    yield s
    s.gate.set()
    s.close()


def test_500_concurrent_commits_all_resolve_and_are_all_stored(store):
    units = [sale_unit(store, i, 100 + i) for i in range(1, 501)]
    writer = LedgerWriter(store)

    async def main():
        return await asyncio.gather(*(writer.commit(u) for u in units))
    try:
        receipts = asyncio.run(main())
    finally:
        writer.close()
    assert all(isinstance(r, Receipt) and len(r.seqs) == 1 for r in receipts)
    assert len({r.seqs[0] for r in receipts}) == 500
    assert len(store.transactions()) == 500 and len(store.journal()) == 500
    assert all(store.lookup_response(TID, u.response.batch, u.response.stan) for u in units)
    assert writer.units == 500 and 1 <= writer.groups <= 500
    assert store.project_journal() == store.transactions()


def test_units_queued_while_a_commit_is_in_flight_join_one_group(gated):
    writer = LedgerWriter(gated)

    async def main():
        first = asyncio.create_task(writer.commit(sale_unit(gated, 1, 100)))
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait)
        rest = [asyncio.create_task(writer.commit(sale_unit(gated, i, 100))) for i in range(2, 52)]
        await asyncio.sleep(0)  # every task has queued its unit
        gated.gate.set()
        return await asyncio.gather(first, *rest)
    try:
        receipts = asyncio.run(main())
    finally:
        writer.close()
    assert len(receipts) == 51
    assert gated.groups == [1, 50]


def test_a_refused_unit_in_a_group_leaves_the_others_committed(gated):
    """A group is applied whole when it can be; when one unit is refused the group is applied
    again unit by unit, so only that one fails and nothing of it stays."""
    from acquirer.ledger import DedupConflict, RefundExceedsRemaining

    writer = LedgerWriter(gated)
    sale = sale_unit(gated, 1, 1000)
    sale_id = sale.entries[0].txn_id

    async def main():
        first = asyncio.create_task(writer.commit(sale))
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait)
        group = [sale_unit(gated, 2, 200), sale_unit(gated, 2, 300),  # the same STAN for another request
                 refund_unit(gated, 3, 900, sale_id), refund_unit(gated, 4, 200, sale_id),  # 1000 - 900 < 200
                 sale_unit(gated, 5, 500)]
        rest = [asyncio.create_task(writer.commit(u)) for u in group]
        await asyncio.sleep(0)
        gated.gate.set()
        await first
        return await asyncio.gather(*rest, return_exceptions=True)
    try:
        outcomes = asyncio.run(main())
    finally:
        writer.close()
    assert gated.groups == [1, 5]
    assert [type(o).__name__ for o in outcomes] == [
        "Receipt", DedupConflict.__name__, "Receipt", RefundExceedsRemaining.__name__, "Receipt"]
    assert sorted(t.amount for t in gated.transactions()) == [200, 500, 900, 1000]
    assert gated.get(sale_id).refundable == 100 and len(gated.journal()) == 4
    assert gated.project_journal() == gated.transactions()


def test_no_response_is_released_before_its_unit_is_committed(gated):
    writer = LedgerWriter(gated)
    unit = sale_unit(gated, 1, 100)

    async def main():
        task = asyncio.create_task(writer.commit(unit))
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait)
        for _ in range(20):
            await asyncio.sleep(0.005)
            assert not task.done()
        gated.gate.set()
        await task
        other = sqlite3.connect(gated.path)  # committed, so another connection sees it at once
        try:
            return other.execute("SELECT count(*) FROM responses").fetchone()[0]
        finally:
            other.close()
    try:
        assert asyncio.run(main()) == 1
    finally:
        writer.close()


def test_close_commits_everything_queued_then_refuses_more(gated):
    writer = LedgerWriter(gated)

    async def main():
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(writer.commit(sale_unit(gated, i, 100))) for i in range(1, 31)]
        await loop.run_in_executor(None, gated.entered.wait)
        await asyncio.sleep(0)  # all 30 are queued; the first group is held at the gate
        closing = loop.run_in_executor(None, writer.close)
        gated.gate.set()
        await closing
        return await asyncio.gather(*tasks)
    assert len(asyncio.run(main())) == 30
    assert len(gated.transactions()) == 30
    with pytest.raises(LedgerClosed):
        writer.commit_now(sale_unit(gated, 99, 100))


def test_a_storage_failure_answers_every_waiter_with_system_error(tmp_path):
    class FailingLedger(SQLiteLedger):
        fail = True

        def commit_many(self, units):
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            return super().commit_many(units)

    s = FailingLedger(tmp_path / "l.db")
    s.open_batch(TID)
    writer = LedgerWriter(s)

    async def main(units):
        return await asyncio.gather(*(writer.commit(u) for u in units), return_exceptions=True)
    try:
        failed = asyncio.run(main([sale_unit(s, i, 100) for i in range(1, 6)]))
        assert all(isinstance(r, LedgerUnavailable) and r.response_code is ResponseCode.SYSTEM_ERROR
                   for r in failed)
        s.fail = False  # the writer keeps going once storage is back
        assert isinstance(writer.commit_now(sale_unit(s, 1, 100)), Receipt)
    finally:
        writer.close()
        s.close()


# --- durability across a killed process -----------------------------------------------
_PRELUDE = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from acquirer.ledger import LedgerWriter, SQLiteLedger
from tests.acquirer.ledger_helpers import TID, sale_unit
store = SQLiteLedger({path!r})
store.open_batch(TID)
writer = LedgerWriter(store)
"""


def run_child(path: Path, body: str, **popen) -> subprocess.Popen:
    code = _PRELUDE.format(root=str(ROOT), path=str(path)) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True, **popen)


def test_a_unit_whose_commit_returned_survives_the_process_exiting_at_once(tmp_path):
    path = tmp_path / "ledger.db"
    child = run_child(path, """
        asyncio.run(writer.commit(sale_unit(store, 1, 1000)))
        writer.commit_now(sale_unit(store, 2, 2000))
        store.commit(sale_unit(store, 3, 3000))
        print("committed", flush=True)
        os._exit(0)  # no close, no checkpoint, no cleanup
    """)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "committed"
    with SQLiteLedger(path) as reopened:
        assert [(t.stan, t.amount) for t in reopened.transactions()] == \
            [("000001", 1000), ("000002", 2000), ("000003", 3000)]
        assert reopened.lookup_response(TID, "000001", "000002") is not None
        assert reopened.project_journal() == reopened.transactions()


def test_every_acknowledged_unit_survives_a_sigkill_in_the_middle_of_group_commits(tmp_path):
    path = tmp_path / "ledger.db"
    child = run_child(path, """
        async def one(i):
            await writer.commit(sale_unit(store, i, 100 + i))
            print(i, flush=True)  # the "response" leaves only now

        async def main():
            pending = set()
            for i in range(1, 900_000):
                pending.add(asyncio.create_task(one(i)))
                if len(pending) >= 64:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        asyncio.run(main())
    """)
    acknowledged = []
    try:
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= 1500:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL and len(acknowledged) >= 1500
    with SQLiteLedger(path) as reopened:
        stored = {int(t.stan) for t in reopened.transactions()}
        assert set(acknowledged) <= stored
        assert all(reopened.get(txn(reopened, i)).amount == 100 + i for i in acknowledged)
        assert reopened.project_journal() == reopened.transactions()


# --- companion stores (vault, issuer, fence store) ---------------------------------------
class _Journal(GroupedWrites):
    """A companion on a real SQLite file that notes when it is flushed."""

    def __init__(self, path, log: list):
        super().__init__(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
        self.conn.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER)")
        self.log = log

    def flush(self) -> None:
        pending = self.conn.in_transaction
        super().flush()
        self.log.append(("flush", pending))


class _LoggedLedger(SQLiteLedger):
    def __init__(self, path, log: list):
        super().__init__(path)
        self.log = log

    def commit_many(self, units):
        self.log.append(("commit", len(units)))
        return super().commit_many(units)


def test_companion_writes_are_committed_before_the_units_that_follow_them(tmp_path):
    log: list = []
    store = _LoggedLedger(tmp_path / "ledger.db", log)
    store.open_batch(TID)
    side = _Journal(tmp_path / "side.db", log)
    writer = LedgerWriter(store, companions=(side,))

    async def sale(n):
        side.execute("INSERT INTO rows VALUES (?)", (n,))  # what the unit depends on, written first
        await writer.commit(sale_unit(store, n, 100))
        # once the unit is durable, so is the companion row: another connection sees it
        with sqlite3.connect(tmp_path / "side.db") as other:
            assert other.execute("SELECT COUNT(*) FROM rows WHERE n = ?", (n,)).fetchone() == (1,)

    async def main():
        await asyncio.gather(*(sale(n) for n in range(1, 41)))
    asyncio.run(main())
    side.execute("INSERT INTO rows VALUES (0)")  # a write no unit follows: committed when the writer closes
    writer.close()
    with sqlite3.connect(tmp_path / "side.db") as other:
        assert other.execute("SELECT COUNT(*) FROM rows").fetchone() == (41,)
    commits = [i for i, (what, _) in enumerate(log) if what == "commit"]
    assert commits and all(i > 0 and log[i - 1][0] == "flush" for i in commits)  # every group: flush, then commit
    side.conn.close()
    store.close()
