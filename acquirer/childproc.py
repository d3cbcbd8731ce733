"""What the host's child processes share: how they are started and how messages cross
their pipes (the ledger's group commits, acquirer/ledger/process.py; the simulated
issuer, acquirer/channels/remote.py).

A message is a 4-byte big-endian length, then a pickle. Pickles are only ever read
from a pipe the host itself opened to a child it started: no one else writes there.
"""
from __future__ import annotations

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


async def receive_async(reader):
    """The same from an asyncio StreamReader (IncompleteReadError when the other side is gone)."""
    head = await reader.readexactly(_LEN.size)
    return pickle.loads(await reader.readexactly(_LEN.unpack(head)[0]))


async def receive_many(reader, messages: "Messages") -> list:
    """Every message whole in what an asyncio StreamReader has now (at least one): one
    wake-up per read of the pipe, not two per message. EOFError when the other side is gone."""
    while True:
        data = await reader.read(1 << 16)
        if not data:
            raise EOFError("the other side closed the pipe")
        found = messages.feed(data)
        if found:
            return found


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


async def spawn(module: str, *args: str, wait_s: float = 60.0):
    """Start `python -m module args...` with pipes and wait for its ("ready",); None if it
    never says so (it is killed then)."""
    import asyncio

    argv, env = command(module, *args)
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                env=env, cwd=PROJECT_ROOT)
    try:
        ready = await asyncio.wait_for(receive_async(proc.stdout), wait_s)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError):
        ready = None
    if ready != ("ready",):
        proc.kill()
        await proc.wait()
        return None
    return proc


async def stop(proc, last: bytes = b"", wait_s: float = 30.0) -> None:
    """Close a child's stdin (after `last`, a final message): it finishes what it has and
    exits; killed if it has not within `wait_s`."""
    import asyncio

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
