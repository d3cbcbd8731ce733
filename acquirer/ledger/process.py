"""The ledger's group commits applied in a process of their own.

Why: the host's event loop and the ledger writer thread share one interpreter lock.
Every SQLite statement releases it and must win it back from an event loop that is
busy with the next requests, so in one process a group commit of ten statements per
sale spent about three times its CPU waiting for the lock (`bench/host_steps.py`
measured 1,140 us of wall time for 314 us of CPU per unit): the writer thread, not
the CPU, capped the host. Here the statements run in a child process with its own
interpreter and its own core.

Two clients of the same child: `ProcessLedgerWriter`, which the host's event loop
feeds itself (no thread in the host), and `LedgerProcess`, a blocking one behind
`SQLiteLedger(writer_process=True)` (what the ledger tests run every rule through).

Nothing about durability changes: the child COMMITs with synchronous=FULL before it
answers, and no response is released before that answer. `SQLiteLedger` keeps its
caches from the answers (`_remember`), as before. A host that dies closes the child's
stdin, and the child exits after the group it is applying. A child that dies is
replaced; what its unanswered group gets is said by each client.

Wire (stdin/stdout of the child, acquirer.childproc): request ("apply", at, units[,
companion writes]) -> the list of results (Receipt or LedgerError), or ("close",). A plain
unit crosses as its rows and its Receipt as its seqs (acquirer.ledger.rows: what pickling
the dataclasses cost both processes).

The child reads all that waits in its pipe at once. Groups that waited together (the host
sent the next while the child was applying one: a busy machine) are committed in one
transaction, one fsync (`SQLiteLedger.commit_groups`), each unit getting what it would
get in its own group, and all their answers leave in one write, after that COMMIT.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
from collections import deque
from typing import Sequence

from acquirer.childproc import PROJECT_ROOT, Child, Messages, command, pack, receive, send, spawn, stop

from .errors import LedgerClosed, LedgerError, LedgerUnavailable
from .model import CommitUnit, Receipt
from .rows import receipts, to_row
from .writer import settle

log = logging.getLogger("acquirer.ledger.process")


class LedgerProcess:
    """A blocking client: applies groups in the child, starting one when there is none. A
    child that dies fails the group in flight ("ledger unavailable")."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.started = 0  # children started (1 unless one died)

    def _child(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            argv, env = command("acquirer.ledger.process", self.path)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
            try:
                if receive(proc.stdout) != ("ready",):  # the ledger is open there
                    raise EOFError("ledger process did not say it was ready")
            except EOFError:
                proc.kill()
                proc.wait()
                raise
            self._proc = proc
            self.started += 1
        return self._proc

    def apply(self, units: Sequence[CommitUnit], at: float) -> list:
        """Apply and COMMIT one group in the child; its results, one per unit."""
        with self._lock:
            proc = self._child()
            try:
                send(proc.stdin, ("apply", at, [to_row(u) for u in units]))
                return receipts(receive(proc.stdout))
            except (EOFError, OSError, pickle.PickleError) as exc:
                self._discard()
                raise LedgerUnavailable(f"ledger process failed: {exc}") from None

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            try:
                send(proc.stdin, ("close",))
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _same(value):
    return value


def bind_as_is() -> None:
    """Bytes and None bound with no adaptation lookup. sqlite3 binds only exact int, float,
    str and bytearray straight away; any other value (a response's bytes, a vault row's
    sealed card, a NULL original) is first looked up in the adapter registry and then asked
    for `__adapt__` and `__conform__`, which fail by raising and clearing an AttributeError
    whose message is formatted: about 3,500 instructions a value, five a sale. An adapter
    registered for the exact type is found at once and binds the value itself. The registry
    is per process: this one only (`main`), whose every statement is the ledger's."""
    for kind in (bytes, type(None)):
        sqlite3.register_adapter(kind, _same)


def main(path: str) -> int:
    from .sqlite import SQLiteLedger

    bind_as_is()
    ledger = SQLiteLedger(path)
    companions = _CompanionFiles()
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    _write_all(fd_out, pack(("ready",)))
    # What exists now (modules, the ledger) lives as long as the process: frozen, the
    # collector's full passes no longer walk it each time the group tuples trigger one.
    gc.freeze()
    messages, buf = Messages(), bytearray(1 << 16)
    try:
        with memoryview(buf) as view:
            while True:
                # everything waiting in the pipe in one read (not two reads per message), into
                # one buffer kept for the purpose (not 64 KiB allocated at each read)
                n = os.readv(fd_in, (buf,))
                if not n:  # the host is gone
                    return 0
                groups = []
                for request in messages.feed(view[:n]):
                    if request[0] == "close":
                        _apply(ledger, companions, groups, fd_out)
                        return 0
                    groups.append(request)
                _apply(ledger, companions, groups, fd_out)
    finally:
        companions.close()
        ledger.close()


def _apply(ledger, companions: "_CompanionFiles", requests: list, fd_out: int) -> None:
    """Apply the groups that were waiting together (in their order), each after its companion
    writes, and answer each. Groups that were waiting together are committed in ONE
    transaction (`SQLiteLedger.commit_groups`: one fsync), each with its own time, and
    answered once it is committed: a group refused by its companion writes first has
    the groups before it committed and answered."""
    ready: list = []  # (units, at) whose companion writes are in
    for _, at, units, *writes in requests:
        try:
            companions.write(writes[0] if writes else ())
        except sqlite3.Error as exc:  # no unit goes in after companion writes that may be lost
            _commit(ledger, ready, fd_out)
            ready = []
            _write_all(fd_out, pack([LedgerUnavailable(f"companion store write failed: {exc}")] * len(units)))
            continue
        ready.append((units, at))
    _commit(ledger, ready, fd_out)


def _commit(ledger, groups: list, fd_out: int) -> None:
    if groups:  # the host's ledger keeps the read caches
        _write_all(fd_out, b"".join(map(pack, ledger.commit_groups(groups))))


def _write_all(fd: int, data: bytes) -> None:
    """One write() for all the answers (a pipe takes a very large one in parts)."""
    done = os.write(fd, data)
    while done < len(data):
        done += os.write(fd, data[done:])


class _CompanionFiles:
    """The child's connections to the companion stores whose rows ride with a group (the
    card vault): each write is (path, sql, rows), committed in a transaction of its own
    before the group's units. The store's own connection made the file and its table and
    keeps its settings; this one uses the vault's (WAL, synchronous NORMAL: see
    acquirer/vault.py for why a vault row needs no fsync of its own)."""

    def __init__(self):
        self._conns: dict[str, sqlite3.Connection] = {}

    def write(self, writes) -> None:
        for path, sql, rows in writes:
            conn = self._conns.get(path)
            if conn is None:
                conn = self._conns[path] = sqlite3.connect(path, isolation_level=None, timeout=30.0)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA temp_store=MEMORY")  # a statement journal in memory, not a temporary file
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))


