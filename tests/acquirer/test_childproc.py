"""How the host reads its children's pipes (acquirer/childproc.py): `Child.receive_each`
hands over every message whole and in order, however the pipe cuts them, returns when
the child closes its end, and stops at a handler that fails; a child that never says it
is ready is not kept. Run on both loops the host can use (uvloop is its default)."""
from __future__ import annotations

import asyncio

import pytest

from acquirer.childproc import command, start


def _loops():
    yield pytest.param(asyncio.new_event_loop, id="asyncio")
    try:
        import uvloop
    except ImportError:
        return
    yield pytest.param(uvloop.new_event_loop, id="uvloop")


def _run(new_loop, coro):
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


# Writes ("ready",) with the first messages in the same write, then the rest of argv[1]'s
# messages cut in pieces of argv[2] bytes, each written on its own with a pause, then exits.
_WRITER = r"""
import os, sys, time
from acquirer.childproc import pack
count, piece = int(sys.argv[1]), int(sys.argv[2])
os.write(1, pack(("ready",)) + pack(("early", 0)) + pack(("early", 1)))
wire = b"".join(pack(("message", n, "x" * (n * 37 % 300))) for n in range(count))
for at in range(0, len(wire), piece):
    os.write(1, wire[at:at + piece])
    time.sleep(0.001)
"""


def _writer_command(count: int, piece: int) -> tuple[list[str], dict]:
    argv, env = command("acquirer.channels.remote")
    argv[-2:] = ["-c", _WRITER, str(count), str(piece)]
    return argv, env


@pytest.mark.parametrize("new_loop", _loops())
def test_receive_each_hands_over_every_message_whole_and_in_order(new_loop):
    async def scenario():
        proc = await start(*_writer_command(60, 97))  # pieces that cut headers and pickles apart
        assert proc is not None
        got: list = []
        calls: list = []
        await proc.receive_each(lambda found: (calls.append(len(found)), got.extend(found)))
        assert await proc.wait() == 0
        return got, calls

    got, calls = _run(new_loop, scenario())
    assert got == [("early", 0), ("early", 1)] + [("message", n, "x" * (n * 37 % 300)) for n in range(60)]
    assert all(calls)  # never called with nothing


@pytest.mark.parametrize("new_loop", _loops())
def test_receive_each_raises_what_the_handler_raised_and_hands_over_nothing_more(new_loop):
    async def scenario():
        proc = await start(*_writer_command(40, 4096))
        seen: list = []

        def handle(found):
            seen.extend(found)
            if len(seen) >= 5:
                raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await proc.receive_each(handle)
        count = len(seen)
        await proc.wait()
        return seen, count

    seen, count = _run(new_loop, scenario())
    assert len(seen) == count and seen[:2] == [("early", 0), ("early", 1)]


@pytest.mark.parametrize("new_loop", _loops())
def test_a_child_that_does_not_say_it_is_ready_is_not_kept(new_loop):
    async def scenario():
        argv, env = command("acquirer.channels.remote")
        argv[-2:] = ["-c", "import os; from acquirer.childproc import pack; os.write(1, pack(('hello',)))"]
        wrong = await start(argv, env)
        argv[-2:] = ["-c", "import sys; sys.exit(3)"]
        silent = await start(argv, env)
        argv[-2:] = ["-c", "import time; time.sleep(30)"]
        slow = await start(argv, env, wait_s=0.5)
        return wrong, silent, slow

    assert _run(new_loop, scenario()) == (None, None, None)

