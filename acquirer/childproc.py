"""What the host's child processes share: how they are started and how messages cross
their pipes (the ledger's group commits, acquirer/ledger/process.py; the simulated
issuer, acquirer/channels/remote.py).

A message is a 4-byte big-endian length, then a pickle. Pickles are only ever read
from a pipe the host itself opened to a child it started: no one else writes there.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_LEN = struct.Struct(">I")


def pack(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def send(stream, obj) -> None:
    stream.write(pack(obj))
    stream.flush()


def receive(stream):
    """One message from a blocking binary stream; EOFError when the other side is gone."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("the other side closed the pipe")
    n = _LEN.unpack(head)[0]
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the other side closed the pipe mid-message")
    return pickle.loads(data)


class Messages:
    """Messages out of the bytes a pipe gave so far (a child reads all that is waiting)."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        buf = self._buf
        buf += data
        out, at, end = [], 0, len(buf)
        with memoryview(buf) as view:
            while end - at >= _LEN.size:
                n = _LEN.unpack_from(buf, at)[0]
                if end - at < _LEN.size + n:
                    break
                out.append(pickle.loads(view[at + _LEN.size:at + _LEN.size + n]))
                at += _LEN.size + n
        del buf[:at]  # once per read, not once per message
        return out


def command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment to run `python -m module args...` from this project."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", module, *args], env


class Child(asyncio.subprocess.Process):
    """asyncio's Process for a child started by `spawn`, whose stdout is read as messages."""

    async def receive_each(self, handle) -> None:
        """Calls `handle(messages)` with the messages whole in each read of the child's stdout,
        from the pipe's own callback, until the child closes its end (then returns; raises
        what `handle` raised, after which nothing more is read). No StreamReader between: a
        read of the pipe costs the loop one callback, not a buffer copy and a task woken to
        take it out again (both host clients read answers this way)."""
        pipes: _Pipes = self._protocol
        early, pipes.early, pipes.handle = pipes.early, [], handle
        if early:  # whole messages that came with the child's ("ready",)
            pipes.deliver(early)
        await pipes.ended


class _Pipes(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol for a child's pipes, except that its stdout goes through `Messages`
    in the pipe's callback (`Child.receive_each`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(limit=1 << 16, loop=loop)
        self.messages = Messages()
        self.handle = None  # until someone takes them, messages wait in `early`
        self.early: list = []
        self.arrived = loop.create_future()  # the first message (the child's ("ready",))
        self.ended = loop.create_future()  # the child closed its stdout

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            super().pipe_data_received(fd, data)
        elif not self.ended.done():
            try:
                found = self.messages.feed(data)
            except Exception as exc:  # a broken stream: nothing after it can be cut right
                self._end(exc)
                return
            if not found:
                return
            if self.handle is None:
                self.early += found
                if not self.arrived.done():
                    self.arrived.set_result(None)
            else:
                self.deliver(found)

    def deliver(self, found: list) -> None:
        try:
            self.handle(found)
        except Exception as exc:
            self.handle = None
            self._end(exc)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        super().pipe_connection_lost(fd, exc)
        if fd == 1:
            self._end(None)

    def _end(self, exc: Exception | None) -> None:
        """No more messages: `ended` says why (None: the child closed its stdout)."""
        if not self.arrived.done():
            self.arrived.set_result(None)
        if not self.ended.done():
            if exc is None:
                self.ended.set_result(None)
            else:
                self.ended.set_exception(exc)


async def spawn(module: str, *args: str, wait_s: float = 60.0) -> Child | None:
    """Start `python -m module args...` with pipes and wait for its ("ready",); None if it
    never says so (it is killed then)."""
    return await start(*command(module, *args), wait_s=wait_s)


async def start(argv: list[str], env: dict[str, str], wait_s: float = 60.0) -> Child | None:
    """`spawn` for any command line (bench/childpipe_cpu.py starts `python -c`)."""
    loop = asyncio.get_running_loop()
    transport, pipes = await loop.subprocess_exec(lambda: _Pipes(loop), *argv, stdin=asyncio.subprocess.PIPE,
                                                  stdout=asyncio.subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
    proc = Child(transport, pipes, loop)
    try:
        await asyncio.wait_for(asyncio.shield(pipes.arrived), wait_s)
    except asyncio.TimeoutError:
        pass
    if pipes.early[:1] != [("ready",)]:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            proc.kill()
        await proc.wait()
        if pipes.ended.done():
            pipes.ended.exception()  # what broke its stream needs no other reader: the child is not kept
        return None
    del pipes.early[0]
    return proc


async def stop(proc, last: bytes = b"", wait_s: float = 30.0) -> None:
    """Close a child's stdin (after `last`, a final message): it finishes what it has and
    exits; killed if it has not within `wait_s`."""
    if proc.returncode is not None:
        return
    try:
        if last:
            proc.stdin.write(last)
        proc.stdin.close()
    except (ConnectionError, OSError):
        pass
    try:
        await asyncio.wait_for(proc.wait(), wait_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