class _Group(list):
    """(unit, future) pairs sent to the ledger process together, and the (companion, token)
    of the companion writes that went with them."""

    __slots__ = ("taken",)

    def __init__(self, items):
        super().__init__(items)
        self.taken: list = []


class ProcessLedgerWriter:
    """`LedgerWriter`'s interface, for the host's event loop, with no thread in the host.

    The thread of `LedgerWriter` spends most of a group waiting for the ledger process,
    and every time it wakes it takes the interpreter lock from the event loop, which then
    waits at each of its own system calls to get it back. Here the event loop itself
    sends a group and reads the answer from the pipe. Up to `max_in_flight` groups are at
    the ledger process at once (it applies them in order), so the next group is already
    waiting in the pipe when one is committed: the ledger process does not idle while
    the loop, busy with other sales, has not yet read the answer. Units that arrive
    while that many groups are out wait for the next one.

    Companion stores keep their order: companion writes committed, then the units that
    depend on them, then the answers. A companion that can hand its writes over
    (`take_writes`: the card vault) sends them with the group, and the ledger process
    commits them just before the group's units, so the event loop runs no SQLite write
    for it; `written` then tells it whether they are in its file (if not, they are sent
    again with the next group). Any other companion is flushed on the loop just before
    its group leaves.

    A ledger process that dies with groups in flight may have committed them before it
    could answer. So they are not answered "unavailable" blindly: once a new process
    runs, each unit is looked up in the file (`_outcome`). A unit whose exact response,
    or whose transactions with their RRNs, are there was committed and is answered as
    such; any other is refused (96). A batch close or upload is refused unless it shows.
    """

    def __init__(self, store, companions: tuple = (), *, max_group: int = 2_000, max_in_flight: int = 2):
        self.store = store  # the host's SQLiteLedger: its caches learn from every answer
        self.companions = companions
        self.max_group = max_group
        self.max_in_flight = max_in_flight
        self.groups = 0
        self.units = 0
        self.started = 0
        self._queue: list[tuple[CommitUnit, asyncio.Future]] = []
        self._sent: deque[_Group] = deque()  # at the process, oldest first
        self._proc: Child | None = None
        self._reader: asyncio.Task | None = None
        self._scheduled = False
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def mean_group_size(self) -> float:
        return self.units / self.groups if self.groups else 0.0

    async def start(self) -> "ProcessLedgerWriter":
        proc = await spawn("acquirer.ledger.process", self.store.path)
        if proc is None:
            raise LedgerUnavailable("ledger process did not start")
        self._proc = proc
        self._reader = asyncio.create_task(self._read(proc))
        self.started += 1
        return self

    async def commit(self, unit: CommitUnit) -> Receipt:
        """Returns once the unit is durable; raises the `LedgerError` that refused it.
        A cancelled caller does not cancel the unit: it may still be committed."""
        if self._closing:
            raise LedgerClosed("ledger writer is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((unit, future))
        self._idle.clear()
        if len(self._sent) < self.max_in_flight and not self._scheduled:
            self._scheduled = True  # everything queued in this turn of the loop leaves together
            loop.call_soon(self._send)
        return await future

    def flush_companions(self) -> None:
        """Commit companion writes now: for a response that carries no unit."""
        for companion in self.companions:
            companion.flush()

    def _send(self) -> None:
        self._scheduled = False
        if len(self._sent) >= self.max_in_flight or not self._queue:
            if not self._queue and not self._sent:
                self._idle.set()
            return
        group, self._queue = _Group(self._queue[:self.max_group]), self._queue[self.max_group:]
        self._sent.append(group)
        try:
            writes = []
            for companion in self.companions:
                take = getattr(companion, "take_writes", None)
                if take is None:
                    companion.flush()
                elif (found := take()) is not None:
                    writes.append(found[0])
                    group.taken.append((companion, found[1]))
            if self._proc is None or self._proc.returncode is not None or self._reader.done():
                raise LedgerUnavailable("ledger process is not running")
            self._proc.stdin.transport.write(pack(("apply", self.store._clock(), [to_row(unit) for unit, _ in group], writes)))
        except Exception as exc:  # nothing of this group is known to be durable
            err = exc if isinstance(exc, LedgerError) else LedgerUnavailable(f"ledger writer failed: {exc}")
            self._answer(group, [err] * len(group))

    def _answer(self, group: "_Group", results) -> None:
        if self._sent and self._sent[0] is group:
            self._sent.popleft()
        else:  # a group that failed to leave (the newest)
            self._sent = deque(g for g in self._sent if g is not group)
        # the child commits the companion writes before the units: one unit committed says they are in
        written = any(not isinstance(r, BaseException) for r in results)
        for companion, token in group.taken:
            companion.written(token, written)
        self.groups += 1
        self.units += len(group)
        settle([(future, result) for (_, future), result in zip(group, results)])
        self._send()  # what gathered meanwhile leaves now

    def _answered(self, answers: list) -> None:
        for results in answers:
            if not self._sent:
                continue
            group = self._sent[0]  # the process answers its groups in order
            results = receipts(results)
            self.store._remember([unit for unit, _ in group], results)
            self._answer(group, results)

    async def _read(self, proc: Child) -> None:
        try:
            await proc.receive_each(self._answered)
        except (ConnectionError, OSError, EOFError):
            pass
        finally:
            if not self._closing:
                asyncio.get_running_loop().create_task(self._restart())
            else:
                for group in list(self._sent):
                    self._answer(group, [LedgerUnavailable("ledger process ended")] * len(group))

    async def _restart(self) -> None:
        try:
            await self.start()
        except LedgerUnavailable as exc:
            log.error("%s", exc)
        if not self._sent:
            self._send()
        for group in list(self._sent):  # answered by what the file says (class docstring)
            log.error("ledger process ended with a group of %d units unanswered", len(group))
            results = [self._outcome(unit) for unit, _ in group]
            self.store._remember([unit for unit, _ in group], results)
            self._answer(group, results)

    def _outcome(self, unit: CommitUnit):
        """A Receipt if the file shows `unit` committed, else the error that refuses it."""
        unknown = LedgerUnavailable("ledger process ended before this unit was committed")
        try:
            if unit.upload is not None or unit.close is not None:
                return unknown  # the terminal settles again: the host says what the batch is then
            r = unit.response
            if r is not None:
                found = self.store.stored_response(r.terminal_id, r.batch, r.stan, reversal=r.reversal)
                return Receipt() if found is not None and found[1] == bytes(r.response) else unknown
            records = [e.record for e in unit.entries if e.record is not None]
            if records and all((t := self.store.get(rec.txn_id)) is not None and t.rrn == rec.rrn for rec in records):
                return Receipt()
        except Exception as exc:  # the file cannot be read either
            log.error("looking up an unanswered unit failed: %s", exc)
        return unknown

    async def aclose(self) -> None:
        """Commits everything already queued, then stops. Later commits raise `LedgerClosed`."""
        self._closing = True
        if self._queue or self._sent:
            await self._idle.wait()
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop(proc, pack(("close",)))
        if self._reader is not None:
            await self._reader
        self.flush_companions()  # writes no unit followed (a give-back after the last group)

    def close(self) -> None:
        raise RuntimeError("ProcessLedgerWriter runs on the event loop: await aclose()")
