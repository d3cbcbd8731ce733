"""Group commit: many units, one transaction, one fsync.

An fsync costs about as much for one unit as for a thousand, so one background thread
takes every unit queued so far, applies them all in ONE store transaction
(`LedgerStore.commit_many`), COMMITs, and only then wakes every waiter. A response
can therefore never leave before its unit is durable, and while one group is being
fsync'ed the next one gathers.

Companion stores (`companion.GroupedWrites`: the card vault, the issuer simulator) are
flushed by the same thread after a group is gathered and before its units commit, so a
committed unit never depends on a companion write that is not.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import LedgerClosed, LedgerError, LedgerUnavailable
from .model import CommitUnit, Receipt
from .store import LedgerStore

_STOP = object()
log = logging.getLogger("acquirer.ledger.writer")


@dataclass
class _Waiter:
    unit: CommitUnit
    loop: asyncio.AbstractEventLoop | None  # None: a blocking caller with a concurrent future
    future: Any


class Companion(Protocol):
    def flush(self) -> None: ...


class LedgerWriter:
    """The one writer of a ledger. `await commit(unit)` from asyncio, `commit_now(unit)` from threads."""

    def __init__(self, store: LedgerStore, *, max_group: int = 2_000, name: str = "ledger-writer",
                 companions: tuple[Companion, ...] = ()):
        self.store = store
        self.companions = companions
        self.max_group = max_group
        self.groups = 0  # transactions committed
        self.units = 0  # units applied (stored or refused)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = False
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def commit(self, unit: CommitUnit) -> Receipt:
        """Returns once the unit is durable; raises the `LedgerError` that refused it.

        A cancelled caller does not cancel the unit: it may still be committed.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit(_Waiter(unit, loop, future))
        return await future

    def commit_now(self, unit: CommitUnit) -> Receipt:
        """Blocking form, for callers outside an event loop; shares the same groups."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._submit(_Waiter(unit, None, future))
        return future.result()

    def _submit(self, waiter: _Waiter) -> None:
        with self._submit_lock:
            if self._closing:
                raise LedgerClosed("ledger writer is closed")
            self._queue.put(waiter)

    def close(self) -> None:
        """Commits everything already queued, then stops. Later commits raise `LedgerClosed`."""
        with self._submit_lock:
            if not self._closing:
                self._closing = True
                self._queue.put(_STOP)
        self._thread.join()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    @property
    def mean_group_size(self) -> float:
        return self.units / self.groups if self.groups else 0.0

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            group: list[_Waiter] = []
            if first is _STOP:
                stopping = True
            else:
                group.append(first)
            while len(group) < self.max_group:  # everything queued so far joins this group
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True  # still commit what came before it, and anything behind it
                    continue
                group.append(item)
            if group:
                self._commit_group(group)
        while True:  # drain: nothing can be queued after _STOP, but be sure
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._commit_group([item])
        try:
            self._flush_companions()  # writes no unit followed (a give-back after the last group)
        except Exception:
            log.exception("flushing companion stores at close failed")

    def flush_companions(self) -> None:
        """Commit companion writes now: for a response that carries no unit (any thread)."""
        for companion in self.companions:
            companion.flush()

    _flush_companions = flush_companions

    def _commit_group(self, group: list[_Waiter]) -> None:
        try:
            self._flush_companions()
            results: list[Any] = self.store.commit_many([w.unit for w in group])
        except Exception as exc:  # a store failed: nobody's unit is known to be durable
            err = exc if isinstance(exc, LedgerError) else LedgerUnavailable(f"ledger writer failed: {exc}")
            results = [err] * len(group)
        self.groups += 1
        self.units += len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for waiter, result in zip(group, results):
            if waiter.loop is None:
                if not waiter.future.set_running_or_notify_cancel():
                    continue  # cancelled by its caller
                if isinstance(result, BaseException):
                    waiter.future.set_exception(result)
                else:
                    waiter.future.set_result(result)
            else:
                by_loop.setdefault(waiter.loop, []).append((waiter.future, result))
        for loop, pairs in by_loop.items():  # one wake-up per event loop, not per unit
            try:
                loop.call_soon_threadsafe(settle, pairs)
            except RuntimeError:  # that loop is closed: its callers are gone
                pass


def settle(pairs: list[tuple[asyncio.Future, Any]]) -> None:
    """Answer each waiter with its result or its error (a cancelled caller is skipped)."""
    for future, result in pairs:
        if future.done():  # the caller was cancelled
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
