"""Where a durable card sale's CPU time goes in the host: microseconds per pipeline step.

    .venv/bin/python bench/host_steps.py [--sales 3000] [--terminals 16]

`bench/host.py` gives the host's throughput; this says why it is what it is. The host
is provisioned as in bench/host.py, then the same pre-built sales run through
`Host.handle` on this process's event loop (--terminals in flight, 16 by default; no TCP), the pipeline's
synchronous steps wrapped in timers of the event-loop thread's CPU clock
(`thread_time`: time other processes take on this shared machine does not count).
The first row is that thread's whole CPU time over the run, per sale; the ledger
writer thread's CPU and the rest of the process's (the worker threads that check fix
signatures, the risk store's upkeep) and the ledger process that applies the group
commits are measured apart. Finally `HostServer` with a
handler that does no work answers the same frames over loopback TCP: the cost of the
server itself (framing, asyncio streams, tasks), as that server thread's CPU per round
trip.

Nested rows are part of the row above them; "other" is the part of the first row that
no row covers (the context, routing, awaiting the group commit, the driving loop).
Ends with one JSON line (the rows as {name: us_per_sale}).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict

import uvloop
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer.protocol import Frame, decode  # noqa: E402
from acquirer.server import HostServer  # noqa: E402
from acquirer.service import HostService, ThreadedHost  # noqa: E402
from bench.host import (build_sales, children_by_module, closed_loop, drive, prepare, process_cpu_s,  # noqa: E402
                        provision, stat_cpu_s)

TERMINALS = 16


class Timers:
    """CPU microseconds of the calling thread, summed per label."""

    def __init__(self):
        self.ns: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn):
        clock, ns = time.thread_time_ns, self.ns

        def timed(*a, **kw):
            t = clock()
            try:
                return fn(*a, **kw)
            finally:
                ns[label] += clock() - t
        return timed


# (label, object path from the service, attribute, depth in the table)
STEPS = (
    ("event loop, all of a sale (no TCP)", None, None, 0),
    ("decode (pyiso8583 + field 60/59)", "pipeline", "step_decode", 1),
    ("identify terminal (registry)", "host.steps", 1, 1),
    ("verify MAC + SM3 digest", "host.steps", 2, 1),
    ("de-duplicate (ledger read)", "host.steps", 3, 1),
    ("open batch check (ledger read)", "ledger", "current_batch", 1),
    ("track 2: open under TDK", "card_flows", "_card", 1),
    ("PAN token (HMAC-SM3)", "vault", "token", 1),
    ("risk: fence + rules + counters", "risk", "assess", 1),
    ("fence: signed fix check", "fences", "check", 2),
    ("rules engine + counters", "engine", "decide", 2),
    ("issuer simulator: authorise", "issuer", "authorise", 1),
    ("HSM: ARQC verify + ARPC", "hsm", "verify_arqc", 2),
    ("RRN", "ledger", "next_rrn", 1),
    ("ledger record", "card_flows", "_record", 1),
    ("vault: seal and keep card", "vault", "keep", 1),
    ("response: encode + MAC", "host", "_response", 1),
)


def instrument(svc: HostService, timers: Timers) -> set[str]:
    """Wrap the steps in timers; the labels of the steps that run in this process."""
    from acquirer import host as host_module, pipeline

    h = svc.host
    skipped = set()
    for label, where, attr, _depth in STEPS:
        if where is None:
            continue
        if where == "host.steps":
            h.steps[attr] = timers.wrap(label, h.steps[attr])
        elif where == "pipeline":
            h.steps[0] = timers.wrap(label, getattr(pipeline, attr))
        elif where in ("issuer", "hsm") and svc.issuer_process is not None:
            skipped.add(label)  # the issuer decides in its own process: counted there
            continue
        else:
            obj = {"host": h, "ledger": svc.ledger, "card_flows": h.card_flows, "issuer": svc.issuer,
                   "hsm": svc.hsm, "vault": svc.vault, "risk": svc.risk, "fences": svc.risk.fences,
                   "engine": svc.risk.engine}[where]
            setattr(obj, attr, timers.wrap(label, getattr(obj, attr)))
    assert host_module  # the module is imported so a renamed step fails here, not silently
    return {label for label, *_ in STEPS} - skipped


async def run_pipeline(state: Path, frames: list[Frame], in_flight: int = TERMINALS
                       ) -> tuple[dict[str, float], float, int]:
    svc = await HostService(state).start()
    try:
        timers = Timers()
        warm, timed = frames[:200], frames[200:]
        await _drive(svc, warm, in_flight)
        timed_steps = instrument(svc, timers)
        thread = getattr(svc.writer, "_thread", None)  # none when the event loop hands groups to the ledger process
        writer_cpu = _thread_cpu_probe(thread) if thread is not None else (lambda: 0)
        children = children_by_module(os.getpid())  # started by the warm-up: the ledger's and the issuer's
        before, loop_before, process_before = writer_cpu(), time.thread_time_ns(), time.process_time_ns()
        children_before = {name: _process_cpu_ns(pid) for name, pid in children.items()}
        declined = await _drive(svc, timed, in_flight)
        timers.ns[STEPS[0][0]] = loop_ns = time.thread_time_ns() - loop_before
        writer_ns = writer_cpu() - before
        children_ns = {name: _process_cpu_ns(pid) - children_before[name] for name, pid in children.items()}
        others_ns = time.process_time_ns() - process_before - loop_ns - writer_ns
        rows = {label: timers.ns[label] / 1000 / len(timed) for label, *_ in STEPS if label in timed_steps}
        per = 1000 * len(timed)
        return rows, writer_ns / per, {k: v / per for k, v in children_ns.items()}, others_ns / per, declined
    finally:
        await svc.stop()
        svc.close_stores()


async def _drive(svc: HostService, frames: list[Frame], in_flight: int = TERMINALS) -> int:
    slots = asyncio.Semaphore(in_flight)
    declined = 0

    async def one(frame):
        nonlocal declined
        async with slots:
            reply = await svc.host.handle(frame, "bench")
        declined += decode(reply.message).get("39") != "00"
    await asyncio.gather(*(one(f) for f in frames))
    return declined


def _thread_cpu_probe(thread: threading.Thread):
    """CPU ns of another thread of this process, from /proc (Linux)."""
    stat = f"/proc/self/task/{thread.native_id}/stat"
    return lambda: int(stat_cpu_s(stat) * 1e9)


def _process_cpu_ns(pid: int) -> int:
    return int(process_cpu_s(pid) * 1e9)


def server_cost(frames_per_conn: list[list[bytes]], seconds: float) -> tuple[float, float]:
    """HostServer answering every frame with a canned reply: server-thread CPU us per round trip."""
    canned = Frame.decode_body(frames_per_conn[0][0][2:])
    loop = uvloop.new_event_loop()  # the host's loop (acquirer serve)
    ready = threading.Event()
    box: dict = {}

    async def handler(frame, peer):
        return frame.reply(canned.message)

    def serve():
        asyncio.set_event_loop(loop)
        box["server"] = loop.run_until_complete(HostServer(handler).start())
        ready.set()
        loop.run_forever()

    async def cpu_ns() -> int:  # the server thread's own clock, read on that thread (/proc counts 10 ms ticks)
        return time.thread_time_ns()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(10)
    c0 = asyncio.run_coroutine_threadsafe(cpu_ns(), loop).result(10)
    # the canned handler checks nothing: the same frames again make a run long enough to measure
    rate, lat, _, _ = drive(closed_loop(box["server"].port, [f * 10 for f in frames_per_conn], seconds))
    used = asyncio.run_coroutine_threadsafe(cpu_ns(), loop).result(10) - c0
    asyncio.run_coroutine_threadsafe(box["server"].close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
    return used / 1000 / len(lat), rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=3000)
    ap.add_argument("--terminals", type=int, default=TERMINALS,
                    help="sales in flight, one per terminal (bench/host.py's closed loop runs 64)")
    a = ap.parse_args()
    terminals = a.terminals
    per = a.sales // terminals + 200 // terminals + 2  # per terminal: 200 sales warm the host up first
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
        state = Path(tmp) / "host"
        state.mkdir()
        cards = prepare(state, terminals, per + 400 // terminals + 1)
        th = ThreadedHost(state).start()
        try:
            lanes = provision(state, th.port, cards)
        finally:
            th.stop()
        by_lane = build_sales(lanes, per)
        frames = [Frame.decode_body(by_lane[t][i][2:]) for i in range(per) for t in range(terminals)]
        rows, writer_us, children_us, others_us, declined = uvloop.run(run_pipeline(state, frames, terminals))
        server_us, server_rate = server_cost(build_sales(lanes, 400 // terminals + 1, first=per), 1.0)
    total = rows[STEPS[0][0]]
    covered = sum(rows.get(label, 0.0) for (label, _w, _a, depth) in STEPS if depth == 1)
    print(f"{len(frames) - 200} sales through Host.handle, {terminals} in flight (not approved: {declined})")
    print(f"{'step':44s} {'us/sale':>8s}")
    for label, _w, _a, depth in STEPS:
        print(f"{'  ' * depth + label:44s} {rows[label]:8.0f}" if label in rows
              else f"{'  ' * depth + label:44s}        -   (in its own process, below)")
    print(f"{'  other (context, routing, glue)':44s} {total - covered:8.0f}")
    if writer_us:
        print(f"{'ledger writer thread':44s} {writer_us:8.0f}")
    child_us = sum(children_us.values())
    for module, label in (("acquirer.ledger.process", "ledger process (group commits, fsync)"),
                          ("acquirer.channels.remote", "issuer process (accounts, ARQC, ARPC)")):
        if module in children_us:
            print(f"{label:44s} {children_us[module]:8.0f}")
    print(f"{'worker threads (SM2 fix signature, upkeep)':44s} {others_us:8.0f}")
    print(f"{'TCP server, framing, tasks (no-work handler)':44s} {server_us:8.0f}"
          f"   ({server_rate:.0f} round trips/s with that handler)")
    main_us = total + server_us
    all_us = main_us + writer_us + child_us + others_us
    print(f"event-loop thread per sale: {main_us:.0f} us -> at most {1e6 / main_us:.0f} sales/s on one core; "
          f"all threads: {all_us:.0f} us of CPU per sale -> at most {2e6 / all_us:.0f} sales/s on 2 cores")
    out = {k: round(v, 1) for k, v in rows.items()}
    out.update({"other": round(total - covered, 1), "writer_thread": round(writer_us, 1),
                "ledger_process": round(children_us.get("acquirer.ledger.process", 0.0), 1),
                "issuer_process": round(children_us.get("acquirer.channels.remote", 0.0), 1),
                "worker_threads": round(others_us, 1), "all_threads_us_per_sale": round(all_us, 1),
                "tcp_server": round(server_us, 1), "event_loop_us_per_sale": round(main_us, 1),
                "declined": declined})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
