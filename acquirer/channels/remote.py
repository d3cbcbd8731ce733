"""The simulated issuer as a process of its own, reached over a pipe: a real issuer is
another system behind the card network, and the host treats this one the same way.

Why a process: authorising a sale at the issuer (its accounts, limits, the ARQC check
and the ARPC) was the largest part of the host event loop's CPU, and the event loop,
holding the interpreter lock, is what caps the host. Here that work runs on the other
core and the loop pays for a pickle each way.

What changes at the boundary is what changes with a real issuer:
- The PIN block is translated from the terminal's TPK to the issuer zone key (ZPK)
  in the host's HSM before it leaves, as an acquirer does; the issuer's HSM holds only
  its own keys (its ZPK and card keys), which never rotate under it.
- The issuer commits its decisions before it answers (its group of requests at a
  time): an answer the host has seen is on the issuer's disk, before the host's ledger
  unit that depends on it.
- If the issuer process dies, the requests in flight answer 98 (issuer did not answer)
  and the next request starts a new one. A request that got no answer may still have
  been decided and committed, so each is followed by a reversal advice to the new
  process, as an acquirer sends one after an issuer timeout (a reversal of what was
  never approved changes nothing; a reversal that got no answer is sent again).

`IssuerProcess` is the host's side (asyncio). `main` runs in the child: it reads every
request waiting on its stdin, decides them in order, reads again while more has come
meanwhile, then commits once and answers them all (the busier, the bigger the group),
but never holds more than `ANSWER_EVERY` decisions back. A request crosses as one
message (`request_message`); the answers of a commit cross as one message, the list of
(id, result).

Both sides pass work on at once rather than in big groups, so that the event loop, the
issuer and the ledger work at the same time. A request leaves the moment the loop has
built it (not at the end of the loop's turn), and the issuer answers every few
decisions. Gathering a whole turn's requests made the three move in a convoy: a burst
of 16 sales went through the loop, then all through the issuer, then all through the
ledger, each idle while another worked (bench/host.py: about half the throughput).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import select
import sys

from acquirer.childproc import Child, Messages, pack, spawn, stop
from acquirer.protocol import ResponseCode
from keys.errors import CryptoError
from keys.hsm import HSM

from .base import CardAuthorisation, CardResult, Operation, _authorisation

log = logging.getLogger("acquirer.issuer.remote")

# decisions the child holds back at most while more requests keep coming: small enough that
# the host's loop and ledger get work while the issuer decides the rest of a burst, large
# enough that a busy issuer commits a group, not every decision (module docstring)
ANSWER_EVERY = 4


class IssuerProcess:
    """A `CardChannel` whose `authorise_async` is answered by the issuer simulator's process."""

    name = "issuer-sim"

    def __init__(self, hsm: HSM, hsm_path: str | os.PathLike, lmk_path: str | os.PathLike,
                 db_path: str | os.PathLike, zpk_name: str, *, answer_every: int = ANSWER_EVERY):
        self._hsm = hsm  # the host's: PIN translation before a request leaves
        self.zpk_name = zpk_name
        self._args = (os.fspath(hsm_path), os.fspath(lmk_path), os.fspath(db_path), zpk_name, str(answer_every))
        self._proc: Child | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, tuple[asyncio.Future, CardAuthorisation]] = {}
        self._advices: list[CardAuthorisation] = []  # reversals owed to the next process
        self._next_id = 0
        self._starting: asyncio.Lock | None = None
        self.started = 0  # processes started (1 unless one died)

    async def _child(self) -> Child:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._proc is None or self._proc.returncode is not None or self._reader.done():
                proc = await spawn("acquirer.channels.remote", *self._args)
                if proc is None:  # its HSM and accounts did not open: requests answer 98 meanwhile
                    raise ConnectionError("issuer process did not start")
                self._proc = proc
                self._reader = asyncio.create_task(self._read(proc))
                self.started += 1
            return self._proc

    async def start(self) -> None:
        """Start the issuer now (the host does, before it listens), not at the first sale."""
        await self._child()

    async def authorise_async(self, request: CardAuthorisation) -> CardResult:
        request = self._under_zpk(request)
        proc = self._proc
        if proc is None or proc.returncode is not None or self._reader.done():  # else no lock to take
            try:
                proc = await self._child()
            except (ConnectionError, OSError) as exc:
                return _no_answer(str(exc))
        if self._advices:
            advices, self._advices = self._advices, []
            for advice in advices:
                asyncio.create_task(self._advise(advice))
        self._next_id += 1
        ident = self._next_id
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[ident] = (future, request)
        self._write(proc, request_message(ident, request))  # at once: the issuer starts while the loop goes on
        if proc.stdin.transport.get_write_buffer_size() > 1 << 20:
            await proc.stdin.drain()  # the issuer is behind: wait for the pipe, not for memory
        return await future

    async def _advise(self, advice: CardAuthorisation) -> None:
        result = await self.authorise_async(advice)
        log.warning("reversal advice for %s stan %s after the issuer process ended: %s %s",
                    advice.terminal_id, advice.stan, result.code.value, result.text)

    def _write(self, proc: Child, data: bytes) -> None:
        try:
            proc.stdin.transport.write(data)  # StreamWriter.write would only forward it there
        except (ConnectionError, OSError, RuntimeError) as exc:  # the reader answers what is pending
            log.error("issuer process unreachable: %s", exc)
            proc.kill()

    def _under_zpk(self, request: CardAuthorisation) -> CardAuthorisation:
        """The PIN block re-encrypted to the issuer zone key in the host's HSM; as it was if
        that fails (the issuer then declines it with its own reason)."""
        if request.pin_block is None or not request.pin_key or request.pin_key == self.zpk_name:
            return request
        try:
            block = self._hsm.translate_pin(request.pin_block, request.pan, request.pin_key, self.zpk_name)
        except (CryptoError, ValueError):
            return request
        return dataclasses.replace(request, pin_block=block, pin_key=self.zpk_name)

    def _answered(self, groups: list) -> None:
        for group in groups:  # a list of answers per commit
            for ident, result in group:
                future, _ = self._pending.pop(ident, (None, None))
                if future is not None and not future.done():
                    future.set_result(result)

    async def _read(self, proc: Child) -> None:
        try:
            await proc.receive_each(self._answered)
        except (ConnectionError, OSError, EOFError):
            pass
        finally:
            if self._pending:
                log.error("issuer process ended with %d requests unanswered", len(self._pending))
            pending, self._pending = self._pending, {}
            for future, request in pending.values():
                self._advices.append(request if request.operation is Operation.REVERSAL else dataclasses.replace(
                    request, operation=Operation.REVERSAL, pin_block=None, pin_key=None, icc={}))
                if not future.done():
                    future.set_result(_no_answer("issuer process ended"))

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        await stop(proc)  # the child answers what it has, then exits
        if self._reader is not None:
            await self._reader


