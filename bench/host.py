"""Host throughput and latency: signed-on terminals doing durable card sales.

    .venv/bin/python bench/host.py [--terminals 64] [--few-terminals 16] [--rate 1000] [--sustain 2000] [--seconds 3]

The host runs as `acquirer serve` in its own process (the other core drives it). The
terminals are provisioned over TCP (activation, key download, sign-on), then each
sale is pre-built (ARQC, sealed track 2, signed location report, MAC) so the timed
part measures the host, with everything a production sale goes through: MAC, dedup,
the fence check of the signed fix, the risk engine's rules and counters, the issuer,
the durable ledger. Each sale attaches its terminal's latest signed fix as the terminal
app does (a standing terminal's TEE re-signs once per report interval, or when it
moves); --fresh-fixes signs a new one for every sale. Sales rotate over enough cards that none trips the velocity rule
(a real till does not see one card five times a minute either).

1. closed loop: every one of --terminals terminals sends its next sale as soon as the
   last is answered -> durable sales per second, p50/p99 (`sales_per_s`). Its rate is
   terminals / latency: with 64 terminals the host has enough work waiting to be busy
   all the time, so this is its capacity; with few terminals it is partly their waiting;
2. open loop at --rate sales/s offered -> p50/p99 latency;
3. open loop at --sustain sales/s offered (2,000, the issue's target) -> the rate the
   host answered at while the sales were offered (the first sixth left out) and p50/p99.
   A host that keeps up answers at the offered rate with a steady latency; one that
   cannot answers at its own pace, and its latency grows through the phase. Unlike the
   closed loop, this does not depend on how many tills happen to wait at once;
4. the closed loop again with only the first --few-terminals of them (16; 0 leaves it
   out) -> `sales_per_s_few_terminals`: the figure earlier sessions gave, where each
   sale's wait at the issuer and the ledger, not the host's CPU, sets the pace;
5. the same closed loop as 1 against a bare asyncio echo server with the same framing in
   its own process, on the same event loop as the host (uvloop unless --loop asyncio),
   as the baseline of this machine at this moment -> echo_ratio.

It also reads the host process's CPU time (all threads) over the closed loop: CPU per
sale says what the host costs even when other work on this shared machine slows the
wall clock. A closed loop in which a terminal used up its pre-built sales before its
time was over says so (`ran_out`, `ran_out_few_terminals`): that terminal idled from
then on, so the rate is low.
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer.channels.issuer import IssuerSimulator  # noqa: E402
from acquirer.cli import PROCESS_OPTIONS, add_process_options, process_argv  # noqa: E402
from acquirer.protocol import (EntryMode, Field60, Frame, PrivateTag, TxnType, decode, encode,  # noqa: E402
                               private_fields)
from hardware.location import FixedSite  # noqa: E402
from acquirer.registry import Registry  # noqa: E402
from keys.emv import CardFamily  # noqa: E402
from keys.hsm import HSM  # noqa: E402
from keys.tlv import encode_dict  # noqa: E402
from terminal.online import OnlineSession  # noqa: E402
from terminal.secure.keystore import SecureKeys  # noqa: E402
from terminal.secure.sealed import SealedStore  # noqa: E402
from tests.acquirer.cards import luhn_complete, personalise  # noqa: E402

MERCHANT = "898440358120001"
SITE = (31.2304, 121.4737)
TAPS_PER_CARD = 4  # the default rules decline a card's sixth tap within a minute
CLOSED_LOOP_MAX = 5000  # sales/s a closed loop has sales pre-built for (`ran_out` says when a host is faster)
RAN_OUT = "   RAN OUT of pre-built sales: the rate is low"  # after a closed loop's figures
ECHO_MAX = 200_000  # round trips/s the echo baseline has frames for (the host's, sent again)
MEASUREMENT = bytes(range(32))
ECHO_SERVER = r"""
import asyncio, struct, sys
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readexactly(2)
            body = await reader.readexactly(struct.unpack(">H", head)[0])
            writer.write(head + body)  # same framing, same size back
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
if sys.argv[2] == "uvloop":  # the host's own loop, so the ratio compares like with like
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, marker: str, log: Path | None = None) -> None:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server did not start: {log.read_text() if log else proc.stderr.read()}")
        if marker in line:
            return


