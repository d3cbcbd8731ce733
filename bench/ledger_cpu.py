"""CPU per card sale of the ledger's group commits: rows against pickled units, same run.

    .venv/bin/python bench/ledger_cpu.py [--group 16] [--small 1,2,4] [--groups 300] [--rounds 3]

What the host pays per sale on each side of the ledger process's pipe, measured in this
process with `thread_time` (CPU, not wall: the machine is shared), on a real SQLite file
(WAL, synchronous=FULL, so each group's COMMIT is fsync'ed as in the host):

- loop side: encoding a group for the pipe, decoding its answer;
- ledger side: decoding the group, BEGIN, applying it, COMMIT, encoding the answer, with
  the values bound as the ledger process binds them (`process.bind_as_is`).

"rows" is the host's way (acquirer.ledger.rows: plain units as tuples, each run of them
applied with one executemany per table); "units" the way before it, measured in the same
run as the baseline: the `CommitUnit` dataclasses pickled and applied one statement set
per unit (`apply.apply_unit`). The two alternate in rounds on fresh files and the best
of each is kept.

The host's real groups are small (bench/host_steps.py: 4 to 5 sales, many of 1 or 2), so
the same is measured at the `--small` sizes too, and the ledger process's cost per group
fitted as fixed + per sale x size (least squares over every size): the fixed part is
what a group costs whatever its size (pipe, BEGIN, COMMIT and its fsync, statements).

Last, the event loop's own ledger work for a sale before the pipe (what card_flows and
the writer build: TxnRecord, JournalEntry.authorised, StoredResponse, CommitUnit, and the
Receipt out of the answer), against the same objects made the way they were before
session 7 (frozen dataclasses through their generated __init__ and __post_init__, which
ran the record's checks one by one: `_Before`), measured in the same run.
Ends with one JSON line of the figures.
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
from dataclasses import dataclass, field
from typing import Any, Mapping

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from acquirer.childproc import Messages, pack  # noqa: E402
from acquirer.ledger import (Channel, CommitUnit, JournalEntry, Receipt, SQLiteLedger, StoredResponse,  # noqa: E402
                             TxnKind, TxnRecord, apply, request_digest, rows)
from acquirer.ledger.model import ReversalOutcome, _digits, _no_card_data, _require  # noqa: E402
from acquirer.ledger.process import bind_as_is  # noqa: E402

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
    (_, at, items, _), = Messages().feed(blob)
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


class _Before:
    """The loop's ledger objects for a sale as session 6 made them: frozen dataclasses built
    by their generated __init__, the record's checks one by one in __post_init__ (the
    same checks the record now runs only to name a failure: `TxnRecord._explain`)."""

    @dataclass(frozen=True)
    class Record:
        terminal_id: str
        merchant_id: str
        batch: str
        stan: str
        kind: TxnKind
        channel: Channel
        amount: int
        currency: str = "156"
        rrn: str = ""
        auth_code: str = ""
        response_code: str = "00"
        masked_pan: str = ""
        pan_token: str = ""
        original_txn_id: str | None = None
        extra: Mapping[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            if type(self.kind) is not TxnKind:
                object.__setattr__(self, "kind", TxnKind(self.kind))
            if type(self.channel) is not Channel:
                object.__setattr__(self, "channel", Channel(self.channel))
            TxnRecord._explain(self)
            if type(self.extra) is not dict or self.extra:
                _no_card_data(dict(self.extra), "extra")

        @property
        def txn_id(self) -> str:
            return f"{self.terminal_id}:{self.batch}:{self.stan}"

    @dataclass(frozen=True)
    class Entry:
        event: str
        txn_id: str
        amount: int = 0
        record: Any = None
        details: Mapping[str, Any] = field(default_factory=dict)

        @classmethod
        def authorised(cls, record) -> "_Before.Entry":
            _require(record.kind.is_sale, "kind", f"{record.kind.value} cannot be AUTHORISED; use refunded/voided")
            _require(record.response_code == "00", "response_code", "an authorised transaction answers 00")
            return cls("AUTHORISED", record.txn_id, record.amount, record)

    @dataclass(frozen=True)
    class Stored:
        terminal_id: str
        batch: str
        stan: str
        request_digest: bytes
        response: bytes
        reversal: bool = False

        def __post_init__(self) -> None:
            _digits(self.batch, 6, "batch")
            _digits(self.stan, 6, "stan")
            _require(len(self.request_digest) == 32, "request_digest", "must be a 32-byte SM3 digest")
            _require(isinstance(self.response, (bytes, bytearray)), "response", "must be bytes")

    @dataclass(frozen=True)
    class Unit:
        entries: tuple = ()
        response: Any = None
        upload: Any = None
        close: Any = None

        def __post_init__(self) -> None:
            object.__setattr__(self, "entries", tuple(self.entries))

    @dataclass(frozen=True)
    class Answer:
        seqs: tuple = ()
        reversals: Mapping[str, ReversalOutcome] = field(default_factory=dict)
        next_batch: str | None = None


_NOW = (TxnRecord, JournalEntry, StoredResponse, CommitUnit, Receipt)
_BEFORE = (_Before.Record, _Before.Entry, _Before.Stored, _Before.Unit, _Before.Answer)


def build(classes, inputs: list, clock) -> float:
    """CPU seconds to make each sale's objects on the loop, as card_flows and the writer do."""
    record_cls, entry_cls, stored_cls, unit_cls, answer_cls = classes
    answer = getattr(answer_cls, "of_seqs", answer_cls)
    t0 = clock()
    for n, (tid, batch, stan, amount, rrn, digest, response) in enumerate(inputs):
        rec = record_cls(tid, MID, batch, stan, TxnKind.SALE, Channel.CARD, amount, "156", rrn, "A1B2C3", "00",
                         "621234******1234", TOKEN, None)
        unit = unit_cls((entry_cls.authorised(rec),), stored_cls(tid, batch, stan, digest, response, False),
                        None, None)
        answer((n,))
    assert unit.entries[0].txn_id == rec.txn_id
    return clock() - t0


