"""The host loop's CPU per request and answer across a child's pipe, against the way before.

    .venv/bin/python bench/childpipe_cpu.py [--requests 4000] [--rounds 5] [--in-flight 16]

The host's event loop sends every card sale to the issuer's process and reads its answer
back (acquirer/channels/remote.py), and sends the ledger process its groups the same way
(acquirer/ledger/process.py). What the loop pays for that, measured here with its own
thread's CPU time (the machine is shared: wall time says little), for a child that
answers each request at once with one answer message, as the issuer does when idle:

- "now": the request as `request_message` packs it (its fields), written to the pipe's
  transport, the answers read by `Child.receive_each` in the pipe's callback;
- "before" (the baseline, measured in the same run): the request pickled as the object,
  written through the StreamWriter, the answers read by a task off asyncio's StreamReader
  (`reader.read` then `Messages.feed`, as the host did until session 9).

The child is the same in both, the two ways alternate in rounds and the best of each is kept. The figures include
what both ways share (a future per request, the coroutines that wait): the difference is
what the pipe path costs. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from acquirer.channels.base import CardAuthorisation, Operation  # noqa: E402
from acquirer.channels.remote import request_message  # noqa: E402
from acquirer.childproc import Messages, command, pack, start, stop  # noqa: E402

# Answers each request at once: (id, result) in a list, as the issuer's commit does.
ECHO = r"""
import os
from acquirer.channels.base import card_result
from acquirer.childproc import Messages, pack
from acquirer.protocol import ResponseCode

answer = card_result(ResponseCode.APPROVED, "000001", bytes(10), "approved", 10**11)
messages = Messages()
os.write(1, pack(("ready",)))
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    os.write(1, b"".join(pack([(request[0], answer)]) for request in messages.feed(data)))
"""


def request(n: int) -> CardAuthorisation:
    """A contactless sale's request with the field 55 tags a terminal sends."""
    icc = {tag: bytes(size) for tag, size in ((0x9F26, 8), (0x9F27, 1), (0x9F10, 32), (0x9F37, 4), (0x9F36, 2),
                                              (0x95, 5), (0x9A, 3), (0x9C, 1), (0x9F02, 6), (0x5F2A, 2), (0x82, 2),
                                              (0x9F1A, 2), (0x9F03, 6), (0x9F33, 3), (0x9F34, 3), (0x9F35, 1))}
    return CardAuthorisation(Operation.SALE, f"62149886{n % 1000:011d}", "01", "2712", 100 + n % 900, "156",
                             f"B{n % 16:07d}", "898440358120001", f"{n % 999_999 + 1:06d}", icc)


class _Way:
    """One way of crossing the pipe: start(), ask(ident, request) -> result, close()."""

    def __init__(self):
        self.pending: dict[int, asyncio.Future] = {}

    def answered(self, groups: list) -> None:
        for group in groups:
            for ident, result in group:
                self.pending.pop(ident).set_result(result)

    async def ask(self, ident: int, req: CardAuthorisation):
        future = self.pending[ident] = asyncio.get_running_loop().create_future()
        self.send(ident, req)
        return await future


class Now(_Way):
    async def start(self):
        self.proc = await start(*echo_command())
        self.reader = asyncio.create_task(self.proc.receive_each(self.answered))

    def send(self, ident, req):
        self.proc.stdin.transport.write(request_message(ident, req))

    async def close(self):
        await stop(self.proc)
        await self.reader


class Before(_Way):
    async def start(self):
        argv, env = echo_command()
        self.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        self.messages = Messages()
        assert await self.receive_many() == [("ready",)]
        self.reader = asyncio.create_task(self.read())

    async def receive_many(self) -> list:
        while True:
            data = await self.proc.stdout.read(1 << 16)
            if not data:
                raise EOFError
            found = self.messages.feed(data)
            if found:
                return found

    async def read(self):
        try:
            while True:
                self.answered(await self.receive_many())
        except EOFError:
            pass

    def send(self, ident, req):
        self.proc.stdin.write(pack((ident, req)))

    async def close(self):
        await stop(self.proc)
        await self.reader


def echo_command() -> tuple[list[str], dict]:
    argv, env = command("acquirer.channels.remote")
    argv[-2:] = ["-c", ECHO]  # python -c ECHO, with the project's PYTHONPATH
    return argv, env


async def run(way: _Way, requests: list, in_flight: int) -> float:
    """The loop thread's CPU microseconds per request and answer."""
    await way.start()
    try:
        slots = asyncio.Semaphore(in_flight)

        async def one(ident):
            async with slots:
                await way.ask(ident, requests[ident % len(requests)])

        await asyncio.gather(*(one(i) for i in range(200)))  # warm
        t = time.thread_time_ns()
        await asyncio.gather(*(one(i) for i in range(200, 200 + len(requests))))
        return (time.thread_time_ns() - t) / 1000 / len(requests)
    finally:
        await way.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000, help="timed requests per run (default 4000)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds, best kept (default 5)")
    ap.add_argument("--in-flight", type=int, default=16, help="requests at the child at once (default 16)")
    args = ap.parse_args()
    try:
        import uvloop
        new_loop = uvloop.new_event_loop
    except ImportError:  # the host runs on uvloop when it is installed
        new_loop = asyncio.new_event_loop
    requests = [request(n) for n in range(args.requests)]
    best = {"before": float("inf"), "now": float("inf")}
    for _ in range(args.rounds):
        for name, way in (("before", Before), ("now", Now)):
            loop = new_loop()
            try:
                best[name] = min(best[name], loop.run_until_complete(run(way(), requests, args.in_flight)))
            finally:
                loop.close()
    ratio = best["now"] / best["before"]
    print(f"host loop CPU us per request and answer ({args.requests} requests, {args.in_flight} in flight, "
          f"best of {args.rounds})")
    print(f"  before (object pickled, StreamWriter, StreamReader + task): {best['before']:6.1f}")
    print(f"  now (request_message, transport, Child.receive_each):       {best['now']:6.1f}   ratio {ratio:.2f}")
    print(json.dumps({"requests": args.requests, "before_us": round(best["before"], 1),
                      "now_us": round(best["now"], 1), "ratio": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