def prepare(state: Path, terminals: int, sales_per_terminal: int, *, first: int = 0, more: int = 0) -> dict:
    """Registry, measurement and card accounts, written before the host starts: cards for
    `sales_per_terminal` sales at each terminal, and `more` at the `first` ones."""
    hsm = HSM.open(state / "hsm.db", state / "lmk")
    hsm._db.execute("PRAGMA synchronous=NORMAL")  # card issuance before the run: no fsync per card (WAL still)
    reg = Registry(state / "registry.db")
    reg.add_merchant(MERCHANT, "Bench shop", latitude=SITE[0], longitude=SITE[1])
    reg.allow_measurement(MEASUREMENT, "bench build")
    codes = {f"B{i:07d}": reg.add_terminal(f"B{i:07d}", MERCHANT) for i in range(terminals)}
    issuer = IssuerSimulator(hsm, state / "issuer.db", durable=False)
    cards = {tid: [personalise(hsm, issuer, CardFamily.PBOC_SM4, pan=luhn_complete(f"62149886{i:05d}{k:05d}"),
                               profile="bench", balance=10**11, replace=True)
                   for k in range(-(-(sales_per_terminal + (more if i < first else 0)) // TAPS_PER_CARD))]
             for i, tid in enumerate(codes)}
    issuer.close()
    reg.close()
    hsm.close()
    (state / "bench.json").write_text(json.dumps(codes))
    return cards


def provision(state: Path, port: int, cards: dict) -> list[tuple[str, SecureKeys, OnlineSession, object]]:
    codes = json.loads((state / "bench.json").read_text())
    lanes = []
    for tid, code in codes.items():
        d = state / "terminals" / tid
        d.mkdir(parents=True)
        keys = SecureKeys(SealedStore(d / "tee"))
        s = OnlineSession("127.0.0.1", port, tid, MERCHANT, keys, d / "journal.db", timeout=30)
        s.activate(code)
        s.download_keys()
        s.sign_on(MEASUREMENT)
        s.close()
        lanes.append((tid, keys, s, cards[tid]))
    return lanes


def build_sales(lanes, per_terminal: int, first: int = 0, fresh_fixes: bool = False) -> list[list[bytes]]:
    """Every terminal's sales as ready frames: the client does no crypto while timed.
    Sale n of a terminal uses its card n // TAPS_PER_CARD; `first` continues a numbering.

    Each sale attaches its terminal's latest signed fix as the terminal app does: the
    TEE gives the same report again while the terminal stands in its shop and the
    report is younger than the host's report interval (terminal/app.py). These
    terminals stand still, so the host checks each one's signature once. With
    `fresh_fixes` every sale carries a new signature instead (a terminal on the move)."""
    out = []
    site = FixedSite(*SITE, 10.0)
    for tid, keys, session, cards in lanes:
        reuse_s = session.fence_terms.payment_fix_reuse_s
        frames = []
        session._db.execute("BEGIN IMMEDIATE")  # the STANs taken in one durable write, not an fsync each
        try:
            for n in range(first, first + per_terminal):
                card = cards[n // TAPS_PER_CARD]
                track2 = keys.seal(f"{card.pan}D2712201{'0' * 8}".encode())
                amount = 100 + n % 900
                fields = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": session.next_stan(), "22":
                          EntryMode.CONTACTLESS_NO_PIN.value, "23": "001", "25": "00", "35": track2.hex().upper(),
                          "41": tid, "42": MERCHANT, "49": "156",
                          "55": encode_dict(card.field55(amount)).hex().upper(),
                          "60": Field60(TxnType.SALE.value, session.batch).encode(),
                          "59": private_fields({PrivateTag.LOCATION: keys.location_report(
                              tid, site.read(1.0), "fixed", reuse_s=0.0 if fresh_fixes else reuse_s)})}
                frames.append(Frame(encode(fields, keys.mac), 0, 1).encode())
        except BaseException:
            session._db.execute("ROLLBACK")
            raise
        session._db.execute("COMMIT")
        out.append(frames)
    return out


async def _read_frame(reader) -> bytes:
    head = await reader.readexactly(2)
    return await reader.readexactly(struct.unpack(">H", head)[0])


class _Lane(asyncio.Protocol):
    """One simulated terminal's connection in the closed loop: its next sale leaves as soon
    as the answer to the last one is whole. A protocol, not a stream reader and writer: the
    driver shares the two cores with the host, and streams cost it two futures per answer."""

    def __init__(self, frames: list[bytes], deadline: float, latencies: list[float], bodies: list[bytes],
                 done: asyncio.Future):
        self.frames, self.deadline, self.latencies, self.bodies, self.done = frames, deadline, latencies, bodies, done
        self.next = 0
        self.sent = 0.0
        self.buffer = bytearray()
        self.transport = None
        self.ran_out = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if time.perf_counter() > self.deadline:
            self.transport.close()
            return
        if self.next >= len(self.frames):  # before the deadline: this terminal idles from here on
            self.ran_out = True
            self.transport.close()
            return
        self.sent = time.perf_counter()
        self.transport.write(self.frames[self.next])
        self.next += 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            end = 2 + struct.unpack_from(">H", buffer)[0]
            if len(buffer) < end:
                return
            self.latencies.append(time.perf_counter() - self.sent)
            self.bodies.append(bytes(buffer[2:end]))
            del buffer[:end]
            self._send()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(self.ran_out)


async def closed_loop(port: int, frames_per_conn: list[list[bytes]], seconds: float
                      ) -> tuple[float, list[float], list[bytes], bool]:
    """Rate, latencies and answers, and whether a terminal used up its sales before the
    deadline (it idled from then on, and the rate is low by what it would have sent)."""
    latencies: list[float] = []
    bodies: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + seconds
    done = [loop.create_future() for _ in frames_per_conn]
    start = time.perf_counter()
    for frames, finished in zip(frames_per_conn, done):
        await loop.create_connection(lambda f=frames, d=finished: _Lane(f, deadline, latencies, bodies, d),
                                     "127.0.0.1", port)
    ran_out = any(await asyncio.gather(*done))
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, bodies, ran_out


def not_approved(bodies: list[bytes]) -> int:
    """Responses whose field 39 is not 00 (decoded after the timed part)."""
    return sum(1 for b in bodies if decode(Frame.decode_body(b).message).get("39") != "00")


async def open_loop(port: int, frames_per_conn: list[list[bytes]], rate: float, seconds: float
                    ) -> tuple[list[float], float, list[bytes]]:
    """Offer `rate` sales/s spread over the connections, whatever the host's pace (a till
    does not wait for another till's answer). Returns the latencies, the rate the host
    answered at and the answers. That rate counts the answers that came while sales were
    still being offered, after the first sixth of the phase: a host that keeps up answers
    at the offered rate then, one that falls behind at its own pace (the sales it still
    owes when the offering stops do not count, nor does the start, when nothing is due yet)."""
    n_conn = len(frames_per_conn)
    latencies: list[float] = []
    bodies: list[bytes] = []
    interval = n_conn / rate
    first = time.perf_counter() + 0.05  # every connection is open before the first sale leaves
    answered_at: list[float] = []

    async def conn(i, frames):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent: list[float] = []

        async def receive(count):
            for k in range(count):
                bodies.append(await _read_frame(reader))
                answered_at.append(now := time.perf_counter())
                latencies.append(now - sent[k])
        count = min(len(frames), math.ceil(seconds / interval))  # offered up to the window's end
        rx = asyncio.create_task(receive(count))
        start = first + i * interval / n_conn
        for k in range(count):
            delay = start + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(time.perf_counter())
            writer.write(frames[k])
        await rx
        writer.close()

    await asyncio.gather(*(conn(i, f) for i, f in enumerate(frames_per_conn)))
    window = (first + seconds / 6, first + seconds)
    in_window = sum(1 for t in answered_at if window[0] <= t < window[1])
    return latencies, in_window / (window[1] - window[0]), bodies


def drive(coro):
    """Run the simulated terminals on uvloop: the driver shares the two cores with the host,
    and the less it takes, the more the figures are the host's."""
    import uvloop

    return uvloop.run(coro)


def stat_cpu_s(stat: str) -> float:
    """User + system CPU seconds so far from a /proc stat file (a process's, or one thread's
    under /proc/PID/task/TID)."""
    with open(stat) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its threads so far (Linux /proc)."""
    return stat_cpu_s(f"/proc/{pid}/stat")


def child_pids(pid: int) -> list[int]:
    """A process's children: each is listed under the thread that started it."""
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += map(int, (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return pids


def children_by_module(pid: int) -> dict[str, int]:
    """A process's child processes started as `python -m MODULE`: MODULE -> pid."""
    found = {}
    for child in child_pids(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue  # ended meanwhile
        if b"-m" in argv[:-1]:
            found[argv[argv.index(b"-m") + 1].decode()] = child
    return found


def host_cpu_parts(pid: int) -> dict[str, float]:
    """CPU seconds so far of the host process (its event loop and threads: "host") and of
    each of its child processes by module (the ledger's, the issuer's)."""
    parts = {"host": process_cpu_s(pid)}
    for module, child in children_by_module(pid).items():
        try:
            parts[module] = process_cpu_s(child)
        except FileNotFoundError:
            pass  # ended meanwhile
    return parts


def interpreter() -> str:
    """The Python running the host (its children and this driver run the same one): the
    figures depend on its build (scripts/setup prefers Debian's optimised python3)."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return f"{platform.python_version()} {base}"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000 if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int, default=64,
                    help="concurrent terminals, one sale in flight each (a host at these rates serves thousands)")
    ap.add_argument("--few-terminals", type=int, default=16,
                    help="the closed loop again with only this many of them (0: not)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each timed phase")
    ap.add_argument("--rate", type=float, default=1000.0, help="offered sales/s in the open-loop phase")
    ap.add_argument("--sustain", type=float, default=2000.0,
                    help="offered sales/s in the second open-loop phase, which says whether the host keeps up")
    add_process_options(ap)  # acquirer serve's, passed on to the host
    ap.add_argument("--fresh-fixes", action="store_true",
                    help="every sale carries a newly signed fix (a terminal on the move): one SM2 check per sale")
    a = ap.parse_args()
    if a.terminals < 1 or a.few_terminals < 0:
        ap.error("--terminals must be 1 or more and --few-terminals 0 or more")
    few = min(a.few_terminals, a.terminals)
    per_terminal = int(CLOSED_LOOP_MAX * a.seconds / a.terminals) + 10
    per_terminal_open = int(a.rate * a.seconds / a.terminals) + 5
    per_terminal_sustain = int(a.sustain * a.seconds / a.terminals) + 5
    per_few = int(CLOSED_LOOP_MAX * a.seconds / few) + 10 if few else 0
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        state = Path(tmp) / "host"
        state.mkdir()
        t0 = time.perf_counter()
        cards = prepare(state, a.terminals, per_terminal + per_terminal_open + per_terminal_sustain, first=few,
                        more=per_few)
        cards_s = time.perf_counter() - t0
        port, mport = free_port(), 0
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        host_log = Path(tmp) / "host.log"  # a file, not a pipe nobody reads: a chatty host must not block
        host = subprocess.Popen([sys.executable, "-m", "acquirer.cli", "--state", str(state), "serve", "--port",
                                 str(port), "--metrics-port", str(mport), *process_argv(a)], stdout=subprocess.PIPE,
                                stderr=host_log.open("w"), text=True, env=env, cwd=ROOT)
        try:
            wait_ready(host, "listening", host_log)
            lanes = provision(state, port, cards)
            provision_s = time.perf_counter() - t0 - cards_s
            closed_frames = build_sales(lanes, per_terminal, fresh_fixes=a.fresh_fixes)
            open_frames = build_sales(lanes, per_terminal_open, first=per_terminal, fresh_fixes=a.fresh_fixes)
            sustain_frames = build_sales(lanes, per_terminal_sustain, first=per_terminal + per_terminal_open,
                                         fresh_fixes=a.fresh_fixes)
            # built last and sent last: each terminal's location reports reach the host in order
            few_frames = build_sales(lanes[:few], per_few, first=per_terminal + per_terminal_open + per_terminal_sustain,
                                     fresh_fixes=a.fresh_fixes)
            setup_s = time.perf_counter() - t0
            cpu0 = host_cpu_parts(host.pid)
            tps, lat, bodies, ran_out = drive(closed_loop(port, closed_frames, a.seconds))
            cpu_parts = {name: (used - cpu0.get(name, 0.0)) * 1e6 / max(1, len(lat))
                         for name, used in host_cpu_parts(host.pid).items()}
            host_cpu_us = sum(cpu_parts.values())
            declined = not_approved(bodies)
            open_lat, _, _ = drive(open_loop(port, open_frames, a.rate, a.seconds))
            sustain_lat, sustain_rate, sustain_bodies = drive(open_loop(port, sustain_frames, a.sustain, a.seconds))
            few_tps, few_lat, few_bodies, few_ran_out = (drive(closed_loop(port, few_frames, a.seconds)) if few
                                                          else (0.0, [], [], False))
        finally:
            host.terminate()  # SIGTERM: the host finishes in-flight sales and closes its stores
            host.wait(60)
            host_warnings = sum(1 for line in host_log.read_text().splitlines() if " WARNING " in line)
        eport = free_port()
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(eport), a.loop], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(echo, "ready")
            # the echo answers tens of thousands a second: the host's sales, sent again, fill its time
            again = math.ceil(ECHO_MAX * a.seconds / max(1, sum(map(len, closed_frames))))
            echo_tps, echo_lat, _, _ = drive(closed_loop(eport, [f * again for f in closed_frames], a.seconds))
        finally:
            echo.terminate()
            echo.wait(10)
    figures = {
        "sales_per_s": round(tps, 1), "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
        "declined_or_refused": declined, "offered_rate": a.rate, "p50_ms_at_1000": round(pct(open_lat, 50), 2),
        "p99_ms_at_1000": round(pct(open_lat, 99), 2), "answered_at_1000": len(open_lat),
        "sustain_offered_rate": a.sustain, "sustained_sales_per_s": round(sustain_rate, 1),
        "sustained_not_approved": not_approved(sustain_bodies),
        "p50_ms_sustained": round(pct(sustain_lat, 50), 2), "p99_ms_sustained": round(pct(sustain_lat, 99), 2),
        "echo_sales_per_s": round(echo_tps, 1), "echo_p99_ms": round(pct(echo_lat, 99), 3),
        "echo_ratio": round(tps / echo_tps, 4) if echo_tps else 0.0, "terminals": a.terminals,
        "ran_out": ran_out, "few_terminals": few, "ran_out_few_terminals": few_ran_out,
        "sales_per_s_few_terminals": round(few_tps, 1), "p99_ms_few_terminals": round(pct(few_lat, 99), 2) if few else 0.0,
        "few_terminals_not_approved": not_approved(few_bodies),
        **{name: getattr(a, name) for name in PROCESS_OPTIONS}, "fresh_fixes": a.fresh_fixes,
        "host_warnings": host_warnings, "host_cpu_us_per_sale": round(host_cpu_us),
        "host_cpu_us_per_sale_by_process": {name: round(us) for name, us in cpu_parts.items()},
        "setup_s": round(setup_s, 1), "python": interpreter(),
    }
    print(f"python {figures['python']}; terminals: {a.terminals}, setup {setup_s:.1f} s (cards {cards_s:.1f} s, provisioning {provision_s:.1f} s,"
          f" pre-building sales {setup_s - cards_s - provision_s:.1f} s)")
    print(f"closed loop, {a.terminals} terminals: {tps:8.1f} durable sales/s   p50 {figures['p50_ms']} ms"
          f"  p99 {figures['p99_ms']} ms   (not approved: {declined})"
          + (RAN_OUT if ran_out else ""))
    print(f"host CPU (all threads and child processes) per sale in the closed loop: {host_cpu_us:.0f} us"
          f" (a ceiling of {2e6 / host_cpu_us:.0f} sales/s on 2 cores, {1e6 / host_cpu_us:.0f} on one): "
          + ", ".join(f"{name} {us:.0f}" for name, us in cpu_parts.items()))
    print(f"open loop at {a.rate:.0f}/s offered: p50 {figures['p50_ms_at_1000']} ms  "
          f"p99 {figures['p99_ms_at_1000']} ms over {len(open_lat)} sales")
    print(f"open loop at {a.sustain:.0f}/s offered: {figures['sustained_sales_per_s']} durable sales/s answered"
          f"   p50 {figures['p50_ms_sustained']} ms  p99 {figures['p99_ms_sustained']} ms over {len(sustain_lat)} sales"
          f"   (not approved: {figures['sustained_not_approved']})")
    if few:
        print(f"closed loop, {few} terminals: {few_tps:8.1f} durable sales/s   p99 {figures['p99_ms_few_terminals']} ms"
              f"   (not approved: {figures['few_terminals_not_approved']})"
              + (RAN_OUT if few_ran_out else ""))
    print(f"echo server, same framing: {echo_tps:8.1f} round trips/s  p99 {figures['echo_p99_ms']} ms"
          f"   ratio host/echo {figures['echo_ratio']}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
