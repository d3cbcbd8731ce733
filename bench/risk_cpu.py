"""CPU per card sale of the host's risk step (`RiskAssessor.assess`): this code against a baseline, same run.

    .venv/bin/python bench/risk_cpu.py [--sales 8000] [--rounds 3] [--baseline 98c6bf2]

What the event loop pays per sale for the risk step, as `bench/host_steps.py` counts it
("risk: fence + rules + counters"), without the host around it: the facts, the fence
check of the attached signed fix, the default rules, the counters, and the decision
kept in the risk store (its batched flushes included, on the same thread, as in the
host). Measured with `thread_time` (CPU, not wall: the machine is shared), on real
files: the registry, the fence store (grouped, as in the host; the ledger writer's
commit of it, once per group of 16 sales, is not timed) and the decision store.

The requests are what the host's risk step sees: decoded ISO8583 sales from 64
terminals of 4 merchants, each attaching its terminal's latest signed fix (the same
report again while the terminal stands still, a new one every 128 of its sales, its
signature checked beforehand and untimed, as the pipeline's worker thread does; one
terminal is carried 2 km away for a while: G1 declines and alerts), each card tapped
4 times (one card everywhere: velocity declines), amounts mostly small with some above
the no-PIN limit, with and without a PIN, a few relay-flagged taps and round amounts.

The baseline is the risk and fence packages at another git revision (`--baseline`,
default the commit before the session-7 risk work), unpacked from git into a temporary
directory and imported under other names beside this code's. Both decide the same
requests, each on its own files, in alternating groups of 16 sales, so a busy moment
of the machine falls on both, with the setup frozen out of the garbage collector's sight
(it made whichever side was built first slower); the best of `--rounds` is kept. Each side's answers on
the contexts and everything its stores hold are digested: the two must match. Ends
with one JSON line.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import logging
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer import pipeline  # noqa: E402
from acquirer.fence.report import FixSource, build  # noqa: E402
from acquirer.pipeline import Context  # noqa: E402
from acquirer.protocol import Field60, Frame, PrivateTag, encode, private_fields  # noqa: E402
from acquirer.registry import Registry  # noqa: E402
from keys.sm2 import SM2PrivateKey  # noqa: E402
from keys.tlv import encode_dict, flatten  # noqa: E402

from bench.message_cpu import unpack  # noqa: E402

BASELINE = "98c6bf2"  # main before session 7's risk work
T0 = 1749952800.0  # 2025-06-15 10:00 China Standard Time
SITE = (31.2304, 121.4737)
MERCHANTS = [f"89844035812{i:04d}" for i in range(4)]
GRADES = "BBAC"
TERMINALS = 64
TAPS_PER_CARD = 4
NEW_FIX_EVERY = 128  # a terminal's sales per new signed report
SPACING_S = 1 / 1500  # simulated time between sales: the host's rate
GROUP = 16  # sales per ledger group commit: the fence store is committed between groups
WARM = 2_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _tid(n: int) -> str:
    return f"R{n:07d}"


def wire_requests(n: int, keys: dict) -> list[tuple[bytes, str, str]]:
    """`n` sales as (ISO8583 message, PAN token, masked PAN), round robin over the terminals."""
    rng = random.Random(5)
    counters = dict.fromkeys(keys, 0)
    reports: dict[str, bytes] = {}
    out = []
    for i in range(n):
        tid = _tid(i % TERMINALS)
        k = i // TERMINALS  # this terminal's sale number
        moved = tid == _tid(TERMINALS - 1) and 40 <= k < 80  # carried 2 km away: G1 until it is back
        if k % NEW_FIX_EVERY == 0 or (tid == _tid(TERMINALS - 1) and k in (40, 80)):
            counters[tid] += 1
            reports[tid] = build(keys[tid].sign, device_id=f"DEV-{tid}", terminal_id=tid, counter=counters[tid],
                                 # 40 s between fixes: a 2 km move is a drive, not a spoofed jump
                                 fix_time=T0 - 300 + 40 * (counters[tid] - 1),
                                 latitude=SITE[0] + (0.018 if moved else 0.0),
                                 longitude=SITE[1], accuracy_m=8.0, source=FixSource.FIXED)
        roll = rng.random()
        amount = 100 + (i * 37) % 9_900
        if roll < 0.03:
            amount = 150_000 + rng.randrange(100) * 1_000  # above the no-PIN limit
        elif roll < 0.05:
            amount = 10_000 * rng.randrange(1, 20)  # round
        pin = amount > 100_000 and rng.random() < 0.5
        private = {PrivateTag.LOCATION: reports[tid]}
        if rng.random() < 0.01:
            private[PrivateTag.RISK_FLAGS] = b"RELAY_SUSPECTED"
        icc = {0x9F02: amount.to_bytes(6, "big"), 0x9F6C: bytes([0x00, 0x80 if rng.random() < 0.02 else 0x00])}
        doc = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": f"{k % 999_999 + 1:06d}",
               "22": "051" if pin else "072", "25": "00", "41": tid, "42": MERCHANTS[i % TERMINALS % len(MERCHANTS)],
               "49": "156", "55": encode_dict(icc).hex().upper(), "59": private_fields(private),
               "60": Field60("22", "000001").encode()}
        if pin:
            doc["52"] = "00" * 8
        card = 10**9 if roll > 0.99 else i // (TERMINALS * TAPS_PER_CARD) * TERMINALS + i % TERMINALS
        out.append((encode(doc), f"{card * 7919:032X}", f"621498******{card % 10_000:04d}"))
    return out


def _package(name: str, directory: Path):
    """Import the package in `directory` as `name` (its modules import each other relatively)."""
    spec = importlib.util.spec_from_file_location(name, directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Side:
    """One version's risk step on its own files, deciding the same requests as the other."""

    def __init__(self, label: str, risk, fence, state: Path, keys: dict, wire: list):
        self.label, self.state, self.clock = label, state, Clock()
        state.mkdir(parents=True)
        self.registry = Registry(state / "registry.db")
        for n, mid in enumerate(MERCHANTS):
            self.registry.add_merchant(mid, f"Shop {n}", latitude=SITE[0], longitude=SITE[1], risk_grade=GRADES[n])
        for n in range(TERMINALS):
            code = self.registry.add_terminal(_tid(n), MERCHANTS[n % len(MERCHANTS)])
            self.registry.activate(_tid(n), code, f"DEV-{_tid(n)}", keys[_tid(n)].public_key.to_bytes(), now=T0)
        shutil.copy(risk.DEFAULT_RULES, state / "risk_rules.toml")
        # no flush by the store's own thread (it flushes what waits 0.5 s): every flush on the timed thread
        self.decisions = risk.DecisionStore(state / "risk.db", flush_after_s=3600.0)
        self.fence_store = fence.FenceStore(state / "fence.db", grouped=True)
        self.fences = fence.FenceMonitor(self.fence_store, clock=self.clock)
        for n in range(TERMINALS):
            self.fences.register_site(_tid(n), self.registry.merchant(MERCHANTS[n % len(MERCHANTS)]))
        self.fence_store.flush()
        engine = risk.RiskEngine(risk.RuleFile(state / "risk_rules.toml"), self.decisions, clock=self.clock)
        self.assess = risk.RiskAssessor(engine, self.registry, self.fences, clock=self.clock).assess
        self.requests = [self._context(*w) for w in wire]
        self.used_ns = 0
        self.outcomes: dict[str, int] = {}
        # the store's background thread: it writes the batches now (SQLite without the GIL)
        self.store_cpu = _thread_cpu(self.decisions._upkeep)
        self.store_ns = 0

    def _context(self, message: bytes, token: str, masked: str) -> Context:
        ctx = Context(Frame(message), "bench")
        pipeline.step_decode(ctx)
        ctx.terminal = self.registry.terminal(ctx.terminal_id)
        ctx.pan_token, ctx.masked_pan, ctx.icc = token, masked, flatten(bytes.fromhex(ctx.doc["55"]))
        return ctx

    def group(self, first: int) -> None:
        """Sales `first` to `first + GROUP`: what the pipeline does before the risk step untimed, the step timed."""
        self.fence_store.flush()  # the ledger writer commits its companions before each group
        batch = self.requests[first:first + GROUP]
        for ctx in batch:  # the pipeline's worker thread checks the signature of a report not seen before
            report = ctx.private[PrivateTag.LOCATION]
            if self.fences.current(ctx.terminal, report) is None:
                self.fences.preverify(ctx.terminal, report)
        assess, clock, cpu = self.assess, self.clock, time.thread_time_ns
        if first == WARM:
            self.store_ns = -self.store_cpu()
        t = cpu()
        for n, ctx in enumerate(batch, first):
            clock.t = T0 + n * SPACING_S
            assess(ctx)
        if first >= WARM:
            self.used_ns += cpu() - t
            for ctx in batch:
                outcome = ctx.code.value if ctx.code is not None else "go"
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def finish(self) -> dict:
        t = time.thread_time_ns()
        self.decisions.flush()  # what the last decisions still owe the store
        self.used_ns += time.thread_time_ns() - t
        self.store_ns += self.store_cpu()
        answers = hashlib.sha256()  # what the pipeline sees of each decision
        for ctx in self.requests:
            answers.update(repr((ctx.code, ctx.text, ctx.notes, ctx.reply_fields)).encode())
        self.decisions.close()
        self.fence_store.close()
        self.registry.close()
        return {"used_ns": self.used_ns, "store_ns": self.store_ns, "outcomes": self.outcomes,
                "answers": answers.hexdigest()[:16],
                "stored": stored_digest(self.state)}