def request_message(ident: int, request: CardAuthorisation) -> bytes:
    """A request as it crosses the pipe: its id and its fields as a plain tuple (what its
    `__reduce__` gives, the child rebuilding it with `_authorisation` as unpickling the
    object would), not the object: the pickler then calls no `__reduce__` and looks up no
    global by module and name: packing a request costs the host's loop about a third less."""
    return pack((ident, request.__reduce__()[1]))


def _no_answer(text: str) -> CardResult:
    return CardResult(ResponseCode.ISSUER_TIMEOUT, text=text)


def main(hsm_path: str, lmk_path: str, db_path: str, zpk_name: str, answer_every: str = str(ANSWER_EVERY)) -> int:
    from .issuer import IssuerSimulator

    hsm = HSM.open(hsm_path, lmk_path)
    issuer = IssuerSimulator(hsm, db_path, zpk_name, durable=False, grouped=True)
    messages = Messages()
    out = sys.stdout.buffer
    out.write(pack(("ready",)))
    out.flush()
    answers: list[tuple[int, CardResult]] = []
    every = int(answer_every) or 1 << 30  # 0: only when nothing more is waiting
    waiting = select.poll()  # made once: select.select builds three lists per call
    waiting.register(0, select.POLLIN)
    authorise = issuer.authorise

    def answer() -> None:
        issuer.flush()  # the decisions are committed before anyone hears of them
        out.write(pack(answers))  # the group's answers in one pickle: one header, CardResult named once
        out.flush()
        answers.clear()
    try:
        while True:
            data = os.read(0, 1 << 16)  # everything waiting, at least one byte
            if not data:
                return 0  # the host closed the pipe (or is gone)
            for ident, fields in messages.feed(data):  # request_message
                answers.append((ident, authorise(_authorisation(*fields))))
                if len(answers) >= every:
                    answer()
            if answers and not waiting.poll(0):  # nothing more has come meanwhile
                answer()
    finally:
        issuer.close()
        hsm.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
