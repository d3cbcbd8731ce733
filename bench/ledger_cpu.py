"""CPU per card sale of the ledger's group commits: rows against pickled units, same run.

    .venv/bin/python bench/ledger_cpu.py [--group 16] [--groups 300] [--rounds 3]

What the host pays per sale on each side of the ledger process's pipe, measured in this
process with `thread_time` (CPU, not wall: the machine is shared), on a real SQLite file
(WAL, synchronous=FULL, so each group's COMMIT is fsync'ed as in the host):

- loop side: encoding a group for the pipe, decoding its answer;
- ledger side: decoding the group, BEGIN, applying it, COMMIT, encoding the answer.

"rows" is the host's way (acquirer.ledger.rows: plain units as tuples, each run of them
applied with one executemany per table); "units" the way before it, measured in the same
run as the baseline: the `CommitUnit` dataclasses pickled and applied one statement set
per unit (`apply.apply_unit`). The two alternate in rounds on fresh files and the best
of each is kept. Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from acquirer.childproc import Messages, pack  # noqa: E402
from acquirer.ledger import (Channel, CommitUnit, JournalEntry, Receipt, SQLiteLedger, StoredResponse,  # noqa: E402
                             TxnKind, TxnRecord, apply, request_digest, rows)

TERMINALS = [f"B{n:07d}" for n in range(64)]
MID = "898440358120001"
TOKEN = "5A" * 16  # a PAN token's shape (32 hex digits, CardVault.token), standing for no card


def sales(store: SQLiteLedger, batches: dict, count: int) -> list[CommitUnit]:
    out = []
    for n in range(count):
        tid, stan = TERMINALS[n % len(TERMINALS)], f"{n // len(TERMINALS) + 1:06d}"
        rec = TxnRecord(tid, MID, batches[tid], stan, TxnKind.SALE, Channel.CARD, 100 + n % 9_900, "156",
                        store.next_rrn(), "A1B2C3", "00", "621234******1234", TOKEN)
        request = b"0200" + stan.encode() + rec.rrn.encode() + bytes(190)
        out.append(CommitUnit((JournalEntry.authorised(rec),), StoredResponse(
            tid, rec.batch, stan, request_digest(request), b"0210" + stan.encode() + rec.rrn.encode() + bytes(130))))
    return out


def by_units(ledger: SQLiteLedger, group: list, at: float, clock) -> tuple[float, float]:
    """The baseline: dataclasses pickled, a unit's statements one by one."""
    t0 = clock()
    blob = pack(("apply", at, group, []))
    t1 = clock()
    _, at, units, _ = pickle.loads(blob[4:])
    w = ledger._w
    w.execute("BEGIN IMMEDIATE")
    results = [apply.apply_unit(w, u, at, probe=False) for u in units]
    w.execute("COMMIT")
    answer = pack(results)
    t2 = clock()
    Messages().feed(answer)
    t3 = clock()
    return (t1 - t0) + (t3 - t2), t2 - t1


def by_rows(ledger: SQLiteLedger, group: list, at: float, clock) -> tuple[float, float]:
    """The host's way (acquirer/ledger/process.py)."""
    t0 = clock()
    blob = pack(("apply", at, [rows.to_row(u) for u in group], []))
    t1 = clock()
    _, at, items, _ = pickle.loads(blob[4:])
    answer = pack(ledger.commit_rows(items, at))
    t2 = clock()
    results = rows.receipts(Messages().feed(answer)[0])
    t3 = clock()
    assert type(results[0]) is Receipt, results[0]
    return (t1 - t0) + (t3 - t2), t2 - t1


def run(way, workdir: str, group: int, groups: int) -> tuple[float, float]:
    path = os.path.join(workdir, f"{way.__name__}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    ledger = SQLiteLedger(path)
    try:
        units = sales(ledger, {tid: ledger.open_batch(tid) for tid in TERMINALS}, group * groups)
        loop = child = 0.0
        for i in range(groups):
            a, b = way(ledger, units[i * group:(i + 1) * group], time.time(), time.thread_time)
            loop, child = loop + a, child + b
        n = group * groups
        return loop / n * 1e6, child / n * 1e6
    finally:
        ledger.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", type=int, default=16, help="sales per group commit (default 16)")
    ap.add_argument("--groups", type=int, default=300, help="group commits per round (default 300)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept (default 3)")
    ap.add_argument("--dir", default=None, help="where the files go (default: a new temporary directory)")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="ledger-cpu-", dir=args.dir)
    best = {by_units: [float("inf")] * 2, by_rows: [float("inf")] * 2}
    try:
        for _ in range(args.rounds):
            for way in best:
                best[way] = [min(old, new) for old, new in zip(best[way], run(way, workdir, args.group, args.groups))]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (u_loop, u_child), (r_loop, r_child) = best[by_units], best[by_rows]
    print(f"CPU us per sale, groups of {args.group}     units (before)   rows (now)   ratio")
    print(f"event loop: encode group, decode answer  {u_loop:14.1f} {r_loop:12.1f} {r_loop / u_loop:7.2f}")
    print(f"ledger process: decode, apply, COMMIT    {u_child:14.1f} {r_child:12.1f} {r_child / u_child:7.2f}")
    print(json.dumps({"group": args.group, "units_loop_us": round(u_loop, 1), "rows_loop_us": round(r_loop, 1),
                      "loop_ratio": round(r_loop / u_loop, 2), "units_ledger_us": round(u_child, 1),
                      "rows_ledger_us": round(r_child, 1), "ledger_ratio": round(r_child / u_child, 2),
                      "synchronous": "FULL", "journal_mode": "WAL"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