def _thread_cpu(thread):
    """CPU ns of another thread of this process so far (Linux)."""
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime_ns(clock)


def stored_digest(state: Path) -> str:
    """Everything the stores hold: decisions as `risk explain` reads them, fence positions
    and alerts (their sequence numbers and the reports' digests aside: a signature is random)."""
    from acquirer.risk.codec import facts_dict, hits_dicts

    digest = hashlib.sha256()
    with sqlite3.connect(state / "risk.db") as db:
        for row in db.execute("SELECT * FROM decisions ORDER BY seq"):
            digest.update(repr((row[1:12], facts_dict(row[12]), hits_dicts(row[13]))).encode())
    with sqlite3.connect(state / "fence.db") as db:
        for row in db.execute("SELECT * FROM positions ORDER BY 1"):
            digest.update(repr(row[:-1]).encode())
        for row in db.execute("SELECT * FROM alerts ORDER BY 1"):
            digest.update(repr(row[1:]).encode())
    return digest.hexdigest()[:16]


def one_round(workdir: Path, versions: dict, keys: dict, wire: list) -> dict:
    sides = [Side(label, risk, fence, workdir / label, keys, wire) for label, (risk, fence) in versions.items()]
    # the setup (both sides' decoded requests, registries, keys: the bench's own objects, not state
    # the host holds) out of the garbage collector's sight: without this the side made first
    # measured 15-25 % slower than the other with the same code on both sides
    gc.collect()
    gc.freeze()
    try:
        _decide_all(sides, wire)
    finally:
        gc.unfreeze()
    return {side.label: side.finish() for side in sides}


