"""CPU per card sale of the host's risk step (`RiskAssessor.assess`): this code against a baseline, same run.

    .venv/bin/python bench/risk_cpu.py [--sales 12000] [--rounds 3] [--baseline 98c6bf2]

What the event loop pays per sale for the risk step, as `bench/host_steps.py` counts it
("risk: fence + rules + counters"), without the host around it: the facts, the fence
check of the attached signed fix, the default rules, the counters, and the decision
kept in the risk store (its batched flushes included, on the same thread, as in the
host). Measured with `thread_time` (CPU, not wall: the machine is shared), on real
files: the registry, the fence store (grouped, as in the host: the ledger writer's
flush of it is not timed) and the decision store.

The requests are what the host's risk step sees: decoded ISO8583 sales from 64
terminals of 4 merchants, each sale attaching its terminal's latest signed fix (the
same report again while the terminal stands still; a new one every 128 of its sales,
its signature checked beforehand as the pipeline's worker thread does, untimed), a
card tapped 4 times, amounts mostly small with some above the no-PIN limit, with and
without a PIN, a few relay-flagged taps, a few round amounts: nearly all pass, a few
step-ups and declines, trial hits.

The baseline is the same risk code at another git revision (`--baseline`, default the
commit before the session-7 risk work), unpacked from git into a temporary directory;
each side runs in its own child process (the two cannot share module names), rounds
alternate between them and the best of each is kept. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "98c6bf2"  # main before session 7's risk work
T0 = 1749952800.0  # 2025-06-15 10:00 China Standard Time
SITE = (31.2304, 121.4737)
MERCHANTS = [f"89844035812{i:04d}" for i in range(4)]
TERMINALS = 64
TAPS_PER_CARD = 4
NEW_FIX_EVERY = 128  # a terminal's sales per new signed report
SPACING_S = 1 / 1500  # simulated time between sales: the host's rate


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _requests(n: int, registry, devices: dict, sign):
    """`n` decoded sales as the risk step receives them, round robin over the terminals."""
    import random

    from acquirer import pipeline
    from acquirer.fence.report import FixSource, build
    from acquirer.pipeline import Context
    from acquirer.protocol import Field60, Frame, PrivateTag, encode, private_fields
    from keys.tlv import encode_dict, flatten

    rng = random.Random(5)
    reports: dict[str, bytes] = {}
    out = []
    for i in range(n):
        tid = f"R{i % TERMINALS:07d}"
        k = i // TERMINALS  # this terminal's sale number
        # the last terminal is carried 2 km away for its sales 40 to 79: declined (G1), alerts
        moved = tid == f"R{TERMINALS - 1:07d}" and 40 <= k < 80
        fresh = k % NEW_FIX_EVERY == 0 or (tid == f"R{TERMINALS - 1:07d}" and k in (40, 80))
        if fresh:
            devices[tid][1] += 1
            away = 0.018 if moved else 0.0
            reports[tid] = build(sign[tid], device_id=f"DEV-{tid}", terminal_id=tid, counter=devices[tid][1],
                                 fix_time=T0 + i * SPACING_S - 5, latitude=SITE[0] + away, longitude=SITE[1],
                                 accuracy_m=8.0, source=FixSource.FIXED)
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
        doc = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": f"{k % 999_999 + 1:06d}",
               "22": "051" if pin else "072", "25": "00", "41": tid, "42": registry.terminal(tid).merchant_id,
               "49": "156", "59": private_fields(private), "60": Field60("22", "000001").encode()}
        icc = {0x9F02: amount.to_bytes(6, "big"), 0x9F6C: bytes([0x00, 0x80 if rng.random() < 0.02 else 0x00])}
        doc["55"] = encode_dict(icc).hex().upper()
        if pin:
            doc["52"] = "00" * 8
        ctx = Context(Frame(encode(doc)), "bench")
        pipeline.step_decode(ctx)
        ctx.terminal = registry.terminal(tid)
        card = i // (TERMINALS * TAPS_PER_CARD) * TERMINALS + i % TERMINALS
        if roll > 0.99:
            card = 10**9  # one card tapped everywhere: its velocity and daily limits decline it
        ctx.pan_token, ctx.masked_pan = f"{card * 7919:032X}", f"621498******{card % 10_000:04d}"
        ctx.icc = flatten(bytes.fromhex(doc["55"]))
        out.append((ctx, fresh))
    return out


def worker(sales: int, workdir: str) -> dict:
    """One side's run, in this process: the code importable from sys.path's first entry."""
    import gc
    import logging
    import shutil

    from acquirer.fence import FenceMonitor, FenceStore
    from acquirer.protocol import PrivateTag
    from acquirer.registry import Registry
    from acquirer.risk import DEFAULT_RULES, DecisionStore, RiskAssessor, RiskEngine, RuleFile
    from keys.sm2 import SM2PrivateKey

    logging.getLogger("acquirer").setLevel(logging.ERROR)  # holds and refusals would log a line each
    state = Path(tempfile.mkdtemp(prefix="risk-cpu-", dir=workdir))
    try:
        clock = Clock()
        registry = Registry(state / "registry.db")
        for n, mid in enumerate(MERCHANTS):
            registry.add_merchant(mid, f"Shop {n}", latitude=SITE[0], longitude=SITE[1], risk_grade="BBAC"[n])
        devices, sign = {}, {}
        for n in range(TERMINALS):
            tid = f"R{n:07d}"
            key = SM2PrivateKey.generate()
            code = registry.add_terminal(tid, MERCHANTS[n % len(MERCHANTS)])
            registry.activate(tid, code, f"DEV-{tid}", key.public_key.to_bytes(), now=T0)
            devices[tid], sign[tid] = [tid, 0], key.sign
        rules = state / "risk_rules.toml"
        shutil.copy(DEFAULT_RULES, rules)
        decisions = DecisionStore(state / "risk.db")
        fence_store = FenceStore(state / "fence.db", grouped=True)
        fences = FenceMonitor(fence_store, clock=clock)
        for n in range(TERMINALS):
            tid = f"R{n:07d}"
            fences.register_site(tid, registry.merchant(registry.terminal(tid).merchant_id))
        fence_store.flush()
        engine = RiskEngine(RuleFile(rules), decisions, clock=clock)
        assessor = RiskAssessor(engine, registry, fences, clock=clock)
        warm = 2_000
        requests = _requests(warm + sales, registry, devices, sign)
        assess, cpu, location = assessor.assess, time.thread_time_ns, PrivateTag.LOCATION
        used = 0
        outcomes: dict[str, int] = {}
        seen = hashlib.sha256()  # what the pipeline sees of each decision
        gc.collect()
        for i, (ctx, fresh) in enumerate(requests):
            clock.t = T0 + i * SPACING_S
            if fresh:  # the pipeline's worker thread checks a new report's signature first
                fences.preverify(ctx.terminal, ctx.private[location])
            if i % 16 == 0:
                fence_store.flush()  # the ledger writer's flush of its companions, before each group
            t = cpu()
            assess(ctx)
            if i >= warm:
                used += cpu() - t
                outcome = ctx.code.value if ctx.code is not None else "go"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            seen.update(repr((ctx.code, ctx.text, ctx.notes, ctx.reply_fields)).encode())
        t = cpu()
        decisions.flush()  # what the last decisions still owe the store
        used += cpu() - t
        decisions.close()
        fence_store.close()
        registry.close()
        return {"us_per_sale": used / 1000 / sales, "outcomes": outcomes, "answers": seen.hexdigest()[:16],
                "stored": _stored(state), "code": str(Path(sys.modules["acquirer"].__file__).parents[1])}
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _stored(state: Path) -> str:
    """A digest of everything the stores hold: decisions as `risk explain` reads them, fence
    positions and alerts (the sequence numbers aside)."""
    import sqlite3

    from acquirer.risk.codec import facts_dict, hits_dicts

    digest = hashlib.sha256()
    with sqlite3.connect(state / "risk.db") as db:
        for row in db.execute("SELECT * FROM decisions ORDER BY seq"):
            digest.update(repr((row[1:12], facts_dict(row[12]), hits_dicts(row[13]))).encode())
    with sqlite3.connect(state / "fence.db") as db:
        for table in ("positions", "alerts"):
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1"):
                # alerts without their numbers; positions without the report digest (a signature is random)
                digest.update(repr(row[1:] if table == "alerts" else row[:-1]).encode())
    return digest.hexdigest()[:16]


def _unpack(rev: str, into: str) -> str:
    """The code at `rev` (acquirer/, keys/ and what they import), unpacked from git."""
    target = os.path.join(into, "baseline")
    os.makedirs(target)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "acquirer", "keys", "hardware"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def _side(root: str, sales: int, workdir: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", "--root", root, "--sales", str(sales),
                          "--dir", workdir], check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=12_000, help="sales timed per run (default 12,000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept (default 3)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    ap.add_argument("--dir", default=None, help="where the files go (default: a new temporary directory)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, args.root)
        print(json.dumps(worker(args.sales, args.dir)))
        return 0
    workdir = tempfile.mkdtemp(prefix="risk-cpu-", dir=args.dir)
    try:
        base_root = _unpack(args.baseline, workdir)
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for side, root in (("baseline", base_root), ("now", str(ROOT))):
                got = _side(root, args.sales, workdir)
                if side not in best or got["us_per_sale"] < best[side]["us_per_sale"]:
                    best[side] = got
    finally:
        subprocess.run(["rm", "-rf", workdir], check=False)
    base, now = best["baseline"], best["now"]
    ratio = now["us_per_sale"] / base["us_per_sale"]
    print(f"risk step (RiskAssessor.assess), CPU us per sale, {args.sales} sales, best of {args.rounds}")
    for label, side in ((f"baseline ({args.baseline})", base), ("now", now)):
        print(f"{label:20s} {side['us_per_sale']:8.1f}   outcomes {side['outcomes']}, answers {side['answers']},"
              f" stores {side['stored']}")
    same = base["answers"] == now["answers"] and base["stored"] == now["stored"]
    print(f"same answers and stored rows: {'yes' if same else 'NO'}")
    print(f"ratio now/baseline: {ratio:.2f}")
    print(json.dumps({"sales": args.sales, "baseline": args.baseline, "baseline_us": round(base["us_per_sale"], 2),
                      "now_us": round(now["us_per_sale"], 2), "ratio": round(ratio, 3),
                      "same_outcomes": base["outcomes"] == now["outcomes"], "same_answers_and_rows": same}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
