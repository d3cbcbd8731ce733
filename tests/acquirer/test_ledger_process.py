"""The ledger process that applies the host's group commits: errors cross the pipe as
they are, a child that dies fails only the group in flight (nothing of it stored) and is
replaced, and a host that goes away takes its child with it."""
from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys

import pytest

from acquirer.ledger import errors
from acquirer.ledger import LedgerUnavailable, Receipt, SQLiteLedger
from acquirer.childproc import PROJECT_ROOT, receive, send

from .ledger_helpers import TID, sale_unit


def every_error():
    yield errors.LedgerUnavailable("disk full")
    yield errors.InvalidEntry("amount", "must be positive")
    yield errors.UnknownTransaction("T1:000001:000001")
    yield errors.UnknownBatch(TID, "000001")
    yield errors.AlreadyAnswered(b"\x02\x10stored reply")
    yield errors.DedupConflict("STAN used by another request")
    yield errors.RefundExceedsRemaining("T1:000001:000001", 500, 200)
    yield errors.BatchNotOpen("batch 000002 is not open")


@pytest.mark.parametrize("err", list(every_error()), ids=lambda e: type(e).__name__)
def test_every_ledger_error_crosses_a_pipe_as_it_is(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and back.args == err.args and vars(back) == vars(err)
    assert str(back) == str(err) and getattr(back, "response_code", None) == getattr(err, "response_code", None)


class _ExitOnArrival:
    """A unit the child cannot survive reading: it exits while unpickling the request."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_child_dying_mid_group_fails_that_group_only_and_is_replaced(tmp_path):
    ledger = SQLiteLedger(tmp_path / "ledger.db", writer_process=True)
    try:
        ledger.open_batch(TID)
        first = ledger.commit_many([sale_unit(ledger, 1, 100)])
        assert isinstance(first[0], Receipt) and ledger._process.started == 1
        doomed = [sale_unit(ledger, 2, 200), _ExitOnArrival()]
        results = ledger.commit_many(doomed)
        assert len(results) == 2 and all(isinstance(r, LedgerUnavailable) for r in results)
        assert "ledger process failed" in str(results[0])
        assert [t.stan for t in ledger.transactions()] == ["000001"]  # nothing of the group stayed
        again = ledger.commit_many([sale_unit(ledger, 3, 300)])
        assert isinstance(again[0], Receipt) and ledger._process.started == 2
        assert sorted(t.stan for t in ledger.transactions()) == ["000001", "000003"]
    finally:
        ledger.close()
    assert ledger._process._proc is None


def test_the_child_exits_when_its_host_goes_away(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    child = subprocess.Popen([sys.executable, "-m", "acquirer.ledger.process", str(tmp_path / "ledger.db")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
    store = SQLiteLedger(tmp_path / "ledger.db")
    try:
        store.open_batch(TID)
        assert receive(child.stdout) == ("ready",)
        send(child.stdin, ("apply", 1.0e9, [sale_unit(store, 1, 100)]))
        assert isinstance(receive(child.stdout)[0], Receipt)
        child.stdin.close()  # what the kernel does to the pipe when the host is killed
        assert child.wait(10) == 0
        assert [t.stan for t in store.transactions()] == ["000001"]
    finally:
        store.close()
        if child.poll() is None:
            child.kill()


def test_messages_split_anyhow_across_reads_come_out_whole_and_in_order():
    from acquirer.childproc import Messages, pack

    data = b"".join(pack((i, "x" * i, bytes(i))) for i in range(60))
    messages, out = Messages(), []
    for cut in range(0, len(data), 997):  # reads that end mid-length and mid-pickle
        out += messages.feed(data[cut:cut + 997])
    assert [m[0] for m in out] == list(range(60)) and all(m[1] == "x" * m[0] and m[2] == bytes(m[0]) for m in out)
    assert messages.feed(b"") == [] and not messages._buf


class _Companion:
    """Records, at each flush, how many units the ledger file holds: all before the group."""

    def __init__(self, store):
        self.store, self.seen = store, []

    def flush(self):
        self.seen.append(len(self.store.journal()))


def test_the_event_loop_writer_groups_commits_flushes_companions_first_and_survives_its_child(tmp_path):
    from acquirer.ledger import DedupConflict
    from acquirer.ledger.process import ProcessLedgerWriter

    store = SQLiteLedger(tmp_path / "ledger.db")
    store.open_batch(TID)
    companion = _Companion(store)

    async def main():
        writer = await ProcessLedgerWriter(store, (companion,)).start()
        try:
            units = [sale_unit(store, i, 100 + i) for i in range(1, 301)]
            receipts = await asyncio.gather(*(writer.commit(u) for u in units))
            assert all(isinstance(r, Receipt) for r in receipts) and len(store.journal()) == 300
            assert writer.groups < 300 and writer.units == 300  # they went in groups
            assert companion.seen == sorted(companion.seen) and len(companion.seen) >= writer.groups
            assert store.lookup_response(TID, units[0].response.batch, units[0].response.stan) is not None
            clash = sale_unit(store, 1, 999)  # STAN 1 again, another request
            outcomes = await asyncio.gather(writer.commit(clash), writer.commit(sale_unit(store, 301, 5)),
                                            return_exceptions=True)
            assert isinstance(outcomes[0], DedupConflict) and isinstance(outcomes[1], Receipt)
            writer._proc.kill()  # the ledger process dies between groups: the next one gets a new child
            await writer._reader
            while writer.started < 2:
                await asyncio.sleep(0.05)
            assert isinstance(await writer.commit(sale_unit(store, 302, 7)), Receipt)
        finally:
            await writer.aclose()
        with pytest.raises(errors.LedgerClosed):
            await writer.commit(sale_unit(store, 303, 9))

    try:
        asyncio.run(main())
        assert len(store.journal()) == 302
    finally:
        store.close()


def test_a_group_left_unanswered_by_a_dead_ledger_process_is_answered_by_what_the_file_holds(tmp_path):
    """The child may die after its COMMIT and before its answer: each unit of the groups it
    left unanswered (two may be out at once) is looked up in the file once a new child runs."""
    import signal

    from acquirer.ledger import BatchClose, CommitUnit, JournalEntry
    from acquirer.ledger.process import ProcessLedgerWriter

    from .ledger_helpers import record

    store = SQLiteLedger(tmp_path / "ledger.db")
    store.open_batch(TID)
    committed, lost, also_lost = sale_unit(store, 1, 100), sale_unit(store, 2, 200), sale_unit(store, 6, 600)
    quiet = record(store, 3, 300)  # a unit with no stored response (a static-code booking)
    store.commit(committed)  # as if the dead child had committed it
    store.commit(CommitUnit((JournalEntry.authorised(quiet),)))
    writer = ProcessLedgerWriter(store)
    assert isinstance(writer._outcome(committed), Receipt)
    assert isinstance(writer._outcome(CommitUnit((JournalEntry.authorised(quiet),))), Receipt)
    assert isinstance(writer._outcome(lost), errors.LedgerUnavailable)
    assert isinstance(writer._outcome(CommitUnit((), close=BatchClose(TID, "000001", None))), errors.LedgerUnavailable)

    async def main():
        await writer.start()
        try:
            os.kill(writer._proc.pid, signal.SIGSTOP)  # two groups reach a child that never answers...
            pending = asyncio.ensure_future(writer.commit(lost))
            await asyncio.sleep(0.1)
            also_pending = asyncio.ensure_future(writer.commit(also_lost))
            await asyncio.sleep(0.1)
            queued = asyncio.ensure_future(writer.commit(sale_unit(store, 5, 500)))  # a third waits its turn
            await asyncio.sleep(0.1)
            assert len(writer._sent) == 2 and len(writer._queue) == 1
            os.kill(writer._proc.pid, signal.SIGKILL)  # ...and dies
            for unanswered in (pending, also_pending):
                with pytest.raises(errors.LedgerUnavailable):
                    await unanswered
            assert isinstance(await queued, Receipt)  # went to the new child
            assert writer.started == 2
            assert isinstance(await writer.commit(sale_unit(store, 4, 400)), Receipt)
        finally:
            await writer.aclose()

    try:
        asyncio.run(main())
        assert sorted(t.stan for t in store.transactions()) == ["000001", "000003", "000004", "000005"]
    finally:
        store.close()


def test_the_vault_cards_of_a_group_are_committed_by_the_ledger_process_before_its_units(tmp_path):
    """The event loop sends the cards a group's sales kept; the ledger process writes them
    first. If it cannot, no unit of the group goes in and the cards wait for the next group."""
    import sqlite3

    from acquirer.ledger.process import ProcessLedgerWriter
    from acquirer.vault import CardVault
    from keys.hsm import HSM

    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    vault = CardVault(tmp_path / "vault.db", hsm, grouped=True)
    store = SQLiteLedger(tmp_path / "ledger.db")
    store.open_batch(TID)

    def cards_in_file() -> set[str]:
        with sqlite3.connect(tmp_path / "vault.db") as other:
            return {t for (t,) in other.execute("SELECT txn_id FROM cards")}

    async def main():
        writer = await ProcessLedgerWriter(store, (vault,)).start()
        try:
            units = [sale_unit(store, i, 100 + i) for i in (1, 2)]
            for unit in units:
                vault.keep(unit.entries[0].txn_id, "6214988660100000304", "2712", "01")
            assert all(isinstance(r, Receipt) for r in await asyncio.gather(*map(writer.commit, units)))
            assert cards_in_file() == {u.entries[0].txn_id for u in units}
            assert vault.take_writes() is None and not vault._sending

            broken = _BrokenCompanion(str(tmp_path / "vault.db"))  # a write the child cannot do
            writer.companions = (vault, broken)
            later = sale_unit(store, 3, 300)
            vault.keep(later.entries[0].txn_id, "6214988660100000304", "2712", "01")
            with pytest.raises(errors.LedgerUnavailable, match="companion"):
                await writer.commit(later)
            assert len(store.journal()) == 2  # no unit went in after it
            assert broken.told == [False] and vault.card(later.entries[0].txn_id) is not None
            writer.companions = (vault,)
            assert isinstance(await writer.commit(sale_unit(store, 4, 400)), Receipt)
            assert later.entries[0].txn_id in cards_in_file()  # set aside again, sent with the next group
        finally:
            await writer.aclose()

    try:
        asyncio.run(main())
        assert len(store.journal()) == 3
    finally:
        store.close()
        vault.close()
        hsm.close()


class _BrokenCompanion:
    def __init__(self, path: str):
        self.path, self.told = path, []

    def take_writes(self):
        return (self.path, "INSERT INTO no_such_table VALUES (?)", [(1,)]), "token"

    def written(self, token, ok: bool) -> None:
        self.told.append(ok)

    def flush(self) -> None:
        pass


def _groups(store):
    """Three groups of rows: the second replays a sale of the first (AlreadyAnswered) and
    reuses its STAN for another request (DedupConflict) among good ones."""
    from acquirer.ledger import CommitUnit, rows

    first = [sale_unit(store, 1, 100), sale_unit(store, 2, 200)]
    clash = sale_unit(store, 1, 999)  # STAN 1 again, another request
    second = [sale_unit(store, 3, 300), first[0], CommitUnit(clash.entries[1:], clash.response),
              sale_unit(store, 4, 400)]
    return [[rows.to_row(u) for u in g] for g in (first, second, [sale_unit(store, 5, 500)])]


def _answer(result):
    """A result as the callers get it (`rows.receipts`), comparable."""
    from acquirer.ledger import rows

    result = rows.receipts([result])[0]
    return result if isinstance(result, Receipt) else (type(result).__name__, str(result))


def _contents(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
                for t in ("journal", "transactions", "responses")]


def test_groups_committed_together_get_what_each_gets_alone(tmp_path):
    alone, together = SQLiteLedger(tmp_path / "alone.db"), SQLiteLedger(tmp_path / "together.db")
    try:
        for store in (alone, together):
            store.open_batch(TID)
        groups = _groups(alone)
        at = [1.0e9 + i for i in range(len(groups))]
        expected = [alone.commit_rows(g, t) for g, t in zip(groups, at)]
        got = together.commit_groups(list(zip(groups, at)))
        assert [[_answer(r) for r in g] for g in got] == [[_answer(r) for r in g] for g in expected]
        assert [type(_answer(r)).__name__ for r in expected[1]] == ["Receipt", "tuple", "tuple", "Receipt"]
        assert [_answer(r)[0] for r in expected[1][1:3]] == ["AlreadyAnswered", "DedupConflict"]
    finally:
        alone.close()
        together.close()
    assert _contents(tmp_path / "alone.db") == _contents(tmp_path / "together.db")


def test_the_child_answers_groups_that_waited_together_in_order_a_companion_failure_refusing_its_own(tmp_path):
    from acquirer.childproc import pack

    alone = SQLiteLedger(tmp_path / "alone.db")
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    child = subprocess.Popen([sys.executable, "-m", "acquirer.ledger.process", str(tmp_path / "child.db")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
    try:
        assert receive(child.stdout) == ("ready",)
        SQLiteLedger(tmp_path / "child.db").open_batch(TID)
        alone.open_batch(TID)
        groups = _groups(alone)
        broken = [(str(tmp_path), "INSERT INTO cards VALUES (?)", [(1,)])]  # a directory: no SQLite file opens
        vault = tmp_path / "vault.db"
        import sqlite3
        with sqlite3.connect(vault) as db:
            db.execute("CREATE TABLE cards (txn_id TEXT PRIMARY KEY, sealed BLOB NOT NULL)")
        cards = [(str(vault), "INSERT OR REPLACE INTO cards VALUES (?,?)", [("k", b"sealed")])]
        requests = [("apply", 1.0e9, groups[0], cards), ("apply", 1.0e9 + 1, groups[1], broken),
                    ("apply", 1.0e9 + 2, groups[2]), ("close",)]
        child.stdin.write(b"".join(map(pack, requests)))  # all waiting at once
        child.stdin.flush()
        answers = [receive(child.stdout) for _ in range(3)]
        assert child.wait(10) == 0
        expected = [alone.commit_rows(groups[0], 1.0e9), None, alone.commit_rows(groups[2], 1.0e9 + 2)]
        assert [_answer(r) for r in answers[0]] == [_answer(r) for r in expected[0]]
        assert all(isinstance(r, LedgerUnavailable) and "companion store write failed" in str(r) for r in answers[1])
        assert len(answers[1]) == len(groups[1])
        assert [_answer(r) for r in answers[2]] == [_answer(r) for r in expected[2]]
        with sqlite3.connect(vault) as db:
            assert db.execute("SELECT txn_id, sealed FROM cards").fetchall() == [("k", b"sealed")]
    finally:
        alone.close()
        if child.poll() is None:
            child.kill()
    assert _contents(tmp_path / "alone.db") == _contents(tmp_path / "child.db")


_BOUND = """
import sqlite3, sys
from acquirer.ledger import process
if sys.argv[1] == "as-is":
    process.bind_as_is()
class Blob(bytes):
    pass
conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v)")
values = [b"", b"\\x00\\xff" * 40, None, Blob(b"sub"), bytearray(b"ba"), memoryview(b"mv"), "text", 7, 2.5]
conn.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
print(conn.execute("SELECT group_concat(typeof(v) || ':' || quote(v), ' ') FROM t ORDER BY n").fetchone()[0])
"""


def test_the_ledger_process_binds_bytes_and_none_as_sqlite3_adapts_them():
    # bind_as_is registers adapters in its process: each binding is run in a process of its own
    out = {how: subprocess.run([sys.executable, "-c", _BOUND, how], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, check=True).stdout for how in ("as-is", "adapted")}
    assert out["as-is"] == out["adapted"] and "blob:X'00FF" in out["as-is"] and "null:NULL" in out["as-is"]