def _decide_all(sides: list, wire: list) -> None:
    for first in range(0, len(wire), GROUP):
        for side in (sides if first // GROUP % 2 else sides[::-1]):  # each goes first half the time
            side.group(first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=8_000, help="sales timed per round (default 8,000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, best kept (default 3)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    ap.add_argument("--dir", default=None, help="where the files go (default: a new temporary directory)")
    args = ap.parse_args()
    logging.getLogger("acquirer").setLevel(logging.ERROR)  # refusals and holds would log a line each
    workdir = Path(tempfile.mkdtemp(prefix="risk-cpu-", dir=args.dir))
    try:
        old = unpack(args.baseline, workdir / "baseline", ("acquirer/risk", "acquirer/fence")) / "acquirer"
        import acquirer.fence
        import acquirer.risk

        versions = {"baseline": (_package("risk_baseline", old / "risk"), _package("fence_baseline", old / "fence")),
                    "now": (acquirer.risk, acquirer.fence)}
        keys = {_tid(n): SM2PrivateKey.generate() for n in range(TERMINALS)}
        wire = wire_requests(WARM + args.sales, keys)
        best: dict[str, dict] = {}
        for r in range(args.rounds):
            for label, got in one_round(workdir / f"round{r}", versions, keys, wire).items():
                if label not in best or got["used_ns"] < best[label]["used_ns"]:
                    best[label] = got
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (base, now), (base_bg, now_bg) = ([best[k][key] / 1000 / args.sales for k in ("baseline", "now")]
                                      for key in ("used_ns", "store_ns"))
    print(f"risk step (RiskAssessor.assess), CPU us per sale, {args.sales} sales, best of {args.rounds}")
    print(f"{'':20s} {'loop':>8s} {'store thread':>13s} {'both':>8s}")
    for label, side, loop, bg in ((f"baseline ({args.baseline})", best["baseline"], base, base_bg),
                                  ("now", best["now"], now, now_bg)):
        print(f"{label:20s} {loop:8.1f} {bg:13.1f} {loop + bg:8.1f}   outcomes {side['outcomes']},"
              f" answers {side['answers']}, stores {side['stored']}")
    same = all(best["baseline"][k] == best["now"][k] for k in ("outcomes", "answers", "stored"))
    print(f"same answers and stored rows: {'yes' if same else 'NO'}")
    print(f"ratio now/baseline: {now / base:.2f} on the event loop's thread, "
          f"{(now + now_bg) / (base + base_bg):.2f} with the store's thread")
    print(json.dumps({"sales": args.sales, "rounds": args.rounds, "baseline": args.baseline,
                      "baseline_us": round(base, 2), "now_us": round(now, 2), "ratio": round(now / base, 3),
                      "baseline_store_thread_us": round(base_bg, 2), "now_store_thread_us": round(now_bg, 2),
                      "ratio_with_store_thread": round((now + now_bg) / (base + base_bg), 3),
                      "same_answers_and_rows": same, "cpus": os.cpu_count()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