def record_inputs(count: int) -> list:
    out = []
    for n in range(count):
        stan = f"{n % 999_999 + 1:06d}"
        out.append((TERMINALS[n % len(TERMINALS)], "000001", stan, 100 + n % 9_900, f"6327{n:08d}",
                    request_digest(b"0200" + stan.encode() + bytes(190)), b"0210" + stan.encode() + bytes(130)))
    return out


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares of us per group against group size: (fixed us per group, us per sale)."""
    n = len(points)
    mx, my = sum(g for g, _ in points) / n, sum(y for _, y in points) / n
    slope = sum((g - mx) * (y - my) for g, y in points) / max(sum((g - mx) ** 2 for g, _ in points), 1e-9)
    return my - slope * mx, slope


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", type=int, default=16, help="sales per group commit (default 16)")
    ap.add_argument("--small", default="1,2,4", help="the small group sizes also measured (default 1,2,4)")
    ap.add_argument("--groups", type=int, default=300, help="group commits per round (default 300)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept (default 3)")
    ap.add_argument("--records", type=int, default=20_000, help="sales whose loop objects are built (default 20000)")
    ap.add_argument("--dir", default=None, help="where the files go (default: a new temporary directory)")
    args = ap.parse_args()
    sizes = sorted({args.group, *(int(g) for g in args.small.split(",") if g)})
    bind_as_is()  # as the ledger process binds (both ways run here, so both are measured so)
    workdir = tempfile.mkdtemp(prefix="ledger-cpu-", dir=args.dir)
    best = {(way, g): [float("inf")] * 2 for g in sizes for way in (by_units, by_rows)}
    inputs = record_inputs(args.records)
    built = {"before": float("inf"), "now": float("inf")}
    try:
        for _ in range(args.rounds):
            for (way, g), old in best.items():
                groups = args.groups if g >= args.group else max(args.groups // 2, 50)  # an fsync each: keep it short
                best[way, g] = [min(o, new) for o, new in zip(old, run(way, workdir, g, groups))]
            for name, classes in (("before", _BEFORE), ("now", _NOW)):
                built[name] = min(built[name], build(classes, inputs, time.thread_time) / len(inputs) * 1e6)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("CPU us per sale                              units (before)   rows (now)   ratio")
    figures: dict[str, Any] = {}
    for g in sizes:
        (u_loop, u_child), (r_loop, r_child) = best[by_units, g], best[by_rows, g]
        print(f"groups of {g:3d}: event loop, encode + decode   {u_loop:14.1f} {r_loop:12.1f} {r_loop / u_loop:7.2f}")
        print(f"groups of {g:3d}: ledger process, whole group   {u_child:14.1f} {r_child:12.1f} "
              f"{r_child / u_child:7.2f}")
        figures[str(g)] = {"units_loop_us": round(u_loop, 1), "rows_loop_us": round(r_loop, 1),
                           "units_ledger_us": round(u_child, 1), "rows_ledger_us": round(r_child, 1)}
    fixed = {way: fit([(g, best[way, g][1] * g) for g in sizes]) for way in (by_units, by_rows)}
    (u_fixed, u_each), (r_fixed, r_each) = fixed[by_units], fixed[by_rows]
    print(f"ledger process, fitted: fixed us per group  {u_fixed:14.1f} {r_fixed:12.1f} {r_fixed / u_fixed:7.2f}")
    print(f"ledger process, fitted: us per sale more    {u_each:14.1f} {r_each:12.1f} {r_each / u_each:7.2f}")
    before, now = built["before"], built["now"]
    print("event loop: a sale's record, entry, stored response, unit, receipt")
    print(f"  (dataclass __init__ + checks one by one = before)   {before:8.2f} {now:12.2f} {now / before:7.2f}")
    g = args.group
    (u_loop, u_child), (r_loop, r_child) = best[by_units, g], best[by_rows, g]
    print(json.dumps({"group": g, "units_loop_us": round(u_loop, 1), "rows_loop_us": round(r_loop, 1),
                      "loop_ratio": round(r_loop / u_loop, 2), "units_ledger_us": round(u_child, 1),
                      "rows_ledger_us": round(r_child, 1), "ledger_ratio": round(r_child / u_child, 2),
                      "by_group_size": figures, "fixed_us_per_group": {"units": round(u_fixed, 1),
                                                                      "rows": round(r_fixed, 1)},
                      "us_per_sale_more": {"units": round(u_each, 1), "rows": round(r_each, 1)},
                      "loop_objects_us": {"before": round(before, 2), "now": round(now, 2),
                                          "ratio": round(now / before, 2)},
                      "synchronous": "FULL", "journal_mode": "WAL"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
